//! Content handlers: the login page (`gpt_auth_login`), the provider's callback
//! (`gpt_auth_callback`: authorization code, or a Google Identity Services credential POST) and
//! logout (`gpt_auth_logout`).

use core::fmt::Write;
use std::rc::Rc;

use gpt_auth_core::cookie_header;
use gpt_auth_core::form::{decode_query_param, form_params};
use gpt_auth_core::html::{escape, render};
use gpt_auth_core::idtoken;
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::return_url::Policy;
use gpt_auth_core::set_cookie;
use gpt_auth_core::state::{self, State};
use nginx_sys::{
    ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use subtle::ConstantTimeEq;

use crate::access::{current_verdict, Outcome};
use crate::conf::LocConf;
use crate::flow::{self, Flow, Kind, STATE_TTL};
use crate::ngx_ext::{
    add_response_header, args, finalize, guard, host, is_get_or_head, is_https, is_post, now,
    read_request_body, request_body, request_headers, send_response, server_name,
};
use crate::pages::{self, Page, DEFAULT_LOGIN, HTML};
use crate::provider::Provider;
use crate::{login_state, random, GptAuthModule};

const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// Runs a content handler body with the request and its location configuration.
fn content(
    r: *mut ngx_http_request_t,
    f: impl FnOnce(&mut ngx_http_request_t, &'static LocConf) -> ngx_int_t,
) -> ngx_int_t {
    guard(INTERNAL_ERROR, || {
        // SAFETY: nginx calls content handlers with a live request.
        let r = unsafe { &mut *r };
        let Some(lcf) = GptAuthModule::location_conf(r) else { return INTERNAL_ERROR };
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::maybe_panic(r, "content");
        f(r, lcf)
    })
}

/// The first cookie called `name`.
fn cookie<'a>(r: &'a ngx_http_request_t, name: &'a str) -> Option<&'a [u8]> {
    request_headers(r)
        .filter(|(h, _)| *h == b"cookie")
        .find_map(|(_, v)| cookie_header::values(v, name.as_bytes()).next())
}

fn param(r: &ngx_http_request_t, name: &str) -> Option<String> {
    decode_query_param(args(r), name)
}

/// `$scheme://$http_host` of this request.
fn origin(r: &ngx_http_request_t) -> String {
    let scheme = if is_https(r) { "https" } else { "http" };
    format!("{scheme}://{}", String::from_utf8_lossy(host(r)))
}

/// The provider's redirect URI, absolute.
fn redirect_uri(r: &ngx_http_request_t, p: &Provider) -> String {
    if p.redirect_uri.starts_with('/') {
        format!("{}{}", origin(r), p.redirect_uri)
    } else {
        p.redirect_uri.clone()
    }
}

/// Where to send the browser after the login: `rd` if it passes the policy (cookie domain,
/// `gpt_auth_return_hosts`, this site), else `gpt_auth_default_return_url` or `/`.
fn return_url(r: &ngx_http_request_t, lcf: &LocConf, rd: Option<&str>) -> String {
    let policy = Policy {
        cookie_domain: lcf.cookie_domain().map(str::to_owned),
        allowed_hosts: lcf.return_hosts.clone().unwrap_or_default(),
        // The configured name of this server, not the client's Host header.
        own_host: server_name(r),
    };
    if let Some(rd) = rd.filter(|rd| !rd.is_empty()) {
        if let Some(ok) = policy.check(rd) {
            return ok;
        }
        info!(r, "return address refused: \"{}\"", log_safe(rd, 200));
    }
    lcf.default_return_url.clone().unwrap_or_else(|| "/".to_owned())
}

fn method_not_allowed() -> ngx_int_t {
    NGX_HTTP_NOT_ALLOWED as ngx_int_t
}

/// `gpt_auth_login`: the login page, or (with `?provider=NAME`) the start of a code flow.
pub extern "C" fn login_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    content(r, |r, lcf| {
        if !is_get_or_head(r) {
            return method_not_allowed();
        }
        let ret = return_url(r, lcf, param(r, "rd").as_deref());
        if let Some(name) = param(r, "provider") {
            let Some(p) = lcf.login_providers.iter().find(|p| p.name == name && p.code_flow())
            else {
                info!(r, "login refused: unknown provider \"{}\"", log_safe(&name, 64));
                return pages::error(r, lcf, Page::BadRequest);
            };
            let prompt = param(r, "switch").map(|_| p.switch_account_prompt());
            let uri = redirect_uri(r, p);
            let kind = Kind::Authorize { return_url: ret, prompt };
            return flow::start(r, Flow::new(p.clone(), lcf, kind, uri));
        }
        login_page(r, lcf, &ret)
    })
}

fn login_page(r: &mut ngx_http_request_t, lcf: &LocConf, ret: &str) -> ngx_int_t {
    let mut providers = String::new();
    let mut gsi_done = false;
    let mut rd = String::new();
    gpt_auth_core::url::percent_encode_into(&mut rd, ret.as_bytes());
    for p in &lcf.login_providers {
        if p.gsi && !gsi_done {
            gsi_done = true;
            match gsi_state(r, lcf, p, ret) {
                Some(nonce) => {
                    let _ = write!(
                        providers,
                        "<script src=\"https://accounts.google.com/gsi/client\" async></script>\n\
                         <div id=\"g_id_onload\" data-client_id=\"{}\" data-login_uri=\"{}\" \
                         data-nonce=\"{}\" data-ux_mode=\"redirect\" data-auto_prompt=\"false\" \
                         data-context=\"signin\"></div>\n\
                         <div class=\"g_id_signin\" data-type=\"standard\" data-size=\"large\" \
                         data-text=\"signin_with\"></div>\n",
                        escape(&p.client_id),
                        escape(&redirect_uri(r, p)),
                        escape(&nonce)
                    );
                }
                None => return NGX_ERROR as ngx_int_t,
            }
        }
        if p.code_flow() {
            let _ = writeln!(
                providers,
                "<p><a class=\"button\" href=\"?provider={}&amp;rd={}\">Sign in with {}</a></p>",
                escape(&p.name),
                escape(&rd),
                escape(&p.display_name)
            );
        }
    }
    let signed_in = match current_verdict(r) {
        Some(v) if v.outcome == Outcome::Allowed => match &v.email {
            Some(e) => format!(
                "<p>You are signed in as <b>{}</b>. <a href=\"{}\">Continue</a></p>",
                escape(e.as_str()),
                escape(ret)
            ),
            None => String::new(),
        },
        _ => String::new(),
    };
    let body = render(
        lcf.login_page.as_deref().map_or(DEFAULT_LOGIN, String::as_str),
        &[("providers", &providers), ("signed_in", &signed_in), ("return_url", &escape(ret))],
    );
    send_response(r, nginx_sys::NGX_HTTP_OK as ngx_uint_t, HTML, body.as_bytes())
}

/// For Google Identity Services: a state cookie named after a nonce (the POST that follows
/// carries no `state`; the credential's nonce finds the cookie). A fresh enough one for the same
/// provider and return address is reused, so reloading the page does not pile up cookies.
/// Returns the nonce.
fn gsi_state(r: &mut ngx_http_request_t, lcf: &LocConf, p: &Provider, ret: &str) -> Option<String> {
    let now = now();
    let (pending, _) = login_state::pending(r, lcf, now);
    let reusable = pending.iter().find(|(_, st)| {
        st.provider == p.name
            && st.verifier.is_empty()
            && st.return_url == ret
            && st.exp > now + STATE_TTL / 2
    });
    if let Some((_, st)) = reusable {
        return Some(st.nonce.clone());
    }
    let nonce = random::id()?;
    let st = State {
        sid: nonce.clone(),
        nonce: nonce.clone(),
        verifier: String::new(),
        return_url: ret.to_owned(),
        provider: p.name.clone(),
        exp: now + STATE_TTL,
    };
    login_state::start(r, lcf, &st, true, now)?;
    Some(nonce)
}

/// `gpt_auth_callback`: the provider sends the browser back here.
pub extern "C" fn callback_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    content(r, |r, lcf| {
        if is_post(r) {
            return read_request_body(r, gsi_body_read);
        }
        if !is_get_or_head(r) {
            return method_not_allowed();
        }
        match code_callback(r, lcf) {
            Ok(f) => flow::start(r, f),
            Err(page) => pages::error(r, lcf, page),
        }
    })
}

/// Finds and checks the login state named `sid`.
fn login_state(
    r: &ngx_http_request_t,
    lcf: &LocConf,
    sid: &str,
) -> Result<(State, String, Rc<Provider>), Page> {
    let keys = lcf.keys.as_ref().ok_or(Page::BadRequest)?;
    let name = state::cookie_name(lcf.cookie_name(), sid);
    let Some(value) = cookie(r, &name) else {
        info!(r, "login refused: no login state cookie for this answer (expired, used, or another browser)");
        return Err(Page::StaleLogin);
    };
    let st = state::decode(&keys.ring, &name, value, now()).map_err(|e| {
        info!(r, "login refused: {}", e);
        Page::StaleLogin
    })?;
    let mcf = GptAuthModule::main_conf(r).ok_or(Page::BadRequest)?;
    let Some(p) = mcf.provider(&st.provider) else {
        info!(
            r,
            "login refused: provider \"{}\" is no longer configured",
            log_safe(&st.provider, 64)
        );
        return Err(Page::StaleLogin);
    };
    Ok((st, name, p.clone()))
}

fn code_callback(r: &mut ngx_http_request_t, lcf: &LocConf) -> Result<Flow, Page> {
    if let Some(error) = param(r, "error") {
        let desc = param(r, "error_description").unwrap_or_default();
        info!(
            r,
            "login refused by the provider: \"{}\" {}",
            log_safe(&error, 64),
            log_safe(&desc, 200)
        );
        return Err(if error == "access_denied" { Page::Cancelled } else { Page::BadRequest });
    }
    let Some(sid) = param(r, "state").filter(|s| state::valid_sid(s)) else {
        info!(r, "login refused: callback without a valid state parameter");
        return Err(Page::StaleLogin);
    };
    let (st, cookie_name, p) = login_state(r, lcf, &sid)?;
    if !p.code_flow() {
        info!(
            r,
            "login refused: a code for provider \"{}\", which has no code flow (no \
             client_secret_file)",
            p.name
        );
        return Err(Page::BadRequest);
    }
    // RFC 9207: an authorization response from another issuer is a mix-up attack.
    if let Some(iss) = param(r, "iss") {
        if !p.accepted_issuers().contains(&iss.as_str()) {
            info!(
                r,
                "login refused: answer from issuer \"{}\", expected \"{}\"",
                log_safe(&iss, 200),
                p.issuer
            );
            return Err(Page::BadRequest);
        }
    }
    let Some(code) = param(r, "code").filter(|c| !c.is_empty()) else {
        info!(r, "login refused: callback without a code");
        return Err(Page::BadRequest);
    };
    let uri = redirect_uri(r, &p);
    Ok(Flow::new(p, lcf, Kind::Code { state: st, state_cookie: cookie_name, code }, uri))
}

/// The Google Identity Services POST (`credential`, `g_csrf_token`), once its body is read.
extern "C" fn gsi_body_read(r: *mut ngx_http_request_t) {
    guard((), || {
        // SAFETY: nginx calls the body handler with the live request.
        let r = unsafe { &mut *r };
        let Some(lcf) = GptAuthModule::location_conf(r) else {
            return finalize(r, INTERNAL_ERROR);
        };
        match gsi_callback(r, lcf) {
            Ok(f) => flow::run(r, f),
            Err(page) => {
                let rc = pages::error(r, lcf, page);
                finalize(r, rc)
            }
        }
    })
}

fn gsi_callback(r: &mut ngx_http_request_t, lcf: &LocConf) -> Result<Flow, Page> {
    let Some(body) = request_body(r) else {
        info!(r, "login refused: callback POST body missing or too large");
        return Err(Page::BadRequest);
    };
    let params = form_params(&body);
    let field = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let (Some(credential), Some(csrf)) = (field("credential"), field("g_csrf_token")) else {
        info!(r, "login refused: callback POST without credential and g_csrf_token");
        return Err(Page::BadRequest);
    };
    // Double-submit check: Google sets the same random value as a cookie and a form field.
    let csrf_cookie = cookie(r, "g_csrf_token").unwrap_or_default();
    if csrf.is_empty() || !bool::from(csrf.as_bytes().ct_eq(csrf_cookie)) {
        info!(r, "login refused: g_csrf_token cookie missing or not matching the form");
        return Err(Page::BadRequest);
    }
    let nonce = match idtoken::peek(credential) {
        Ok(u) => u.nonce.unwrap_or_default(),
        Err(e) => {
            info!(r, "login refused: credential {}", e);
            return Err(Page::BadToken);
        }
    };
    if !state::valid_sid(&nonce) {
        info!(r, "login refused: credential without a nonce from our login page");
        return Err(Page::StaleLogin);
    }
    let (st, cookie_name, p) = login_state(r, lcf, &nonce)?;
    if !p.gsi {
        info!(
            r,
            "login refused: provider \"{}\" does not accept credential POSTs (gsi off)", p.name
        );
        return Err(Page::BadRequest);
    }
    let uri = redirect_uri(r, &p);
    let kind = Kind::Credential {
        state: st,
        state_cookie: cookie_name,
        credential: credential.to_owned(),
    };
    Ok(Flow::new(p, lcf, kind, uri))
}

/// `gpt_auth_logout`: clears the session cookie, then goes to `rd` (if allowed) or the login page.
pub extern "C" fn logout_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    content(r, |r, lcf| {
        if !is_get_or_head(r) && !is_post(r) {
            return method_not_allowed();
        }
        if let Some(v) = current_verdict(r) {
            if let Some(e) = &v.email {
                info!(r, "logout: \"{}\"", e.as_str());
            }
        }
        let attrs = lcf.session_cookie_attrs();
        let name = lcf.cookie_name();
        if add_response_header(r, "Set-Cookie", set_cookie::clear(name, &attrs).as_bytes())
            .is_none()
        {
            return NGX_ERROR as ngx_int_t;
        }
        if attrs.domain.is_some() {
            // Also remove a host-only cookie of the same name (from before a Domain was set).
            let host_only = set_cookie::Attributes { domain: None, ..attrs };
            if add_response_header(r, "Set-Cookie", set_cookie::clear(name, &host_only).as_bytes())
                .is_none()
            {
                return NGX_ERROR as ngx_int_t;
            }
        }
        let target = match param(r, "rd").filter(|s| !s.is_empty()) {
            Some(rd) => return_url(r, lcf, Some(&rd)),
            None => pages::login_url(r, lcf),
        };
        pages::redirect(r, &target)
    })
}
