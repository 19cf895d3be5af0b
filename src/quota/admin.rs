//! `gpt_auth_quota_admin zone=NAME`: an administrator resets or tops up one user's (or one
//! group's) current period without stopping nginx. `POST` with a form or query:
//! `action=reset|topup`, `user=ADDRESS` or `group=NAME`, `period=day|month`, and for a top-up
//! `requests=N`, `tokens=N` (output tokens) and/or `cost=USD`. Answers JSON with the counters
//! after the change. Put it behind `gpt_auth on` and an admins-only allowlist.

use gpt_auth_core::form::form_params;
use gpt_auth_core::quota::budget::{format_usd, parse_usd};
use gpt_auth_core::quota::{Amounts, Key, Period};
use gpt_auth_core::session::valid_email;
use nginx_sys::{
    ngx_int_t, ngx_uint_t, NGX_HTTP_BAD_REQUEST, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};

use super::zone;
use crate::conf::Handler;
use crate::gate;
use crate::ngx::response::{finalize, send_response};
use crate::ngx::time::now;
use crate::ngx::{body, RequestExt};
use crate::pages::JSON;
use crate::GptAuthModule;

ngx_entry! {
    pub handler fn admin_handler(r) {
        if !r.is_post() {
            return NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        body::read(r, admin_body_read)
    }
}

ngx_entry! {
    event fn admin_body_read(r) {
        let rc = act(r);
        finalize(r, rc);
    }
}

fn answer(r: &mut Request, status: u32, body: String) -> ngx_int_t {
    send_response(r, status as ngx_uint_t, JSON, body.as_bytes())
}

fn bad(r: &mut Request, why: &str) -> ngx_int_t {
    let body =
        format!("{{\"error\":\"bad_request\",\"message\":{}}}\n", gpt_auth_core::json::quote(why));
    answer(r, NGX_HTTP_BAD_REQUEST, body)
}

/// One admin request, as its parameters say.
struct Order {
    key: Vec<u8>,
    /// `user "..."` or `group "..."`, for the log line.
    who: String,
    period: Period,
    /// `reset`, or `topup` with the amounts in `extra`.
    action: String,
    extra: Amounts,
}

fn act(r: &mut Request) -> ngx_int_t {
    let (Some(lcf), Some(mcf)) = (GptAuthModule::location_conf(r), GptAuthModule::main_conf(r))
    else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Handler::QuotaAdmin(name) = &lcf.handler else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Some(z) = mcf.quota_zone(name) else { return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t };
    let mut params = form_params(r.args());
    params.extend(form_params(&body::in_memory(r).unwrap_or_default()));
    let o = match order(&params) {
        Ok(o) => o,
        Err(why) => return bad(r, why),
    };
    if super::cluster::synced(z) {
        // A reset here would be undone by the next round (the cluster's total is kept), a
        // top-up would count on this node only.
        let body = "{\"error\":\"conflict\",\"message\":\"resets and top-ups are not \
                    available yet on a zone shared through Redis (gpt_auth_quota_redis)\"}\n";
        return answer(r, 409, body.to_owned());
    }
    let p = z.periods(now());
    let done = zone::update(z, &o.key, &p, |c| {
        if o.action == "reset" {
            c.reset(&p, o.period);
        } else {
            c.top_up(&p, o.period, &o.extra);
        }
    });
    if !done {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    let admin = gate::verdict::current(r).and_then(|v| v.email()).unwrap_or("-").to_owned();
    notice!(
        r,
        "quota admin \"{}\": {} of {} for the {} (zone \"{}\")",
        admin,
        o.action,
        o.who,
        o.period.as_str(),
        z.name
    );
    let c = zone::get(z, &o.key).unwrap_or_default();
    let used = c.used(o.period);
    let body = format!(
        "{{\"done\":\"{}\",\"period\":\"{}\",\"used\":{{\"requests\":{},\"input_tokens\":{},\
         \"output_tokens\":{},\"cost\":\"{}\"}}}}\n",
        o.action,
        o.period.as_str(),
        used.requests,
        used.input,
        used.output,
        format_usd(used.cost)
    );
    answer(r, NGX_HTTP_OK, body)
}

/// The order the parameters give, or why they are refused (a 400).
fn order(params: &[(String, String)]) -> Result<Order, &'static str> {
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (key, who) = match (get("user"), get("group")) {
        (Some(u), None) if valid_email(&u) => {
            (Key::User(u.clone()).encode(), format!("user \"{u}\""))
        }
        (None, Some(g)) if !g.is_empty() => (Key::group_key(&g), format!("group \"{g}\"")),
        _ => return Err("name one user=ADDRESS or group=NAME"),
    };
    let period = match get("period").as_deref() {
        Some("day") => Period::Day,
        Some("month") | None => Period::Month,
        Some(_) => return Err("period must be day or month"),
    };
    let action = get("action").unwrap_or_default();
    let mut extra = Amounts::default();
    if action == "topup" {
        let n = |name: &str| get(name).map(|v| v.parse::<u64>().map_err(|_| ())).transpose();
        let (Ok(req), Ok(tok), Ok(cost)) =
            (n("requests"), n("tokens"), get("cost").map(|v| parse_usd(&v)).transpose())
        else {
            return Err("requests and tokens are numbers, cost is US dollars");
        };
        extra = Amounts {
            requests: req.unwrap_or(0),
            input: 0,
            output: tok.unwrap_or(0),
            cost: cost.unwrap_or(0),
        };
        if extra == Amounts::default() {
            return Err("a top-up needs requests=, tokens= or cost=");
        }
    } else if action != "reset" {
        return Err("action must be reset or topup");
    }
    Ok(Order { key, who, period, action, extra })
}
