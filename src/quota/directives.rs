//! The quota directives: `gpt_auth_quota_zone`, `gpt_auth_quota_redis` and
//! `gpt_auth_quota_group` (http), `gpt_auth_quota`, `gpt_auth_quota_report` and
//! `gpt_auth_quota_admin`.

use core::cell::OnceCell;
use core::ptr;
use std::rc::Rc;

use gpt_auth_core::duration;
use gpt_auth_core::quota::budget::parse_cap;
use gpt_auth_core::quota::overrides::budget_key;
use gpt_auth_core::quota::{self, Clock, Limits, Overrides};

use nginx_sys::{ngx_conf_t, ngx_uint_t};

use gpt_auth_core::quota::cluster::Names;

use super::{admin, cluster, report, zone};
use crate::conf::quota::{GroupConf, Members, DEFAULT_INTERVAL, DEFAULT_RESERVE, MAX_GROUPS};
use crate::conf::{Handler, LocConf, MainConf, QuotaConf, Zone};
use crate::files::{Watched, WatchedAllowlist};
use crate::ngx::conf::{add_shared_zone, parse_size, read_conf_file};
use crate::ngx::peer::{Address, Tls, TlsOptions};
use crate::ngx::{ConfError, NgxConfExt};

/// Smallest zone accepted (a key, a user or a user's model, takes about 300 bytes: 32k hold
/// about a hundred).
const MIN_ZONE_SIZE: usize = 32 * 1024;

fn invalid(a: &str) -> ConfError {
    ConfError::invalid(format_args!("invalid parameter \"{a}\""))
}

/// `zone=NAME:SIZE`
fn name_and_size(v: &str) -> Result<(String, usize), ConfError> {
    let (n, s) = v.split_once(':').ok_or_else(|| {
        ConfError::invalid(format_args!("invalid zone \"{v}\" (expected zone=NAME:SIZE)"))
    })?;
    if n.is_empty() {
        return Err(ConfError::invalid(format_args!("invalid zone \"{v}\" (no name)")));
    }
    let size = parse_size(s)
        .ok_or_else(|| ConfError::invalid(format_args!("invalid zone size \"{s}\"")))?;
    if size < MIN_ZONE_SIZE {
        return Err(ConfError::invalid(format_args!(
            "zone \"{n}\" is too small ({s}); at least 32k"
        )));
    }
    Ok((n.to_owned(), size))
}

ngx_entry! {
    /// `gpt_auth_quota_zone zone=NAME:SIZE [state=FILE] [interval=TIME] [utc_offset=+HH:MM]
    /// [day_length=TIME]` (http level).
    pub directive fn quota_zone(cf, mcf: MainConf) {
        let (mut zone, mut state, mut interval) = (None, None, DEFAULT_INTERVAL);
        let mut clock = Clock::default();
        for a in cf.arg_strings() {
            let (k, v) = a.split_once('=').ok_or_else(|| invalid(&a))?;
            match k {
                "zone" => zone = Some(name_and_size(v)?),
                "state" => state = Some(cf.full_path(v.as_bytes())?),
                "interval" => {
                    interval = duration::parse_seconds(v)
                        .map_err(|e| ConfError::invalid(format_args!("invalid interval \"{v}\": {e}")))?
                        .max(1);
                }
                "utc_offset" => {
                    clock.utc_offset = quota::parse_utc_offset(v)
                        .map_err(|e| ConfError::invalid(format_args!("invalid utc_offset \"{v}\": {e}")))?;
                }
                "day_length" => {
                    clock.day_length = duration::parse_seconds(v)
                        .ok()
                        .filter(|d| *d > 0)
                        .ok_or_else(|| ConfError::invalid(format_args!("invalid day_length \"{v}\"")))?;
                }
                _ => return Err(invalid(&a)),
            }
        }
        let (name, size) = zone.ok_or_else(|| ConfError::invalid("needs zone=NAME:SIZE"))?;
        if mcf.quota_zones.iter().any(|z| z.name == name) {
            return Err(ConfError::invalid(format_args!("zone \"{name}\" is duplicate")));
        }
        if let Some(path) = &state {
            check_state_dir(cf, &name, path);
        }
        let shm = add_shared_zone(cf, &name, size, ptr::addr_of_mut!(crate::ngx_http_gpt_auth_module))?;
        let z = Rc::new(Zone::new(name, ptr::from_mut(shm), size, clock, state, interval));
        shm.init = Some(zone::init);
        shm.data = Rc::as_ptr(&z).cast_mut().cast();
        mcf.quota_zones.push(z);
        Ok(())
    }
}

/// This machine's host name (the default node name), if it is printable.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic())).then(|| name.to_owned())
}

/// A time in milliseconds: `500ms`, or an nginx time value in seconds (`1s`, `2`).
fn milliseconds(k: &str, v: &str) -> Result<u64, ConfError> {
    let ms = match v.strip_suffix("ms") {
        Some(n) => n.parse::<u64>().map_err(|_| "expected a number"),
        None => duration::parse_seconds(v).map(|s| s.saturating_mul(1000)),
    };
    match ms {
        Ok(ms) if ms > 0 => Ok(ms),
        Ok(_) => Err(ConfError::invalid(format_args!("invalid {k} \"{v}\": must be more than 0"))),
        Err(e) => Err(ConfError::invalid(format_args!("invalid {k} \"{v}\": {e}"))),
    }
}

ngx_entry! {
    /// `gpt_auth_quota_redis zone=NAME server=ADDRESS [node=NAME] [password_file=FILE]
    /// [user=NAME] [prefix=STRING] [interval=TIME] [timeout=TIME] [resolve] [ssl
    /// ssl_trusted_certificate=FILE | ssl_verify=off] [ssl_name=NAME]
    /// [ssl_certificate=FILE ssl_certificate_key=FILE]` (http level, after the zone): the
    /// zone's counters are shared with every nginx that names the same Redis server and prefix.
    pub directive fn quota_redis(cf, mcf: MainConf) {
        let (mut zone, mut server, mut password_file, mut user) = (None, None, None, None);
        let mut node = None;
        let mut tls = TlsArgs::default();
        let mut resolve = false;
        let mut prefix = "gpt_auth:".to_owned();
        let (mut interval, mut timeout) = (cluster::DEFAULT_INTERVAL_MS, cluster::DEFAULT_TIMEOUT_MS);
        for a in cf.arg_strings() {
            if a == "ssl" {
                tls.on = true;
                continue;
            }
            if a == "resolve" {
                resolve = true;
                continue;
            }
            let (k, v) = a.split_once('=').ok_or_else(|| invalid(&a))?;
            if tls.parameter(k, v)? {
                continue;
            }
            match k {
                "zone" => zone = Some(v.to_owned()),
                "server" if !v.is_empty() => server = Some(v.to_owned()),
                "node" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()) => {
                    node = Some(v.to_owned())
                }
                "password_file" => password_file = Some(v.to_owned()),
                "user" if !v.is_empty() => user = Some(v.to_owned()),
                "prefix" if v.bytes().all(|b| b.is_ascii_graphic()) => prefix = v.to_owned(),
                "interval" => interval = milliseconds(k, v)?,
                "timeout" => timeout = milliseconds(k, v)?,
                _ => return Err(invalid(&a)),
            }
        }
        let zone = zone.ok_or_else(|| ConfError::invalid("needs zone=NAME"))?;
        let server = server.ok_or_else(|| ConfError::invalid("needs server=HOST:PORT or server=unix:PATH"))?;
        let z = mcf.quota_zone(&zone).ok_or_else(|| {
            ConfError::invalid(format_args!(
                "zone \"{zone}\" is not defined (gpt_auth_quota_zone must come first)"
            ))
        })?;
        if z.redis.get().is_some() {
            return Err(ConfError::invalid(format_args!("zone \"{zone}\" has a Redis server already")));
        }
        let address = Address::parse(cf.pool, &server, cluster::DEFAULT_PORT, resolve)
            .map_err(|why| ConfError::invalid(format_args!("server \"{server}\": {why}")))?;
        let password = match &password_file {
            Some(f) => {
                let (path, data) = read_conf_file(cf, f.as_bytes())?;
                let text = String::from_utf8(data).map_err(|_| {
                    ConfError::invalid(format_args!("password_file \"{path}\" is not text"))
                })?;
                let pw = text.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
                if pw.is_empty() || pw.contains(&b'\n') {
                    return Err(ConfError::invalid(format_args!(
                        "password_file \"{path}\" must hold the password on one line"
                    )));
                }
                Some(pw)
            }
            None if user.is_some() => {
                return Err(ConfError::invalid("user= needs password_file="));
            }
            None => None,
        };
        let node = match node.or_else(host_name) {
            Some(n) => n,
            None => return Err(ConfError::invalid("needs node=NAME (the host name is not known)")),
        };
        let tls = tls.context(cf, &address)?;
        let names = Names { prefix, zone: zone.clone() };
        let conf = cluster::RedisConf {
            address,
            tls,
            node,
            password,
            user,
            names,
            interval_ms: interval,
            timeout_ms: timeout,
        };
        // Checked above: the cell is empty.
        let _ = z.redis.set(conf);
        Ok(())
    }
}

/// The `ssl*` parameters of `gpt_auth_quota_redis`.
#[derive(Default)]
struct TlsArgs {
    on: bool,
    trusted: Option<String>,
    verify: Option<bool>,
    name: Option<String>,
    certificate: Option<String>,
    key: Option<String>,
}

impl TlsArgs {
    /// Takes `k=v` if it is one of ours (true).
    fn parameter(&mut self, k: &str, v: &str) -> Result<bool, ConfError> {
        let empty = || ConfError::invalid(format_args!("{k}= needs a value"));
        let slot = match k {
            "ssl_trusted_certificate" => &mut self.trusted,
            "ssl_name" => &mut self.name,
            "ssl_certificate" => &mut self.certificate,
            "ssl_certificate_key" => &mut self.key,
            "ssl_verify" => {
                self.verify = Some(match v {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(ConfError::invalid(format_args!(
                            "invalid ssl_verify \"{v}\": must be \"on\" or \"off\""
                        )))
                    }
                });
                return Ok(true);
            }
            _ => return Ok(false),
        };
        if v.is_empty() {
            return Err(empty());
        }
        *slot = Some(v.to_owned());
        Ok(true)
    }

    /// The TLS context these parameters ask for (`None` without `ssl`), or why not.
    fn context(self, cf: &mut ngx_conf_t, address: &Address) -> Result<Option<Tls>, ConfError> {
        let given = [
            ("ssl_trusted_certificate", self.trusted.is_some()),
            ("ssl_verify", self.verify.is_some()),
            ("ssl_name", self.name.is_some()),
            ("ssl_certificate", self.certificate.is_some()),
            ("ssl_certificate_key", self.key.is_some()),
        ];
        if !self.on {
            return match given.iter().find(|(_, g)| *g) {
                Some((k, _)) => Err(ConfError::invalid(format_args!("{k}= needs ssl"))),
                None => Ok(None),
            };
        }
        let verify = self.verify.unwrap_or(true);
        match (verify, &self.trusted) {
            (true, None) => return Err(ConfError::invalid(
                "ssl needs ssl_trusted_certificate=FILE to verify the server (or ssl_verify=off)",
            )),
            (false, Some(_)) => {
                return Err(ConfError::invalid(
                    "ssl_trusted_certificate= has no use with ssl_verify=off",
                ))
            }
            _ => {}
        }
        let certificate = match (&self.certificate, &self.key) {
            (Some(c), Some(k)) => Some((c.as_str(), k.as_str())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfError::invalid("ssl_certificate= needs ssl_certificate_key="))
            }
            (None, Some(_)) => {
                return Err(ConfError::invalid("ssl_certificate_key= needs ssl_certificate="))
            }
        };
        let name = match (self.name.as_deref(), address.host()) {
            (Some(n), _) | (None, Some(n)) => n.to_owned(),
            (None, None) if verify => return Err(ConfError::invalid(
                "ssl to a unix socket needs ssl_name=NAME (the name in the server's certificate)",
            )),
            (None, None) => String::new(),
        };
        let trusted = if verify { self.trusted.as_deref() } else { None };
        let o = TlsOptions { trusted, name: &name, certificate };
        Tls::new(cf, &o).map(Some).map_err(ConfError::invalid)
    }
}

ngx_entry! {
    /// `gpt_auth_quota zone=NAME [day=N|unlimited] [month=N|unlimited] [methods=M,...]
    /// [overrides=FILE]` or `gpt_auth_quota off`.
    pub directive fn quota(cf, lcf: LocConf) {
        if lcf.quota.is_some() {
            return Err(ConfError::Duplicate);
        }
        let args = cf.arg_strings();
        if args == ["off"] {
            lcf.quota = Some(None);
            return Ok(());
        }
        let mut q = QuotaConf {
            zone_name: String::new(),
            source: cf.source(),
            zone: OnceCell::new(),
            defaults: Limits::UNLIMITED,
            methods: 0,
            overrides: None,
            reserve: DEFAULT_RESERVE,
            warn: None,
        };
        for a in &args {
            quota_parameter(cf, &mut q, a)?;
        }
        if q.zone_name.is_empty() {
            return Err(ConfError::invalid("needs zone=NAME"));
        }
        lcf.quota = Some(Some(Rc::new(q)));
        Ok(())
    }
}

fn quota_parameter(cf: &mut ngx_conf_t, q: &mut QuotaConf, a: &str) -> Result<(), ConfError> {
    let (k, v) = a.split_once('=').ok_or_else(|| invalid(a))?;
    if budget(&mut q.defaults, k, v)? {
        return Ok(());
    }
    match k {
        "zone" => q.zone_name = v.to_owned(),
        "methods" => {
            for m in v.split(',') {
                q.methods |= method_bit(m)
                    .ok_or_else(|| ConfError::invalid(format_args!("unknown method \"{m}\"")))?;
            }
        }
        "overrides" => {
            let path = cf.full_path(v.as_bytes())?;
            q.overrides = Some(Rc::new(Watched::<Overrides>::load(&path)?));
            crate::files::warn_if_unreadable_by_workers(cf, "quota overrides", &path);
        }
        "reserve" => {
            q.reserve = v.parse().map_err(|_| {
                ConfError::invalid(format_args!("reserve=\"{v}\": expected a number of tokens"))
            })?;
        }
        "warn" => q.warn = Some(percent(v)?),
        _ => return Err(invalid(a)),
    }
    Ok(())
}

/// `day=`, `month_tokens=`, `day_cost=` ...: sets the budget and says true, or false for
/// another parameter.
fn budget(limits: &mut Limits, k: &str, v: &str) -> Result<bool, ConfError> {
    let Some((period, unit)) = budget_key(k) else { return Ok(false) };
    let cap =
        parse_cap(unit, v).map_err(|e| ConfError::invalid(format_args!("{k}=\"{v}\": {e}")))?;
    limits.period_mut(period).set(unit, cap);
    Ok(true)
}

/// `80%` as per mille.
fn percent(v: &str) -> Result<u64, ConfError> {
    v.strip_suffix('%')
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| (1..=100).contains(n))
        .map(|n| n * 10)
        .ok_or_else(|| {
            ConfError::invalid(format_args!("warn=\"{v}\": expected a share such as 80%"))
        })
}

/// At `nginx -t`: workers save the state file; warn when they cannot write there (every save
/// would fail and a restart would lose the counts).
fn check_state_dir(cf: &ngx_conf_t, zone: &str, path: &str) {
    let dir = std::path::Path::new(path).parent().map(|d| d.to_string_lossy().into_owned());
    let Some(dir) = dir.filter(|d| !d.is_empty()) else { return };
    let Some((uid, gid)) = crate::ngx::conf::worker_user(cf) else { return };
    if let Err(why) = crate::files::writable_dir_by(&dir, uid, gid) {
        warn!(
            cf,
            "gpt_auth_quota_zone \"{}\": the workers (uid {}) cannot write the state file in \
             \"{}\": {}; counters would not be saved (make the directory theirs, e.g. \
             install -d -o www-data {})",
            zone,
            uid,
            dir,
            why,
            dir
        );
    }
}

fn method_bit(m: &str) -> Option<ngx_uint_t> {
    Some(
        (match m.to_ascii_uppercase().as_str() {
            "GET" => nginx_sys::NGX_HTTP_GET,
            "HEAD" => nginx_sys::NGX_HTTP_HEAD,
            "POST" => nginx_sys::NGX_HTTP_POST,
            "PUT" => nginx_sys::NGX_HTTP_PUT,
            "DELETE" => nginx_sys::NGX_HTTP_DELETE,
            "PATCH" => nginx_sys::NGX_HTTP_PATCH,
            "OPTIONS" => nginx_sys::NGX_HTTP_OPTIONS,
            _ => return None,
        }) as ngx_uint_t,
    )
}

ngx_entry! {
    /// `gpt_auth_quota_report zone=NAME` (location): the usage report.
    pub directive fn quota_report(cf, lcf: LocConf) {
        let name = zone_param(cf)?;
        crate::conf::directives::set_content_handler(cf, lcf, Handler::QuotaReport(name), report::report_handler)
    }
}

ngx_entry! {
    /// `gpt_auth_quota_admin zone=NAME` (location): resets and top-ups.
    pub directive fn quota_admin(cf, lcf: LocConf) {
        let name = zone_param(cf)?;
        crate::conf::directives::set_content_handler(cf, lcf, Handler::QuotaAdmin(name), admin::admin_handler)
    }
}

/// The `zone=NAME` argument of a content handler directive.
pub fn zone_param(cf: &ngx_conf_t) -> Result<String, ConfError> {
    let v = crate::conf::directives::value(cf);
    let v = crate::conf::directives::utf8(&v)?;
    v.strip_prefix("zone=").filter(|n| !n.is_empty()).map(str::to_owned).ok_or_else(|| {
        ConfError::invalid(format_args!("invalid parameter \"{v}\" (expected zone=NAME)"))
    })
}

ngx_entry! {
    /// `gpt_auth_quota_group zone=NAME name=NAME members=*|@domain|FILE [budgets] [warn=N%]`
    /// (http level): a budget shared by a group, or (`members=*`) by everyone.
    pub directive fn quota_group(cf, mcf: MainConf) {
        let (mut zone, mut name, mut members) = (None, None, None);
        let mut g_limits = Limits::UNLIMITED;
        let mut warn = None;
        for a in cf.arg_strings() {
            let (k, v) = a.split_once('=').ok_or_else(|| invalid(&a))?;
            if budget(&mut g_limits, k, v)? {
                continue;
            }
            match k {
                "zone" => zone = Some(v.to_owned()),
                "name" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()) => {
                    name = Some(v.to_owned())
                }
                "members" => members = Some(group_members(cf, mcf, v)?),
                "warn" => warn = Some(percent(v)?),
                _ => return Err(invalid(&a)),
            }
        }
        let zone = zone.ok_or_else(|| ConfError::invalid("needs zone=NAME"))?;
        let name = name.ok_or_else(|| ConfError::invalid("needs name=NAME (printable, no spaces)"))?;
        let members = members.ok_or_else(|| ConfError::invalid("needs members=* | @domain | FILE"))?;
        let z = mcf.quota_zone(&zone).ok_or_else(|| {
            ConfError::invalid(format_args!(
                "zone \"{zone}\" is not defined (gpt_auth_quota_zone must come first)"
            ))
        })?;
        let mut groups = z.groups.borrow_mut();
        if groups.iter().any(|g| g.name == name) {
            return Err(ConfError::invalid(format_args!("group \"{name}\" is duplicate")));
        }
        if groups.len() >= MAX_GROUPS {
            return Err(ConfError::invalid(format_args!("zone \"{zone}\" has {MAX_GROUPS} groups already")));
        }
        groups.push(GroupConf { name, members, limits: g_limits, warn });
        Ok(())
    }
}

fn group_members(cf: &mut ngx_conf_t, mcf: &mut MainConf, v: &str) -> Result<Members, ConfError> {
    if v == "*" {
        return Ok(Members::All);
    }
    if let Some(d) = v.strip_prefix('@') {
        if d.is_empty() || d.contains('@') {
            return Err(ConfError::invalid(format_args!("members=\"{v}\": not a domain")));
        }
        return Ok(Members::Domain(v.to_ascii_lowercase()));
    }
    let path = cf.full_path(v.as_bytes())?;
    if let Some(list) = mcf.allowlists.iter().find(|l| l.path() == path) {
        return Ok(Members::List(list.clone()));
    }
    let list = Rc::new(WatchedAllowlist::load(&path)?);
    crate::files::warn_if_unreadable_by_workers(cf, "allowlist", &path);
    mcf.allowlists.push(list.clone());
    Ok(Members::List(list))
}
