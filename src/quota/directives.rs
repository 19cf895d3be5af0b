//! The quota directives: `gpt_auth_quota_zone` (http), `gpt_auth_quota` and
//! `gpt_auth_quota_report`.

use core::cell::OnceCell;
use core::ptr;
use std::rc::Rc;

use gpt_auth_core::duration;
use gpt_auth_core::quota::{self, Clock, Limit, Limits, Overrides};
use nginx_sys::{ngx_conf_t, ngx_uint_t};

use super::{report, zone};
use crate::conf::quota::DEFAULT_INTERVAL;
use crate::conf::{Handler, LocConf, MainConf, QuotaConf, Zone};
use crate::files::Watched;
use crate::ngx::conf::{add_shared_zone, parse_size};
use crate::ngx::{ConfError, NgxConfExt};

/// Smallest zone accepted (a few thousand users need about 1 MB: ~160 bytes each).
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
        let shm = add_shared_zone(cf, &name, size, ptr::addr_of_mut!(crate::ngx_http_gpt_auth_module))?;
        let z = Rc::new(Zone::new(name, ptr::from_mut(shm), clock, state, interval));
        shm.init = Some(zone::init);
        shm.data = Rc::as_ptr(&z).cast_mut().cast();
        mcf.quota_zones.push(z);
        Ok(())
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
            defaults: Limits { day: Limit::Unlimited, month: Limit::Unlimited },
            methods: 0,
            overrides: None,
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
    let limit = |name: &str| {
        Limit::parse(v).map_err(|e| ConfError::invalid(format_args!("{name}=\"{v}\": {e}")))
    };
    match k {
        "zone" => q.zone_name = v.to_owned(),
        "day" => q.defaults.day = limit("day")?,
        "month" => q.defaults.month = limit("month")?,
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
        _ => return Err(invalid(a)),
    }
    Ok(())
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
        let v = crate::conf::directives::value(cf);
        let v = crate::conf::directives::utf8(&v)?;
        let name = v
            .strip_prefix("zone=")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConfError::invalid(format_args!("invalid parameter \"{v}\" (expected zone=NAME)")))?
            .to_owned();
        crate::conf::directives::set_content_handler(cf, lcf, Handler::QuotaReport(name), report::report_handler)
    }
}
