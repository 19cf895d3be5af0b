//! `gpt_auth_callback`: the provider sends the browser back here, with an authorization code
//! (GET) or, for Google Identity Services, a credential POST.

use std::rc::Rc;

use gpt_auth_core::form::gsi_fields;
use gpt_auth_core::idtoken;
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::state::{self, State};
use nginx_sys::{ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};
use subtle::ConstantTimeEq;

use super::flow::{self, Flow, Kind};
use super::request::{cookie, drops_secure_cookies, param, redirect_uri, report_insecure_site};
use crate::conf::{LocConf, Provider};
use crate::ngx::response::finalize;
use crate::ngx::time::now;
use crate::ngx::{body, RequestExt};
use crate::pages::{self, Page};
use crate::GptAuthModule;

ngx_entry! {
    /// The callback's content handler.
    pub handler fn callback_handler(r) {
        super::with_conf(r, |r, lcf| {
            if r.is_post() {
                return body::read(r, gsi_body_read);
            }
            if !r.is_get_or_head() {
                return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
            }
            match code_callback(r, lcf) {
                Ok(f) => flow::start(r, f),
                Err(page) => pages::error(r, lcf, page),
            }
        })
    }
}

/// Finds and checks the login state named `sid`.
fn login_state(
    r: &Request,
    lcf: &LocConf,
    sid: &str,
) -> Result<(State, String, Rc<Provider>), Page> {
    let keys = lcf.keys.as_ref().ok_or(Page::BadRequest)?;
    let name = state::cookie_name(lcf.cookie_name(), sid);
    let Some(value) = cookie(r, &name) else {
        if drops_secure_cookies(r, lcf) {
            report_insecure_site(r, lcf);
            info!(r, "login refused: no login state cookie (plain http, Secure cookies)");
            return Err(Page::InsecureSite);
        }
        info!(
            r,
            "login refused: no login state cookie for this answer (expired, used, or another \
             browser)"
        );
        return Err(Page::StaleLogin);
    };
    let st = state::decode(&keys.ring, &name, value, now()).map_err(|e| {
        info!(r, "login refused: {}", e);
        Page::StaleLogin
    })?;
    let mcf = GptAuthModule::main_conf(r).ok_or(Page::BadRequest)?;
    let Some(p) = mcf.provider(&st.provider) else {
        let name = log_safe(&st.provider, 64);
        info!(r, "login refused: provider \"{}\" is no longer configured", name);
        return Err(Page::StaleLogin);
    };
    Ok((st, name, p.clone()))
}

fn code_callback(r: &Request, lcf: &'static LocConf) -> Result<Flow, Page> {
    if let Some(error) = param(r, "error") {
        let desc = param(r, "error_description").unwrap_or_default();
        let (e, d) = (log_safe(&error, 64), log_safe(&desc, 200));
        info!(r, "login refused by the provider: \"{}\" {}", e, d);
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
            let got = log_safe(&iss, 200);
            info!(r, "login refused: answer from issuer \"{}\", expected \"{}\"", got, p.issuer);
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

ngx_entry! {
    /// The Google Identity Services POST (`credential`, `g_csrf_token`), once its body is read.
    event fn gsi_body_read(r) {
        let Some(lcf) = GptAuthModule::location_conf(r) else {
            return finalize(r, NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
        };
        match gsi_callback(r, lcf) {
            Ok(f) => flow::run(r, f),
            Err(page) => {
                let rc = pages::error(r, lcf, page);
                finalize(r, rc)
            }
        }
    }
}

fn gsi_callback(r: &Request, lcf: &'static LocConf) -> Result<Flow, Page> {
    let Some(body) = body::in_memory(r) else {
        info!(r, "login refused: callback POST body missing or too large");
        return Err(Page::BadRequest);
    };
    let content_type = r
        .headers()
        .find(|(h, _)| h.eq_ignore_ascii_case(b"content-type"))
        .map_or(&b""[..], |(_, v)| v);
    let Some(fields) = gsi_fields(&body, content_type) else {
        info!(r, "login refused: callback POST body is not a form or a JSON object of strings");
        return Err(Page::BadRequest);
    };
    let (Some(credential), Some(csrf)) = (fields.0.as_deref(), fields.1.as_deref()) else {
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
