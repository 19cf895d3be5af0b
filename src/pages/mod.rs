//! The pages the module serves (login, not allowed, errors) and its redirects.
//!
//! Each page is a template with `{{name}}` placeholders; an operator can replace any of them
//! with their own file (`gpt_auth_login_page`, `gpt_auth_not_allowed_page`,
//! `gpt_auth_error_page`). Values are HTML-escaped, except `{{providers}}` and `{{actions}}`,
//! which are markup the module builds. The defaults are self-contained: no external assets except
//! Google's button script when Google Identity Services is enabled.

use gpt_auth_core::html::{escape, render};
use nginx_sys::{ngx_int_t, ngx_uint_t, NGX_ERROR};
use ngx::http::Request;

use crate::conf::LocConf;

pub mod api;
use crate::ngx::response::{send_response, set_location};
use crate::ngx::RequestExt;

pub const HTML: &str = "text/html; charset=utf-8";

pub const JSON: &str = "application/json";

pub const DEFAULT_LOGIN: &str = include_str!("login.html");
pub const DEFAULT_NOT_ALLOWED: &str = include_str!("not_allowed.html");
pub const DEFAULT_ERROR: &str = include_str!("error.html");
pub const DEFAULT_QUOTA: &str = include_str!("quota.html");
pub const API_KEYS: &str = include_str!("api_keys.html");

/// The error pages of the login flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// 400: no login in progress for this answer (state missing, expired, from another browser).
    StaleLogin,
    /// 400: the request is not a valid login answer.
    BadRequest,
    /// 403: the user cancelled at the provider, or the provider refused.
    Cancelled,
    /// 401: the identity token could not be verified.
    BadToken,
    /// 403: the token is genuine, but the provider has not verified the account's address.
    Unverified,
    /// 502: the provider could not be reached or answered with an error or garbage.
    ProviderDown,
    /// 504: the provider did not answer in time.
    ProviderTimeout,
    /// 400: the login state cookie is missing on a plain-http site whose cookies are `Secure`
    /// (the browser never kept it).
    InsecureSite,
}

/// What the login site says when it is served over plain http while its cookies are `Secure`.
pub const INSECURE_SITE: &str = "This sign-in page is served over plain http, but its cookies \
    are marked Secure: the browser does not keep them, so signing in cannot work. \
    Administrators: serve the login site over https (or, for development only, set \
    gpt_auth_cookie_secure off).";

impl Page {
    fn status(self) -> ngx_uint_t {
        (match self {
            Page::StaleLogin | Page::BadRequest | Page::InsecureSite => {
                nginx_sys::NGX_HTTP_BAD_REQUEST
            }
            Page::Cancelled | Page::Unverified => nginx_sys::NGX_HTTP_FORBIDDEN,
            Page::BadToken => nginx_sys::NGX_HTTP_UNAUTHORIZED,
            Page::ProviderDown => nginx_sys::NGX_HTTP_BAD_GATEWAY,
            Page::ProviderTimeout => nginx_sys::NGX_HTTP_GATEWAY_TIME_OUT,
        }) as ngx_uint_t
    }

    fn text(self) -> (&'static str, &'static str) {
        match self {
            Page::StaleLogin => (
                "Sign-in expired",
                "This sign-in has expired, was already used, or was started in another browser. \
                 Please start again.",
            ),
            Page::BadRequest => ("Bad request", "This is not a valid answer to a sign-in."),
            Page::Cancelled => ("Sign-in cancelled", "The sign-in was cancelled or refused."),
            Page::BadToken => (
                "Sign-in failed",
                "The answer of the identity provider could not be verified. Please try again.",
            ),
            Page::Unverified => (
                "Sign-in refused",
                "The identity provider has not verified the email address of this account, so \
                 it cannot be used to sign in here. Verify the address with the provider, or ask \
                 your administrator.",
            ),
            Page::ProviderDown => (
                "Sign-in unavailable",
                "The identity provider could not be reached or gave an invalid answer. Please \
                 try again in a moment.",
            ),
            Page::ProviderTimeout => (
                "Sign-in unavailable",
                "The identity provider did not answer in time. Please try again in a moment.",
            ),
            Page::InsecureSite => ("Sign-in cannot work here", INSECURE_SITE),
        }
    }
}

/// The login URL of this location (evaluated), or `/`.
pub fn login_url(r: &Request, lcf: &LocConf) -> String {
    lcf.login_url()
        .and_then(|cv| r.complex_value(cv))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| "/".to_owned())
}

/// Sends an error page; returns the code to finalize with.
pub fn error(r: &mut Request, lcf: &LocConf, page: Page) -> ngx_int_t {
    let (title, message) = page.text();
    let login = login_url(r, lcf);
    let status = page.status();
    let body = render(
        lcf.error_page.as_deref().map_or(DEFAULT_ERROR, String::as_str),
        &[
            ("status", &status.to_string()),
            ("title", &escape(title)),
            ("message", &escape(message)),
            ("login_url", &escape(&login)),
        ],
    );
    send_response(r, status, HTML, body.as_bytes())
}

/// How a not-allowed page that ends a login offers another account.
pub struct Switch<'a> {
    pub return_url: &'a str,
    /// The provider to start a code flow with (asking for another account); `None` for a
    /// provider without one (Google Identity Services: its button chooses the account).
    pub code_flow_provider: Option<&'a str>,
}

/// Where a not-allowed page is shown.
pub enum Refused<'a> {
    /// At the end of a login: the account may not sign in at this login site.
    AtSignIn(Switch<'a>),
    /// By a protected location whose list leaves the user out (the session stays valid for
    /// other parts of the site): the URL that was refused.
    Here(&'a str),
}

/// 403: signed in (at the provider, or with a session) but not allowed.
pub fn not_allowed(r: &mut Request, lcf: &LocConf, email: &str, refused: Refused<'_>) -> ngx_int_t {
    use gpt_auth_core::url::with_query_param;
    let login = login_url(r, lcf);
    let logout = lcf.logout_url.clone().unwrap_or_default();
    let mut actions = String::new();
    let mut link = |class: &str, href: &str, text: &str| {
        actions.push_str(&format!("<p><a {class}href=\"{}\">{text}</a></p>\n", escape(href)));
    };
    if !logout.is_empty() {
        link("class=\"button\" ", &logout, "Sign out");
    }
    let reason = match refused {
        Refused::AtSignIn(sw) => {
            let mut again = with_query_param(&login, "rd", sw.return_url.as_bytes());
            if let Some(p) = sw.code_flow_provider {
                again = with_query_param(&again, "provider", p.as_bytes());
                again = with_query_param(&again, "switch", b"1");
            }
            link("", &again, "Sign in with another account");
            "this account is not allowed to use this site."
        }
        Refused::Here(url) => {
            let again = with_query_param(&login, "rd", url.as_bytes());
            link("", &with_query_param(&again, "switch", b"1"), "Sign in with another account");
            link("", "/", "Back to the start page");
            "this account is not allowed here."
        }
    };
    let body = render(
        lcf.not_allowed_page.as_deref().map_or(DEFAULT_NOT_ALLOWED, String::as_str),
        &[
            ("email", &escape(email)),
            ("reason", reason),
            ("logout_url", &escape(&logout)),
            ("login_url", &escape(&login)),
            ("actions", &actions),
        ],
    );
    send_response(r, nginx_sys::NGX_HTTP_FORBIDDEN as ngx_uint_t, HTML, body.as_bytes())
}

/// 302 to `url` (absolute, or a path on this site), with a small page for old clients.
pub fn redirect(r: &mut Request, url: &str) -> ngx_int_t {
    if set_location(r, url.as_bytes()).is_none() {
        return NGX_ERROR as ngx_int_t;
    }
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>Redirect</title></head><body>\
         <a href=\"{}\">Continue</a></body></html>\n",
        escape(url)
    );
    send_response(r, nginx_sys::NGX_HTTP_MOVED_TEMPORARILY as ngx_uint_t, HTML, body.as_bytes())
}
