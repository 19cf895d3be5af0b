//! The configuration directives: the command table and one handler per directive.
//! Every refusal names the directive and the reason; nginx appends the file and line.

use core::ffi::{c_char, c_void, CStr};
use core::ptr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use gpt_auth_core::duration;
use gpt_auth_core::keys::KeyRing;
use gpt_auth_core::set_cookie::SameSite;
use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_http_handler_pt, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_BLOCK,
    NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::conf::{Handler as ContentHandler, KeyFile, LocConf, Source, PTR_UNSET};
use crate::ngx_ext::{conf_args, conf_full_path, conf_source, guard};
use crate::watch::WatchedAllowlist;
use crate::GptAuthModule;
use crate::{budget, handlers, provider, quota};

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

type Handler =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// A command entry. nginx compares directive names with `strcmp`, so names are C strings.
const fn command_at(
    name: &'static CStr,
    type_: u32,
    set: Handler,
    conf: usize,
    offset: usize,
) -> ngx_command_t {
    ngx_command_t {
        name: nginx_sys::ngx_str_t {
            len: name.count_bytes(),
            data: name.as_ptr().cast::<u8>().cast_mut(),
        },
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf,
        offset,
        post: ptr::null_mut(),
    }
}

/// A directive valid at http, server and location level.
const fn command(name: &'static CStr, args: u32, set: Handler, offset: usize) -> ngx_command_t {
    command_at(name, ANY_LEVEL | args, set, NGX_HTTP_LOC_CONF_OFFSET, offset)
}

/// A content handler directive (location level only).
const fn location_command(name: &'static CStr, args: u32, set: Handler) -> ngx_command_t {
    command_at(name, NGX_HTTP_LOC_CONF | args, set, NGX_HTTP_LOC_CONF_OFFSET, 0)
}

pub static mut COMMANDS: [ngx_command_t; 25] = [
    command(c"gpt_auth", NGX_CONF_FLAG, cmd_enable, 0),
    command(c"gpt_auth_key_file", NGX_CONF_TAKE1, cmd_key_file, 0),
    command(c"gpt_auth_cookie_name", NGX_CONF_TAKE1, cmd_cookie_name, 0),
    command(c"gpt_auth_cookie_domain", NGX_CONF_TAKE1, cmd_cookie_domain, 0),
    command(c"gpt_auth_cookie_path", NGX_CONF_TAKE1, cmd_cookie_path, 0),
    command(c"gpt_auth_cookie_max_age", NGX_CONF_TAKE1, cmd_cookie_max_age, 0),
    command(c"gpt_auth_cookie_samesite", NGX_CONF_TAKE1, cmd_cookie_samesite, 0),
    command(
        c"gpt_auth_cookie_secure",
        NGX_CONF_FLAG,
        nginx_sys::ngx_conf_set_flag_slot,
        core::mem::offset_of!(LocConf, cookie_secure),
    ),
    command(
        c"gpt_auth_login_url",
        NGX_CONF_TAKE1,
        cmd_login_url,
        core::mem::offset_of!(LocConf, login_url),
    ),
    command(c"gpt_auth_allowlist", NGX_CONF_TAKE1, cmd_allowlist, 0),
    command(c"gpt_auth_logout_url", NGX_CONF_TAKE1, cmd_logout_url, 0),
    command(c"gpt_auth_return_hosts", NGX_CONF_1MORE, cmd_return_hosts, 0),
    command(c"gpt_auth_default_return_url", NGX_CONF_TAKE1, cmd_default_return_url, 0),
    command(c"gpt_auth_login_page", NGX_CONF_TAKE1, cmd_page, 0),
    command(c"gpt_auth_not_allowed_page", NGX_CONF_TAKE1, cmd_page, 0),
    command(c"gpt_auth_error_page", NGX_CONF_TAKE1, cmd_page, 0),
    command_at(
        c"gpt_auth_provider",
        NGX_HTTP_MAIN_CONF | NGX_CONF_BLOCK | NGX_CONF_TAKE1,
        provider::cmd_provider,
        NGX_HTTP_MAIN_CONF_OFFSET,
        0,
    ),
    location_command(c"gpt_auth_login", NGX_CONF_1MORE, cmd_login),
    location_command(c"gpt_auth_callback", NGX_CONF_NOARGS, cmd_callback),
    location_command(c"gpt_auth_logout", NGX_CONF_NOARGS, cmd_logout),
    command_at(
        c"gpt_auth_quota_zone",
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        quota::cmd_zone,
        NGX_HTTP_MAIN_CONF_OFFSET,
        0,
    ),
    command(c"gpt_auth_quota", NGX_CONF_1MORE, cmd_quota, 0),
    command(c"gpt_auth_quota_page", NGX_CONF_TAKE1, cmd_page, 0),
    location_command(c"gpt_auth_quota_report", NGX_CONF_TAKE1, cmd_quota_report),
    ngx_command_t {
        name: ngx_string!(""),
        type_: 0,
        set: None,
        conf: 0,
        offset: 0,
        post: ptr::null_mut(),
    },
];

/// Defines the `extern "C"` handler `$name` of a directive whose work is the closure (given the
/// configuration being parsed, our location configuration and the first argument).
macro_rules! directive_handler {
    ($name:ident, |$cf:pat_param, $lcf:pat_param, $value:pat_param| $body:expr) => {
        extern "C" fn $name(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            directive(cf, conf, |$cf, $lcf, $value| $body)
        }
    };
}

/// Common frame of a directive handler: gives `f` the configuration being filled and the first
/// argument; logs `f`'s error (prefixed with the directive name) for `nginx -t`.
fn directive(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    f: impl FnOnce(&mut ngx_conf_t, &mut LocConf, &[u8]) -> Result<(), String>,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the configuration being parsed and our location conf.
        let (cf, lcf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
        let args = conf_args(cf);
        let (name, value) = match args {
            [name, value, ..] => (name.to_string(), value.as_bytes().to_vec()),
            [name] => (name.to_string(), Vec::new()),
            [] => return NGX_CONF_ERROR,
        };
        match f(cf, lcf, &value) {
            Ok(()) => NGX_CONF_OK,
            Err(msg) => {
                conf_emerg!(cf, "\"{}\" directive {}", name, msg);
                NGX_CONF_ERROR
            }
        }
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err("is duplicate".into());
    }
    *slot = Some(value);
    Ok(())
}

fn utf8(value: &[u8]) -> Result<&str, String> {
    core::str::from_utf8(value).map_err(|_| "value is not valid UTF-8".to_string())
}

directive_handler!(cmd_enable, |cf, lcf, value| {
    if lcf.enable != nginx_sys::NGX_CONF_UNSET as isize {
        return Err("is duplicate".into());
    }
    lcf.enable = match value.to_ascii_lowercase().as_slice() {
        b"on" => 1,
        b"off" => 0,
        _ => {
            return Err(format!(
                "invalid value \"{}\", it must be \"on\" or \"off\"",
                String::from_utf8_lossy(value)
            ))
        }
    };
    let (file, line) = conf_source(cf);
    lcf.enable_source = Source { file, line };
    Ok(())
});

directive_handler!(cmd_key_file, |cf, lcf, value| {
    if lcf.keys.is_some() {
        return Err("is duplicate".into());
    }
    let path = conf_full_path(cf, value).ok_or("cannot resolve the path")?;
    let mcf = GptAuthModule::main_conf_mut(cf).ok_or("has no http configuration")?;
    if let Some(kf) = mcf.key_files.iter().find(|k| k.path == path) {
        lcf.keys = Some(kf.clone());
        return Ok(());
    }
    let text = fs::read(&path)
        .map_err(|e| format!("cannot read \"{path}\": {}", crate::log::io_reason(&e)))?;
    let text = String::from_utf8(text).map_err(|_| format!("\"{path}\" is not text"))?;
    let ring = KeyRing::parse(&text).map_err(|e| format!("\"{path}\" {e}"))?;
    if let Ok(meta) = fs::metadata(&path) {
        if meta.permissions().mode() & 0o004 != 0 {
            ngx::ngx_conf_log_error!(
                nginx_sys::NGX_LOG_WARN,
                cf,
                "gpt_auth: key file \"{}\" is readable by everyone; restrict it (chmod 600)",
                path
            );
        }
    }
    let kf = Rc::new(KeyFile { path, ring, cache: Default::default() });
    mcf.key_files.push(kf.clone());
    lcf.keys = Some(kf);
    Ok(())
});

directive_handler!(cmd_cookie_name, |_, lcf, value| {
    // RFC 6265 cookie-name is an RFC 7230 token.
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if value.is_empty() || !value.iter().all(token) {
        return Err(format!(
            "invalid cookie name \"{}\" (letters, digits and !#$%&'*+-.^_`|~ only)",
            String::from_utf8_lossy(value)
        ));
    }
    set_once(&mut lcf.cookie_name, utf8(value)?.to_owned())
});

directive_handler!(cmd_cookie_domain, |_, lcf, value| {
    if value == b"off" {
        return set_once(&mut lcf.cookie_domain, String::new());
    }
    let bare = value.strip_prefix(b".").unwrap_or(value);
    let label_ok =
        |l: &[u8]| !l.is_empty() && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    if bare.is_empty() || !bare.split(|b| *b == b'.').all(label_ok) {
        return Err(format!(
            "invalid domain \"{}\" (a host name such as \".example.com\", or \"off\")",
            String::from_utf8_lossy(value)
        ));
    }
    set_once(&mut lcf.cookie_domain, utf8(value)?.to_ascii_lowercase())
});

directive_handler!(cmd_cookie_path, |_, lcf, value| {
    if !value.starts_with(b"/") || value.iter().any(|b| b.is_ascii_control() || *b == b';') {
        return Err(format!(
            "invalid path \"{}\" (must start with \"/\", no \";\" or control characters)",
            String::from_utf8_lossy(value)
        ));
    }
    set_once(&mut lcf.cookie_path, utf8(value)?.to_owned())
});

directive_handler!(cmd_cookie_max_age, |_, lcf, value| {
    let text = utf8(value)?;
    let secs =
        duration::parse_seconds(text).map_err(|e| format!("invalid time \"{text}\": {e}"))?;
    if secs == 0 {
        return Err("must be greater than zero".into());
    }
    set_once(&mut lcf.cookie_max_age, secs)
});

directive_handler!(cmd_cookie_samesite, |_, lcf, value| {
    let s = SameSite::parse(value).ok_or_else(|| {
        format!(
            "invalid value \"{}\", it must be \"strict\", \"lax\" or \"none\"",
            String::from_utf8_lossy(value)
        )
    })?;
    set_once(&mut lcf.cookie_samesite, s)
});

extern "C" fn cmd_login_url(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: as in `directive`.
        let (cfr, lcf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
        if lcf.login_url != PTR_UNSET {
            conf_emerg!(cf, "\"gpt_auth_login_url\" directive is duplicate");
            return NGX_CONF_ERROR;
        }
        if conf_args(cfr).get(1).is_some_and(|v| v.as_bytes() == b"off") {
            lcf.login_url = ptr::null_mut();
            return NGX_CONF_OK;
        }
        // nginx's own slot compiles the URL (variables allowed) into the configuration pool;
        // our command entry points it at `login_url`, which is NGX_CONF_UNSET_PTR until set.
        // SAFETY: nginx's arguments, passed through unchanged.
        unsafe { nginx_sys::ngx_http_set_complex_value_slot(cf, cmd, conf) }
    })
}

directive_handler!(cmd_allowlist, |cf, lcf, value| {
    if lcf.allowlist.is_some() {
        return Err("is duplicate".into());
    }
    if value == b"off" {
        lcf.allowlist = Some(None);
        return Ok(());
    }
    let path = conf_full_path(cf, value).ok_or("cannot resolve the path")?;
    let mcf = GptAuthModule::main_conf_mut(cf).ok_or("has no http configuration")?;
    if let Some(list) = mcf.allowlists.iter().find(|l| l.path() == path) {
        lcf.allowlist = Some(Some(list.clone()));
        return Ok(());
    }
    let list = Rc::new(WatchedAllowlist::load(&path)?);
    mcf.allowlists.push(list.clone());
    lcf.allowlist = Some(Some(list));
    Ok(())
});

directive_handler!(cmd_logout_url, |_, lcf, value| {
    let v = utf8(value)?;
    if v != "off" && !url_like(v) {
        return Err(format!("invalid URL \"{v}\" (an http(s) URL or a path)"));
    }
    set_once(&mut lcf.logout_url, if v == "off" { String::new() } else { v.to_owned() })
});

directive_handler!(cmd_default_return_url, |_, lcf, value| {
    let v = utf8(value)?;
    if !url_like(v) {
        return Err(format!("invalid URL \"{v}\" (an http(s) URL or a path)"));
    }
    set_once(&mut lcf.default_return_url, v.to_owned())
});

/// An absolute http(s) URL or a path, without spaces or control characters.
fn url_like(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    (v.starts_with('/') || lower.starts_with("https://") || lower.starts_with("http://"))
        && !v.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

extern "C" fn cmd_return_hosts(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the configuration being parsed and our location conf.
        let (cfr, lcf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
        if lcf.return_hosts.is_some() {
            conf_emerg!(cf, "\"gpt_auth_return_hosts\" directive is duplicate");
            return NGX_CONF_ERROR;
        }
        let mut hosts = Vec::new();
        for a in conf_args(cfr).iter().skip(1) {
            let h = a.to_string().to_ascii_lowercase();
            let bare = h.strip_prefix('.').unwrap_or(&h);
            if bare.is_empty()
                || !bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
            {
                conf_emerg!(cf, "\"gpt_auth_return_hosts\" directive invalid host \"{}\"", h);
                return NGX_CONF_ERROR;
            }
            hosts.push(h);
        }
        lcf.return_hosts = Some(hosts);
        NGX_CONF_OK
    })
}

extern "C" fn cmd_page(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: as in `directive`.
        let (cfr, lcf) = unsafe { (&mut *cf, &mut *conf.cast::<LocConf>()) };
        let (name, value) = match conf_args(cfr) {
            [n, v] => (n.to_string(), v.as_bytes().to_vec()),
            _ => return NGX_CONF_ERROR,
        };
        let result = (|| -> Result<(), String> {
            let path = conf_full_path(cfr, &value).ok_or("cannot resolve the path")?;
            let text = fs::read(&path)
                .map_err(|e| format!("cannot read \"{path}\": {}", crate::log::io_reason(&e)))?;
            let text = String::from_utf8(text).map_err(|_| format!("\"{path}\" is not UTF-8"))?;
            let slot = match name.as_str() {
                "gpt_auth_login_page" => &mut lcf.login_page,
                "gpt_auth_not_allowed_page" => &mut lcf.not_allowed_page,
                "gpt_auth_quota_page" => &mut lcf.quota_page,
                _ => &mut lcf.error_page,
            };
            set_once(slot, Rc::new(text))
        })();
        match result {
            Ok(()) => NGX_CONF_OK,
            Err(msg) => {
                conf_emerg!(cf, "\"{}\" directive {}", name, msg);
                NGX_CONF_ERROR
            }
        }
    })
}

/// Makes the location run `handler` as its content handler.
fn set_content_handler(
    cf: &mut ngx_conf_t,
    lcf: &mut LocConf,
    kind: ContentHandler,
    handler: ngx_http_handler_pt,
) -> Result<(), String> {
    if lcf.handler != ContentHandler::None {
        return Err("is duplicate (a location runs one gpt_auth content handler)".into());
    }
    let clcf = NgxHttpCoreModule::location_conf_mut(cf).ok_or("has no location")?;
    clcf.handler = handler;
    let (file, line) = conf_source(cf);
    lcf.handler = kind;
    lcf.handler_source = Source { file, line };
    Ok(())
}

directive_handler!(cmd_login, |cf, lcf, _| {
    let names: Vec<String> = conf_args(cf).iter().skip(1).map(|a| a.to_string()).collect();
    set_content_handler(cf, lcf, ContentHandler::Login(names), Some(handlers::login_handler))
});

directive_handler!(cmd_callback, |cf, lcf, _| {
    set_content_handler(cf, lcf, ContentHandler::Callback, Some(handlers::callback_handler))
});

directive_handler!(cmd_logout, |cf, lcf, _| {
    set_content_handler(cf, lcf, ContentHandler::Logout, Some(handlers::logout_handler))
});

directive_handler!(cmd_quota, |cf, lcf, _| quota::quota_directive(cf, lcf));

directive_handler!(cmd_quota_report, |cf, lcf, value| {
    let v = utf8(value)?;
    let name = v
        .strip_prefix("zone=")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("invalid parameter \"{v}\" (expected zone=NAME)"))?;
    set_content_handler(
        cf,
        lcf,
        ContentHandler::QuotaReport(name.to_owned()),
        Some(budget::report_handler),
    )
});
