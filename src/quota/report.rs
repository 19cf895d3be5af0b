//! `gpt_auth_quota_report zone=NAME`: the current day's and month's use per user (and per user
//! and model) and per group: requests, tokens, cost. JSON (`?format=json` or `Accept:
//! application/json`), CSV (`?format=csv`) or an HTML page.

use gpt_auth_core::form::decode_query_param;
use gpt_auth_core::html::escape;
use gpt_auth_core::quota::budget::format_usd;
use gpt_auth_core::quota::report::{self, Report};
use gpt_auth_core::quota::{Amounts, Clock, Periods};
use nginx_sys::{ngx_int_t, ngx_uint_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::zone;
use crate::conf::{Handler, Zone};
use crate::ngx::response::send_response;
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::pages::{HTML, JSON};
use crate::GptAuthModule;

const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
const CSV: &str = "text/csv; charset=utf-8";

ngx_entry! {
    /// The report's content handler.
    pub handler fn report_handler(r) {
        let (Some(lcf), Some(mcf)) = (GptAuthModule::location_conf(r), GptAuthModule::main_conf(r))
        else {
            return INTERNAL_ERROR;
        };
        let Handler::QuotaReport(name) = &lcf.handler else { return INTERNAL_ERROR };
        let Some(zone) = mcf.quota_zone(name) else { return INTERNAL_ERROR };
        let now = now();
        let periods = zone.clock.periods(now);
        let report = report::build(zone::entries(zone), &periods);
        let format = decode_query_param(r.args(), "format");
        let ok = NGX_HTTP_OK as ngx_uint_t;
        if format.as_deref() == Some("csv") {
            return send_response(r, ok, CSV, report::csv(&periods, &report).as_bytes());
        }
        let wants_json = format.as_deref() == Some("json")
            || r.headers().any(|(h, v)| {
                h == b"accept" && v.windows(16).any(|w| w.eq_ignore_ascii_case(b"application/json"))
            });
        if wants_json {
            let body = report::json(&zone.name, now, &periods, &report);
            return send_response(r, ok, JSON, body.as_bytes());
        }
        send_response(r, ok, HTML, html(zone, &periods, &report).as_bytes())
    }
}

fn cells(a: &Amounts) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        a.requests,
        a.input,
        a.output,
        format_usd(a.cost)
    )
}

fn html(zone: &Zone, periods: &Periods, r: &Report) -> String {
    let mut users = String::new();
    let mut models = String::new();
    for u in &r.users {
        let e = escape(&u.email);
        users.push_str(&format!(
            "<tr><td>{e}</td><td>{}</td><td>{}</td></tr>\n",
            u.day.requests, u.month.requests
        ));
        models.push_str(&format!("<tr><td>{e}</td><td>all models</td>{}</tr>\n", cells(&u.month)));
        for m in &u.models {
            let model = escape(&m.model);
            models.push_str(&format!("<tr><td>{e}</td><td>{model}</td>{}</tr>\n", cells(&m.month)));
        }
    }
    let mut groups = String::new();
    for g in &r.groups {
        let name = escape(&g.name);
        groups.push_str(&format!("<tr><td>{name}</td><td>today</td>{}</tr>\n", cells(&g.day)));
        groups
            .push_str(&format!("<tr><td>{name}</td><td>this month</td>{}</tr>\n", cells(&g.month)));
    }
    let amounts = "<th>Requests</th><th>Input tokens</th><th>Output tokens</th><th>Cost (USD)</th>";
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Usage: {zone}</title><style>body{{font-family:system-ui,sans-serif;\
         max-width:60em;margin:3em auto;padding:0 1em}}table{{border-collapse:collapse;\
         margin-bottom:2em}}td,th{{border-bottom:1px solid #ddd;padding:.3em 1em;text-align:left}}\
         td+td,th+th{{text-align:right}}</style></head>\n<body>\n<h1>Usage: {zone}</h1>\n\
         <p>Day {day} (resets {dr}), month {month} (resets {mr}). {n} users this month. \
         <a href=\"?format=csv\">CSV</a> <a href=\"?format=json\">JSON</a></p>\n\
         <table><tr><th>User</th><th>Today</th><th>This month</th></tr>\n{users}</table>\n\
         <h2>This month by model</h2>\n\
         <table><tr><th>User</th><th>Model</th>{amounts}</tr>\n{models}</table>\n\
         <h2>Groups</h2>\n<table><tr><th>Group</th><th>Period</th>{amounts}</tr>\n{groups}</table>\n\
         </body></html>\n",
        zone = escape(&zone.name),
        day = Clock::day_label(periods.day),
        month = Clock::month_label(periods.month),
        dr = gpt_auth_core::quota::format_utc(periods.day_ends),
        mr = gpt_auth_core::quota::format_utc(periods.month_ends),
        n = r.users.len(),
    )
}
