//! Charging a request to its user's budget in the access phase, the 429 answer (a page for
//! browsers, JSON for API calls, with `Retry-After`), and the `$gpt_auth_quota_*` values.

use gpt_auth_core::html::{escape, render};
use gpt_auth_core::quota::{self, Charge, Limit, Period};
use gpt_auth_core::session::MAX_EMAIL_LEN;
use nginx_sys::{
    ngx_int_t, ngx_uint_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SERVICE_UNAVAILABLE,
};
use ngx::http::Request;

use super::zone::{self, QuotaError, Snapshot};
use crate::conf::{LocConf, QuotaConf};
use crate::ngx::pool;
use crate::ngx::response::{add_header, answer_from_phase, send_response};
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::pages::{self, HTML, JSON};

const TOO_MANY_REQUESTS: ngx_uint_t = 429;

/// This request's charge. Stashed in the request pool, which survives internal redirects:
/// they run the access phase again, and a request is charged once.
#[derive(Debug, Clone, Copy)]
struct Charged(Snapshot);

/// The charge of this request, if it was charged.
pub fn snapshot(r: &Request) -> Option<&Snapshot> {
    pool::stashed::<Charged>(r).map(|c| &c.0)
}

/// Whether the request may go on.
pub enum Admit {
    Yes,
    No(Refusal),
}

/// Why it may not.
pub enum Refusal {
    /// Over budget.
    Exceeded { email: String, snap: Snapshot },
    /// No room in the zone for another user: 503 (logged once by the zone).
    Full,
    /// The zone is not usable: 500.
    Unavailable,
}

/// Charges the request to the user's budget (once per request, and only for the methods that
/// count).
pub fn enforce(r: &Request, q: &QuotaConf, email: &[u8]) -> Admit {
    if !q.counts(r.method_bit()) || snapshot(r).is_some() {
        return Admit::Yes;
    }
    let now = now();
    let log = r.log_ptr();
    let mut key = [0u8; MAX_EMAIL_LEN];
    let Some(key) = key.get_mut(..email.len()) else { return Admit::No(Refusal::Unavailable) };
    key.copy_from_slice(email);
    key.make_ascii_lowercase();
    let Some(z) = q.zone.get() else { return Admit::No(Refusal::Unavailable) };
    let limits = match &q.overrides {
        Some(o) => o.get(now, log).limits_for_lowercase(key, q.defaults),
        None => q.defaults,
    };
    let snap = match zone::count(z, key, limits, &z.periods(now), log) {
        Ok(s) => s,
        Err(QuotaError::Full) => return Admit::No(Refusal::Full),
        Err(QuotaError::Unavailable) => {
            error!(r, "gpt_auth_quota zone \"{}\" is not available", q.zone_name);
            return Admit::No(Refusal::Unavailable);
        }
    };
    if pool::stash(r, Charged(snap)).is_none() {
        return Admit::Yes;
    }
    match snap.charge {
        Charge::Allowed { .. } => Admit::Yes,
        Charge::Exceeded { period, used, limit, .. } => {
            let email = String::from_utf8_lossy(email).into_owned();
            info!(
                r,
                "quota exceeded: \"{}\" used {} of {} requests this {} (zone \"{}\")",
                email,
                used,
                limit,
                period.as_str(),
                q.zone_name
            );
            Admit::No(Refusal::Exceeded { email, snap })
        }
    }
}

/// Answers a refused request from the access phase; returns what the phase handler returns.
pub fn refuse(r: &mut Request, lcf: &LocConf, refusal: Refusal) -> ngx_int_t {
    match refusal {
        Refusal::Full => NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t,
        Refusal::Unavailable => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        Refusal::Exceeded { email, snap } => too_many(r, lcf, &email, &snap),
    }
}

/// The 429 answer.
fn too_many(r: &mut Request, lcf: &LocConf, email: &str, snap: &Snapshot) -> ngx_int_t {
    let Charge::Exceeded { period, used, limit, resets } = snap.charge else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let retry_after = resets.saturating_sub(now()).max(1);
    if add_header(r, "Retry-After", retry_after.to_string().as_bytes()).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if r.has_error_page(TOO_MANY_REQUESTS) {
        return TOO_MANY_REQUESTS as ngx_int_t;
    }
    let resets_at = quota::format_utc(resets);
    let rc = if r.is_navigation() {
        let period_word = match period {
            Period::Day => "day",
            Period::Month => "month",
        };
        let body = render(
            lcf.quota_page.as_deref().map_or(pages::DEFAULT_QUOTA, String::as_str),
            &[
                ("email", &escape(email)),
                ("used", &used.to_string()),
                ("limit", &limit.to_string()),
                ("period", period_word),
                ("resets", &resets_at),
                ("retry_after", &retry_after.to_string()),
                ("retry_after_text", &quota::format_duration(retry_after)),
            ],
        );
        send_response(r, TOO_MANY_REQUESTS, HTML, body.as_bytes())
    } else {
        let body = format!(
            "{{\"error\":\"quota_exceeded\",\"period\":\"{}\",\"used\":{used},\"limit\":{limit},\
             \"resets_at\":\"{resets_at}\",\"retry_after\":{retry_after}}}\n",
            period.as_str()
        );
        send_response(r, TOO_MANY_REQUESTS, JSON, body.as_bytes())
    };
    answer_from_phase(r, rc)
}

/// `$gpt_auth_quota_*` values: used or remaining in the day or month, written into `buf` (no
/// heap allocation: the variables may be logged or sent as a header on every request).
pub fn value<'b>(
    r: &Request,
    month: bool,
    remaining: bool,
    buf: &'b mut [u8; 20],
) -> Option<&'b [u8]> {
    use std::io::Write;
    let s = snapshot(r)?;
    let (used, limit) =
        if month { (s.month_used, s.limits.month) } else { (s.day_used, s.limits.day) };
    let n = match (remaining, limit) {
        (false, _) => used,
        (true, Limit::Unlimited) => return Some(b"unlimited"),
        (true, Limit::Max(n)) => n.saturating_sub(used),
    };
    let mut rest = &mut buf[..];
    write!(rest, "{n}").ok()?;
    let len = 20 - rest.len();
    buf.get(..len)
}

/// A `$gpt_auth_quota_*` value, copied into the request pool.
fn variable(r: &Request, month: bool, remaining: bool) -> Option<&[u8]> {
    let mut buf = [0u8; 20];
    let text = value(r, month, remaining, &mut buf)?;
    pool::copy(r, text)
}

ngx_entry! {
    pub variable fn day_used(r) { variable(r, false, false) }
}
ngx_entry! {
    pub variable fn day_remaining(r) { variable(r, false, true) }
}
ngx_entry! {
    pub variable fn month_used(r) { variable(r, true, false) }
}
ngx_entry! {
    pub variable fn month_remaining(r) { variable(r, true, true) }
}
