//! The answer to a request over budget: 429 with `Retry-After`, a page for browsers, JSON for
//! API calls (in the AI provider's own error format on AI locations, so its SDKs raise their
//! normal rate-limit error), or `error_page 429` when the operator configured one.

use gpt_auth_core::html::{escape, render};
use gpt_auth_core::quota::{self, Exceeded, Unit};
use nginx_sys::{
    ngx_int_t, ngx_uint_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SERVICE_UNAVAILABLE,
};
use ngx::http::Request;

use super::charge::Refusal;
use super::warn::amount;
use crate::conf::LocConf;
use crate::ngx::response::{add_header, answer_from_phase, send_response};
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::pages::{self, api, HTML, JSON};

const TOO_MANY_REQUESTS: ngx_uint_t = 429;

/// Answers a refused request from the access phase; returns what the phase handler returns.
pub fn refuse(r: &mut Request, lcf: &LocConf, refusal: Refusal) -> ngx_int_t {
    match refusal {
        Refusal::Full => NGX_HTTP_SERVICE_UNAVAILABLE as ngx_int_t,
        Refusal::Unavailable => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
        Refusal::Exceeded { email, group, exceeded, .. } => {
            let q = lcf.quota().map_or("", |q| q.zone_name.as_str());
            let whose = group.as_ref().map_or(String::new(), |g| format!(" (group \"{g}\")"));
            info!(
                r,
                "quota exceeded: \"{}\"{} used {} of {} {} this {} (zone \"{}\")",
                email,
                whose,
                amount(exceeded.unit, exceeded.used),
                amount(exceeded.unit, exceeded.limit),
                exceeded.unit.as_str(),
                exceeded.period.as_str(),
                q
            );
            too_many(r, lcf, &email, group.as_deref(), &exceeded)
        }
    }
}

fn unit_word(unit: Unit) -> &'static str {
    match unit {
        Unit::Requests => "requests",
        Unit::Tokens => "tokens",
        Unit::Cost => "US dollars",
    }
}

fn number(unit: Unit, n: u64) -> String {
    match unit {
        Unit::Cost => quota::budget::format_usd(n),
        _ => n.to_string(),
    }
}

fn too_many(
    r: &mut Request,
    lcf: &LocConf,
    email: &str,
    group: Option<&str>,
    e: &Exceeded,
) -> ngx_int_t {
    let retry_after = e.resets.saturating_sub(now()).max(1);
    if add_header(r, "Retry-After", retry_after.to_string().as_bytes()).is_none() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if r.has_error_page(TOO_MANY_REQUESTS) {
        return TOO_MANY_REQUESTS as ngx_int_t;
    }
    let resets_at = quota::format_utc(e.resets);
    let (used, limit) = (number(e.unit, e.used), number(e.unit, e.limit));
    let rc = if r.is_navigation() {
        let whose = group.map_or("your".to_owned(), |g| format!("the \"{}\" group's", escape(g)));
        let body = render(
            lcf.quota_page.as_deref().map_or(pages::DEFAULT_QUOTA, String::as_str),
            &[
                ("email", &escape(email)),
                ("used", &used),
                ("limit", &limit),
                ("unit", unit_word(e.unit)),
                ("whose", &whose),
                ("period", e.period.as_str()),
                ("resets", &resets_at),
                ("retry_after", &retry_after.to_string()),
                ("retry_after_text", &quota::format_duration(retry_after)),
            ],
        );
        send_response(r, TOO_MANY_REQUESTS, HTML, body.as_bytes())
    } else if let Some(flavor) = lcf.api_flavor(r.path().as_bytes()) {
        let whose = group.map_or("your".to_owned(), |g| format!("the \"{g}\" group's"));
        let msg = format!(
            "{whose} {} budget is used up ({used} of {limit} {}); it is reset at {resets_at}",
            e.period.as_str(),
            unit_word(e.unit)
        );
        let body = api::error_body(flavor, api::Error::QuotaExceeded, &msg);
        send_response(r, TOO_MANY_REQUESTS, JSON, body.as_bytes())
    } else {
        let mut extra = String::new();
        if e.unit != Unit::Requests {
            extra.push_str(&format!(",\"unit\":\"{}\"", e.unit.as_str()));
        }
        if let Some(g) = group {
            extra.push_str(&format!(",\"group\":{}", gpt_auth_core::json::quote(g)));
        }
        let (used, limit) = match e.unit {
            Unit::Cost => (format!("\"{used}\""), format!("\"{limit}\"")),
            _ => (used, limit),
        };
        let body = format!(
            "{{\"error\":\"quota_exceeded\",\"period\":\"{}\",\"used\":{used},\"limit\":{limit},\
             \"resets_at\":\"{resets_at}\",\"retry_after\":{retry_after}{extra}}}\n",
            e.period.as_str()
        );
        send_response(r, TOO_MANY_REQUESTS, JSON, body.as_bytes())
    };
    answer_from_phase(r, rc)
}
