//! Per-user budgets on the request path: charging a request in the access phase, the 429
//! answer (a page for browsers, JSON for API calls, with `Retry-After`), and the usage report
//! (`gpt_auth_quota_report`).

use gpt_auth_core::html::{escape, render};
use gpt_auth_core::quota::{self, Charge, Limit};
use gpt_auth_core::session::Email;
use nginx_sys::{
    ngx_http_request_t, ngx_int_t, ngx_uint_t, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_SERVICE_UNAVAILABLE,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use crate::access::is_navigation;
use crate::conf::{Handler, LocConf};
use crate::ngx_ext::{
    add_response_header, args, finalize, guard, has_error_page, now, pool_find_mark, pool_mark,
    request_headers, send_response,
};
use crate::pages::HTML;
use crate::quota::{charge, entries, QuotaConf, QuotaError, Snapshot};
use crate::GptAuthModule;

pub const JSON: &str = "application/json";
const TOO_MANY_REQUESTS: ngx_uint_t = 429;

/// Marks a request as charged (the mark survives internal redirects, which would otherwise
/// run the access phase, and charge, again).
unsafe extern "C" fn charged(_: *mut core::ffi::c_void) {}

/// The charge of this request, if it was charged.
pub fn snapshot(r: &ngx_http_request_t) -> Option<&'static Snapshot> {
    pool_find_mark::<Snapshot>(r, charged).map(|s| &*s)
}

/// Charges the request to the user's budget. `None`: go on; `Some(rc)`: the request was answered
/// (429, or 503 when the zone is full) and the phase handler returns `rc`.
pub fn enforce(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    q: &QuotaConf,
    email: &Email,
) -> Option<ngx_int_t> {
    if !q.counts(r) || snapshot(r).is_some() {
        return None;
    }
    let now = now();
    let log = crate::log::as_log_ptr(&*r as &ngx_http_request_t);
    let snap = match charge(q, email.as_bytes(), now, log) {
        Ok(s) => s,
        Err(QuotaError::Full) => return Some(NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t),
        Err(QuotaError::Unavailable) => {
            error!(r, "gpt_auth_quota zone \"{}\" is not available", q.zone_name);
            return Some(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
        }
    };
    pool_mark(r, charged, snap)?;
    match snap.charge {
        Charge::Allowed { .. } => None,
        Charge::Exceeded { period, used, limit, resets } => {
            let email = email.as_str();
            info!(
                r,
                "quota exceeded: \"{}\" used {} of {} requests this {} (zone \"{}\")",
                email,
                used,
                limit,
                period.as_str(),
                q.zone_name
            );
            let retry_after = resets.saturating_sub(now).max(1);
            Some(too_many(r, lcf, email, &snap, retry_after))
        }
    }
}

/// The 429 answer, sent from the access phase.
fn too_many(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    email: &str,
    snap: &Snapshot,
    retry_after: u64,
) -> ngx_int_t {
    let Charge::Exceeded { period, used, limit, resets } = snap.charge else { return 0 };
    if add_response_header(r, "Retry-After", retry_after.to_string().as_bytes()).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if has_error_page(r, TOO_MANY_REQUESTS) {
        return TOO_MANY_REQUESTS as ngx_int_t;
    }
    let resets_at = quota::format_utc(resets);
    let rc = if is_navigation(r) {
        let period_word = match period {
            quota::Period::Day => "day",
            quota::Period::Month => "month",
        };
        let body = render(
            lcf.quota_page.as_deref().map_or(crate::pages::DEFAULT_QUOTA, String::as_str),
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
    finalize(r, rc);
    nginx_sys::NGX_DONE as ngx_int_t
}

/// `$gpt_auth_quota_*` values: used or remaining in the day or month, written into `buf` (no
/// heap allocation: the variables may be logged or sent as a header on every request).
pub fn variable<'b>(
    r: &ngx_http_request_t,
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

/// `gpt_auth_quota_report ZONE`: current use per user, as JSON (`Accept: application/json` or
/// `?format=json`) or an HTML table.
pub extern "C" fn report_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guard(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls content handlers with a live request.
        let r = unsafe { &mut *r };
        let (Some(lcf), Some(mcf)) = (GptAuthModule::location_conf(r), GptAuthModule::main_conf(r))
        else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let Handler::QuotaReport(name) = &lcf.handler else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let Some(zone) = mcf.quota_zone(name) else {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        };
        let now = now();
        let periods = zone.clock.periods(now);
        let rows = quota::report_rows(entries(zone), &periods);
        let wants_json = gpt_auth_core::form::decode_query_param(args(r), "format").as_deref()
            == Some("json")
            || request_headers(r).any(|(h, v)| {
                h == b"accept" && v.windows(16).any(|w| w.eq_ignore_ascii_case(b"application/json"))
            });
        if wants_json {
            let body = quota::report_json(&zone.name, now, &periods, &rows);
            return send_response(r, nginx_sys::NGX_HTTP_OK as ngx_uint_t, JSON, body.as_bytes());
        }
        let mut table = String::new();
        for row in &rows {
            table.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(&row.email),
                row.day_used,
                row.month_used
            ));
        }
        let body = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Usage: {zone}</title><style>body{{font-family:system-ui,sans-serif;\
             max-width:50em;margin:3em auto;padding:0 1em}}table{{border-collapse:collapse}}\
             td,th{{border-bottom:1px solid #ddd;padding:.3em 1em;text-align:left}}\
             td+td,th+th{{text-align:right}}</style></head>\n<body>\n<h1>Usage: {zone}</h1>\n\
             <p>Day {day} (resets {dr}), month {month} (resets {mr}). {n} users this month.</p>\n\
             <table><tr><th>User</th><th>Today</th><th>This month</th></tr>\n{table}</table>\n\
             </body></html>\n",
            zone = escape(&zone.name),
            day = quota::Clock::day_label(periods.day),
            month = quota::Clock::month_label(periods.month),
            dr = quota::format_utc(periods.day_ends),
            mr = quota::format_utc(periods.month_ends),
            n = rows.len(),
        );
        send_response(r, nginx_sys::NGX_HTTP_OK as ngx_uint_t, HTML, body.as_bytes())
    })
}
