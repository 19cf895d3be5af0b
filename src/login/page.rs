//! `gpt_auth_login`: the login page, or (with `?provider=NAME`) the start of a code flow.

use core::fmt::Write;

use gpt_auth_core::html::{escape, render};
use gpt_auth_core::log_safe::log_safe;
use gpt_auth_core::state::State;
use gpt_auth_core::url::percent_encode_into;
use nginx_sys::{ngx_int_t, ngx_uint_t, NGX_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK};
use ngx::http::Request;

use super::flow::{self, Flow, Kind};
use super::provider::STATE_TTL;
use super::request::{drops_secure_cookies, param, redirect_uri, report_insecure_site, return_url};
use super::{random, state as login_state};
use crate::conf::{LocConf, Provider};
use crate::gate::{self, Outcome};
use crate::ngx::response::send_response;
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::pages::{self, Page, DEFAULT_LOGIN, HTML};

ngx_entry! {
    /// The login page's content handler.
    pub handler fn login_handler(r) {
        super::with_conf(r, |r, lcf| {
            if !r.is_get_or_head() {
                return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
            }
            let ret = return_url(r, lcf, param(r, "rd").as_deref());
            let Some(name) = param(r, "provider") else { return login_page(r, lcf, &ret) };
            let Some(p) = lcf.login_providers.iter().find(|p| p.name == name && p.code_flow())
            else {
                info!(r, "login refused: unknown provider \"{}\"", log_safe(&name, 64));
                return pages::error(r, lcf, Page::BadRequest);
            };
            let prompt = param(r, "switch").map(|_| p.switch_account_prompt());
            let uri = redirect_uri(r, p);
            let kind = Kind::Authorize { return_url: ret, prompt };
            flow::start(r, Flow::new(p.clone(), lcf, kind, uri))
        })
    }
}

fn login_page(r: &mut Request, lcf: &LocConf, ret: &str) -> ngx_int_t {
    let notice = if drops_secure_cookies(r, lcf) {
        report_insecure_site(r, lcf);
        format!("<p class=\"warning\">{}</p>", escape(pages::INSECURE_SITE))
    } else {
        String::new()
    };
    let Some(providers) = provider_buttons(r, lcf, ret) else { return NGX_ERROR as ngx_int_t };
    let signed_in = match gate::verdict::current(r) {
        Some(v) if v.outcome == Outcome::Allowed => match v.email() {
            Some(e) => format!(
                "<p>You are signed in as <b>{}</b>. <a href=\"{}\">Continue</a></p>",
                escape(e),
                escape(ret)
            ),
            None => String::new(),
        },
        _ => String::new(),
    };
    let body = render(
        lcf.login_page.as_deref().map_or(DEFAULT_LOGIN, String::as_str),
        &[
            ("providers", &providers),
            ("signed_in", &signed_in),
            ("return_url", &escape(ret)),
            ("notice", &notice),
        ],
    );
    send_response(r, NGX_HTTP_OK as ngx_uint_t, HTML, body.as_bytes())
}

/// The markup of the sign-in buttons: Google's own button for the first provider with
/// `gsi on`, and a link for each provider with a code flow.
fn provider_buttons(r: &mut Request, lcf: &LocConf, ret: &str) -> Option<String> {
    let mut out = String::new();
    let mut rd = String::new();
    percent_encode_into(&mut rd, ret.as_bytes());
    // "Sign in with another account" (from a not-allowed page): the provider asks again.
    let switch = if param(r, "switch").is_some() { "&amp;switch=1" } else { "" };
    let mut gsi_done = false;
    for p in &lcf.login_providers {
        if p.gsi && !gsi_done {
            gsi_done = true;
            let nonce = gsi_state(r, lcf, p, ret)?;
            let _ = write!(
                out,
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
        if p.code_flow() {
            let _ = writeln!(
                out,
                "<p><a class=\"button\" href=\"?provider={}&amp;rd={}{switch}\">Sign in with {}</a></p>",
                escape(&p.name),
                escape(&rd),
                escape(&p.display_name)
            );
        }
    }
    Some(out)
}

/// For Google Identity Services: a state cookie named after a nonce (the POST that follows
/// carries no `state`; the credential's nonce finds the cookie). A fresh enough one for the same
/// provider and return address is reused, so reloading the page does not pile up cookies.
/// Returns the nonce.
fn gsi_state(r: &mut Request, lcf: &LocConf, p: &Provider, ret: &str) -> Option<String> {
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
