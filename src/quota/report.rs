//! `gpt_auth_quota_report zone=NAME`: the current use per user and period, as JSON
//! (`?format=json` or `Accept: application/json`) or an HTML table.

use gpt_auth_core::form::decode_query_param;
use gpt_auth_core::html::escape;
use gpt_auth_core::quota::{self, Clock, Periods, ReportRow};
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
        let rows = quota::report_rows(zone::entries(zone), &periods);
        let wants_json = decode_query_param(r.args(), "format").as_deref() == Some("json")
            || r.headers().any(|(h, v)| {
                h == b"accept" && v.windows(16).any(|w| w.eq_ignore_ascii_case(b"application/json"))
            });
        let ok = NGX_HTTP_OK as ngx_uint_t;
        if wants_json {
            let body = quota::report_json(&zone.name, now, &periods, &rows);
            return send_response(r, ok, JSON, body.as_bytes());
        }
        send_response(r, ok, HTML, html(zone, &periods, &rows).as_bytes())
    }
}

fn html(zone: &Zone, periods: &Periods, rows: &[ReportRow]) -> String {
    let mut table = String::new();
    for row in rows {
        table.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&row.email),
            row.day_used,
            row.month_used
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Usage: {zone}</title><style>body{{font-family:system-ui,sans-serif;\
         max-width:50em;margin:3em auto;padding:0 1em}}table{{border-collapse:collapse}}\
         td,th{{border-bottom:1px solid #ddd;padding:.3em 1em;text-align:left}}\
         td+td,th+th{{text-align:right}}</style></head>\n<body>\n<h1>Usage: {zone}</h1>\n\
         <p>Day {day} (resets {dr}), month {month} (resets {mr}). {n} users this month.</p>\n\
         <table><tr><th>User</th><th>Today</th><th>This month</th></tr>\n{table}</table>\n\
         </body></html>\n",
        zone = escape(&zone.name),
        day = Clock::day_label(periods.day),
        month = Clock::month_label(periods.month),
        dr = quota::format_utc(periods.day_ends),
        mr = quota::format_utc(periods.month_ends),
        n = rows.len(),
    )
}
