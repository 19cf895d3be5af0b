//! What the login handlers read from a request: cookies and query parameters by name, the
//! site's origin, the provider's redirect URI, and the return address allowed by the policy.

use gpt_auth_core::cookie_header;
use gpt_auth_core::form::decode_query_param;
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::return_url::Policy;
use ngx::http::Request;

use crate::conf::{LocConf, Provider};
use crate::ngx::RequestExt;

/// The first cookie called `name`.
pub fn cookie<'a>(r: &'a Request, name: &'a str) -> Option<&'a [u8]> {
    r.cookies().find_map(|v| cookie_header::values(v, name.as_bytes()).next())
}

/// A query parameter, decoded.
pub fn param(r: &Request, name: &str) -> Option<String> {
    decode_query_param(r.args(), name)
}

/// `$scheme://$http_host` of this request.
fn origin(r: &Request) -> String {
    let scheme = if r.is_https() { "https" } else { "http" };
    format!("{scheme}://{}", String::from_utf8_lossy(r.host()))
}

/// The provider's redirect URI, absolute.
pub fn redirect_uri(r: &Request, p: &Provider) -> String {
    if p.redirect_uri.starts_with('/') {
        format!("{}{}", origin(r), p.redirect_uri)
    } else {
        p.redirect_uri.clone()
    }
}

/// Where to send the browser after the login: `rd` if it passes the policy (cookie domain,
/// `gpt_auth_return_hosts`, this site), else `gpt_auth_default_return_url` or `/`.
pub fn return_url(r: &Request, lcf: &LocConf, rd: Option<&str>) -> String {
    let policy = Policy {
        cookie_domain: lcf.cookie_domain().map(str::to_owned),
        allowed_hosts: lcf.return_hosts.clone().unwrap_or_default(),
        // The configured name of this server, not the client's Host header.
        own_host: r.server_name(),
    };
    if let Some(rd) = rd.filter(|rd| !rd.is_empty()) {
        if let Some(ok) = policy.check(rd) {
            return ok;
        }
        info!(r, "return address refused: \"{}\"", log_safe(rd, 200));
    }
    lcf.default_return_url.clone().unwrap_or_else(|| "/".to_owned())
}

/// Whether the browser will drop this site's cookies: a plain-http request (neither TLS here
/// nor `X-Forwarded-Proto: https` from a TLS proxy in front) to a site whose cookies are
/// `Secure`, and not on a loopback name (browsers keep Secure cookies of `http://localhost`).
pub fn drops_secure_cookies(r: &Request, lcf: &LocConf) -> bool {
    if !lcf.secure() || r.is_https() {
        return false;
    }
    let proxied_tls =
        r.headers().any(|(n, v)| n == b"x-forwarded-proto" && v.eq_ignore_ascii_case(b"https"));
    let host = r.host();
    // Without the port (an IPv6 literal keeps its brackets).
    let host = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host[..i].ends_with(b"]") && host.first() != Some(&b'[') => &host[..i],
        Some(i) if host[..i].ends_with(b"]") => &host[..i],
        _ => host,
    };
    let loopback =
        host.eq_ignore_ascii_case(b"localhost") || host.starts_with(b"127.") || host == b"[::1]";
    !proxied_tls && !loopback
}

/// Logs, at `error` and once per worker and location, that sign-in cannot work here.
pub fn report_insecure_site(r: &Request, lcf: &LocConf) {
    if lcf.insecure_site_logged.replace(true) {
        return;
    }
    error!(
        r,
        "the login site is served over plain http but \"gpt_auth_cookie_secure\" is on: browsers \
         drop its login-state and session cookies, so every sign-in fails; serve it over https \
         (or set \"gpt_auth_cookie_secure off\" for development)"
    );
}
