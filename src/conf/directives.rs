//! Handlers of the general directives (session, cookie, allowlist, URLs, pages). Every refusal
//! names the reason; `ngx_entry!` prefixes the directive's name and nginx appends the file and
//! line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use gpt_auth_core::duration;
use gpt_auth_core::keys::KeyRing;
use gpt_auth_core::set_cookie::SameSite;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::{KeyFile, LocConf, FLAG_UNSET};
use crate::ngx::conf::{read_conf_file, ComplexValueSlot};
use crate::ngx::{ConfError, NgxConfExt};
use crate::GptAuthModule;

/// Sets an optional value once; a second directive at the same level is a duplicate.
pub fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), ConfError> {
    if slot.is_some() {
        return Err(ConfError::Duplicate);
    }
    *slot = Some(value);
    Ok(())
}

pub fn utf8(value: &[u8]) -> Result<&str, ConfError> {
    core::str::from_utf8(value).map_err(|_| ConfError::invalid("value is not valid UTF-8"))
}

/// The directive's first argument.
pub fn value(cf: &ngx_conf_t) -> Vec<u8> {
    cf.args().get(1).map(|a| a.as_bytes().to_vec()).unwrap_or_default()
}

use nginx_sys::ngx_conf_t;

fn lossy(v: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(v)
}

ngx_entry! {
    /// `gpt_auth on | off`
    pub directive fn enable(cf, lcf: LocConf) {
        if lcf.enable != FLAG_UNSET {
            return Err(ConfError::Duplicate);
        }
        let v = value(cf);
        lcf.enable = match v.to_ascii_lowercase().as_slice() {
            b"on" => 1,
            b"off" => 0,
            _ => {
                return Err(ConfError::invalid(format_args!(
                    "invalid value \"{}\", it must be \"on\" or \"off\"",
                    lossy(&v)
                )))
            }
        };
        lcf.enable_source = cf.source();
        Ok(())
    }
}

ngx_entry! {
    /// `gpt_auth_key_file FILE`: read once per configuration, however many levels name it.
    pub directive fn key_file(cf, lcf: LocConf) {
        if lcf.keys.is_some() {
            return Err(ConfError::Duplicate);
        }
        let path = cf.full_path(&value(cf))?;
        let mcf = GptAuthModule::main_conf_mut(cf).ok_or(ConfError::NoHttp)?;
        if let Some(kf) = mcf.key_files.iter().find(|k| k.path == path) {
            lcf.keys = Some(kf.clone());
            return Ok(());
        }
        let (path, text) = read_conf_file(cf, path.as_bytes())?;
        let text = String::from_utf8(text)
            .map_err(|_| ConfError::invalid(format_args!("\"{path}\" is not text")))?;
        let ring =
            KeyRing::parse(&text).map_err(|e| ConfError::invalid(format_args!("\"{path}\" {e}")))?;
        if fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
            cf.warn(format_args!(
                "gpt_auth: key file \"{path}\" is readable by everyone; restrict it (chmod 600)"
            ));
        }
        let kf = Rc::new(KeyFile { path, ring, cache: Default::default() });
        let mcf = GptAuthModule::main_conf_mut(cf).ok_or(ConfError::NoHttp)?;
        mcf.key_files.push(kf.clone());
        lcf.keys = Some(kf);
        Ok(())
    }
}

ngx_entry! {
    /// `gpt_auth_cookie_name NAME`: an RFC 6265 cookie-name (an RFC 7230 token).
    pub directive fn cookie_name(cf, lcf: LocConf) {
        let v = value(cf);
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if v.is_empty() || !v.iter().all(token) {
            return Err(ConfError::invalid(format_args!(
                "invalid cookie name \"{}\" (letters, digits and !#$%&'*+-.^_`|~ only)",
                lossy(&v)
            )));
        }
        set_once(&mut lcf.cookie_name, utf8(&v)?.to_owned())
    }
}

ngx_entry! {
    /// `gpt_auth_cookie_domain DOMAIN | off`
    pub directive fn cookie_domain(cf, lcf: LocConf) {
        let v = value(cf);
        if v == b"off" {
            return set_once(&mut lcf.cookie_domain, String::new());
        }
        let bare = v.strip_prefix(b".").unwrap_or(&v);
        let label_ok =
            |l: &[u8]| !l.is_empty() && l.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
        if bare.is_empty() || !bare.split(|b| *b == b'.').all(label_ok) {
            return Err(ConfError::invalid(format_args!(
                "invalid domain \"{}\" (a host name such as \".example.com\", or \"off\")",
                lossy(&v)
            )));
        }
        set_once(&mut lcf.cookie_domain, utf8(&v)?.to_ascii_lowercase())
    }
}

ngx_entry! {
    /// `gpt_auth_cookie_path PATH`
    pub directive fn cookie_path(cf, lcf: LocConf) {
        let v = value(cf);
        if !v.starts_with(b"/") || v.iter().any(|b| b.is_ascii_control() || *b == b';') {
            return Err(ConfError::invalid(format_args!(
                "invalid path \"{}\" (must start with \"/\", no \";\" or control characters)",
                lossy(&v)
            )));
        }
        set_once(&mut lcf.cookie_path, utf8(&v)?.to_owned())
    }
}

ngx_entry! {
    /// `gpt_auth_cookie_max_age TIME`
    pub directive fn cookie_max_age(cf, lcf: LocConf) {
        let v = value(cf);
        let text = utf8(&v)?;
        let secs = duration::parse_seconds(text)
            .map_err(|e| ConfError::invalid(format_args!("invalid time \"{text}\": {e}")))?;
        if secs == 0 {
            return Err(ConfError::invalid("must be greater than zero"));
        }
        set_once(&mut lcf.cookie_max_age, secs)
    }
}

ngx_entry! {
    /// `gpt_auth_cookie_samesite strict | lax | none`
    pub directive fn cookie_samesite(cf, lcf: LocConf) {
        let v = value(cf);
        let s = SameSite::parse(&v).ok_or_else(|| {
            ConfError::invalid(format_args!(
                "invalid value \"{}\", it must be \"strict\", \"lax\" or \"none\"",
                lossy(&v)
            ))
        })?;
        set_once(&mut lcf.cookie_samesite, s)
    }
}

ngx_entry! {
    /// `gpt_auth_login_url URL | off`: the URL may contain variables, so nginx's own
    /// complex-value slot compiles it (the command entry's offset points at
    /// `LocConf::login_url`).
    pub directive fn login_url(cf, lcf: LocConf, cmd) {
        if !lcf.login_url.is_unset() {
            return Err(ConfError::Duplicate);
        }
        let v = value(cf);
        if v == b"off" {
            lcf.login_url = ComplexValueSlot::OFF;
            return Ok(());
        }
        // A relative URL (`auth.example.com/login`) would make the redirect relative to the
        // protected site: a loop. One that starts with a variable is checked when evaluated.
        if !v.starts_with(b"$") && !url_like(&String::from_utf8_lossy(&v)) {
            return Err(ConfError::invalid(format_args!(
                "invalid URL \"{}\" (an absolute http(s) URL or a path starting with \"/\")",
                lossy(&v)
            )));
        }
        ComplexValueSlot::compile(cf, cmd, lcf)
    }
}

ngx_entry! {
    /// `gpt_auth_revoked FILE | off`: sessions revoked per user up to a time; read once per
    /// configuration, re-read when it changes.
    pub directive fn revoked(cf, lcf: LocConf) {
        if lcf.revoked.is_some() {
            return Err(ConfError::Duplicate);
        }
        let v = value(cf);
        if v == b"off" {
            lcf.revoked = Some(None);
            return Ok(());
        }
        lcf.revoked = Some(Some(crate::files::shared(cf, &v, |m| &mut m.revocation_lists)?));
        Ok(())
    }
}

ngx_entry! {
    /// `gpt_auth_allowlist FILE | off`: read once per configuration, re-read when it changes.
    pub directive fn allowlist(cf, lcf: LocConf) {
        if lcf.allowlist.is_some() {
            return Err(ConfError::Duplicate);
        }
        let v = value(cf);
        if v == b"off" {
            lcf.allowlist = Some(None);
            return Ok(());
        }
        lcf.allowlist = Some(Some(crate::files::shared(cf, &v, |m| &mut m.allowlists)?));
        Ok(())
    }
}

/// An absolute http(s) URL or a path, without spaces or control characters.
pub fn url_like(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    (v.starts_with('/') || lower.starts_with("https://") || lower.starts_with("http://"))
        && !v.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

fn url(cf: &ngx_conf_t) -> Result<String, ConfError> {
    let v = value(cf);
    let v = utf8(&v)?;
    if !url_like(v) {
        return Err(ConfError::invalid(format_args!(
            "invalid URL \"{v}\" (an http(s) URL or a path)"
        )));
    }
    Ok(v.to_owned())
}

ngx_entry! {
    /// `gpt_auth_logout_url URL | off`
    pub directive fn logout_url(cf, lcf: LocConf) {
        let v = if value(cf) == b"off" { String::new() } else { url(cf)? };
        set_once(&mut lcf.logout_url, v)
    }
}

ngx_entry! {
    /// `gpt_auth_default_return_url URL`
    pub directive fn default_return_url(cf, lcf: LocConf) {
        let v = url(cf)?;
        set_once(&mut lcf.default_return_url, v)
    }
}

ngx_entry! {
    /// `gpt_auth_return_hosts HOST ...` (`.example.com`: the domain and its subdomains)
    pub directive fn return_hosts(cf, lcf: LocConf) {
        if lcf.return_hosts.is_some() {
            return Err(ConfError::Duplicate);
        }
        let mut hosts = Vec::new();
        for h in cf.arg_strings() {
            let h = h.to_ascii_lowercase();
            let bare = h.strip_prefix('.').unwrap_or(&h);
            if bare.is_empty()
                || !bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
            {
                return Err(ConfError::invalid(format_args!("invalid host \"{h}\"")));
            }
            hosts.push(h);
        }
        lcf.return_hosts = Some(hosts);
        Ok(())
    }
}

/// A page template read at configuration time.
fn page(cf: &mut ngx_conf_t, slot: &mut Option<Rc<String>>) -> Result<(), ConfError> {
    let (path, text) = read_conf_file(cf, &value(cf))?;
    let text = String::from_utf8(text)
        .map_err(|_| ConfError::invalid(format_args!("\"{path}\" is not UTF-8")))?;
    set_once(slot, Rc::new(text))
}

ngx_entry! {
    /// `gpt_auth_login_page FILE`
    pub directive fn login_page(cf, lcf: LocConf) { page(cf, &mut lcf.login_page) }
}

ngx_entry! {
    /// `gpt_auth_not_allowed_page FILE`
    pub directive fn not_allowed_page(cf, lcf: LocConf) { page(cf, &mut lcf.not_allowed_page) }
}

ngx_entry! {
    /// `gpt_auth_error_page FILE`
    pub directive fn error_page(cf, lcf: LocConf) { page(cf, &mut lcf.error_page) }
}

ngx_entry! {
    /// `gpt_auth_quota_page FILE`
    pub directive fn quota_page(cf, lcf: LocConf) { page(cf, &mut lcf.quota_page) }
}

/// Makes the location run `handler` as its content handler (one per location).
pub fn set_content_handler(
    cf: &mut ngx_conf_t,
    lcf: &mut LocConf,
    kind: super::Handler,
    handler: extern "C" fn(*mut nginx_sys::ngx_http_request_t) -> nginx_sys::ngx_int_t,
) -> Result<(), ConfError> {
    if lcf.handler != super::Handler::None {
        return Err(ConfError::invalid(
            "is duplicate (a location runs one gpt_auth content handler)",
        ));
    }
    let clcf = ngx::http::NgxHttpCoreModule::location_conf_mut(cf).ok_or(ConfError::NoHttp)?;
    clcf.handler = Some(handler);
    lcf.handler = kind;
    lcf.handler_source = cf.source();
    Ok(())
}
