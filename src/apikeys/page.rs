//! `gpt_auth_api_keys zone=NAME`: a signed-in user's API keys. `GET`: the list (HTML, or JSON
//! for `?format=json` / `Accept: application/json`). `POST` (a form): `action=create` with an
//! optional `name` (the key is in the answer, once), `action=revoke` with `id`. Only a session
//! may manage keys (a key cannot make more keys), and a `POST` from another site is refused
//! (its `Origin` must be this site).

use gpt_auth_core::api_key::{self, Record};
use gpt_auth_core::form::form_params;
use gpt_auth_core::html::{escape, render};
use gpt_auth_core::json::quote;
use gpt_auth_core::quota::format_utc;
use gpt_auth_core::session::Email;
use nginx_sys::{ngx_int_t, ngx_uint_t, NGX_HTTP_INTERNAL_SERVER_ERROR};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, Request};

use crate::conf::{Handler, LocConf, Zone};
use crate::gate::verdict;
use crate::ngx::response::{add_header, finalize, send_response, set_location};
use crate::ngx::time::now;
use crate::ngx::{body, RequestExt};
use crate::pages::{API_KEYS, HTML, JSON};
use crate::quota::keys::{self, CreateError};
use crate::GptAuthModule;

const INTERNAL_ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

ngx_entry! {
    pub handler fn handler(r) {
        if r.is_post() {
            return body::read(r, body_read);
        }
        if !r.is_get_or_head() {
            return nginx_sys::NGX_HTTP_NOT_ALLOWED as ngx_int_t;
        }
        let Some((lcf, zone, email)) = context(r) else { return INTERNAL_ERROR };
        list(r, lcf, zone, &email, None)
    }
}

ngx_entry! {
    event fn body_read(r) {
        let rc = match context(r) {
            Some((lcf, zone, email)) => post(r, lcf, zone, &email),
            None => INTERNAL_ERROR,
        };
        finalize(r, rc);
    }
}

/// The location, its zone and the signed-in user (the access phase let them through).
fn context(r: &Request) -> Option<(&'static LocConf, &'static Zone, String)> {
    let lcf = GptAuthModule::location_conf(r)?;
    let Handler::ApiKeys(name) = &lcf.handler else { return None };
    let zone: &'static Zone = GptAuthModule::main_conf(r)?.quota_zone(name)?;
    let v = verdict::current(r)?;
    Some((lcf, zone, v.allowed_email().map(|e| String::from_utf8_lossy(e).into_owned())?))
}

fn wants_json(r: &Request) -> bool {
    gpt_auth_core::form::decode_query_param(r.args(), "format").as_deref() == Some("json")
        || r.headers().any(|(h, v)| {
            h == b"accept" && v.windows(16).any(|w| w.eq_ignore_ascii_case(b"application/json"))
        })
}

fn answer(r: &mut Request, status: u32, ctype: &'static str, body: &str) -> ngx_int_t {
    // The page may show a new key: never stored by a cache.
    if add_header(r, "Cache-Control", b"no-store").is_none() {
        return INTERNAL_ERROR;
    }
    send_response(r, status as ngx_uint_t, ctype, body.as_bytes())
}

fn refuse(r: &mut Request, status: u32, code: &str, message: &str) -> ngx_int_t {
    info!(r, "API keys: {}", message);
    let body = format!("{{\"error\":\"{code}\",\"message\":{}}}\n", quote(message));
    answer(r, status, JSON, &body)
}

/// The `Origin` of a `POST`, if sent, must be this site (a form of another site cannot act).
fn same_origin(r: &Request) -> bool {
    let Some((_, origin)) = r.headers().find(|(h, _)| *h == b"origin") else { return true };
    let scheme: &[u8] = if r.is_https() { b"https://" } else { b"http://" };
    origin.strip_prefix(scheme).is_some_and(|host| host.eq_ignore_ascii_case(r.host()))
}

fn post(r: &mut Request, lcf: &LocConf, zone: &Zone, email: &str) -> ngx_int_t {
    if verdict::current(r).is_some_and(|v| v.via_key) {
        return refuse(r, 403, "forbidden", "API keys are managed with a session, not with a key");
    }
    if !same_origin(r) {
        return refuse(r, 403, "forbidden", "a request from another site (Origin) was refused");
    }
    let params = form_params(&body::in_memory(r).unwrap_or_default());
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    match get("action") {
        Some("create") => create(r, lcf, zone, email, get("name").unwrap_or("")),
        Some("revoke") => {
            let id = get("id").unwrap_or("");
            if !keys::revoke(zone, id.as_bytes(), email) {
                return refuse(r, 404, "not_found", "no such key of yours");
            }
            notice!(r, "API key {} of \"{}\" revoked", api_key::id_hint(id), email);
            if wants_json(r) {
                return answer(r, 200, JSON, &format!("{{\"revoked\":{}}}\n", quote(id)));
            }
            see_other(r)
        }
        _ => refuse(r, 400, "bad_request", "action must be create or revoke"),
    }
}

/// 303 back to the list (so a reload does not post again).
fn see_other(r: &mut Request) -> ngx_int_t {
    let uri = r.path().as_bytes().to_vec();
    if set_location(r, &uri).is_none() {
        return INTERNAL_ERROR;
    }
    answer(r, 303, HTML, "<!DOCTYPE html>\n<p><a href=\"\">Back to your keys</a></p>\n")
}

fn create(r: &mut Request, lcf: &LocConf, zone: &Zone, email: &str, name: &str) -> ngx_int_t {
    let (Some(keyfile), Some(owner)) = (lcf.keys.as_ref(), Email::new(email)) else {
        return INTERNAL_ERROR;
    };
    let mut random = [0u8; 12];
    if getrandom::fill(&mut random).is_err() {
        return INTERNAL_ERROR;
    }
    let id = api_key::new_id(&random);
    let rec = keys::new_record(id, owner, name, now());
    match keys::create(zone, rec, lcf.api_keys_max) {
        Ok(()) => {}
        Err(e @ CreateError::TooMany(_)) => return refuse(r, 409, "too_many_keys", &e.to_string()),
        Err(e) => {
            error!(r, "API keys: zone \"{}\": {}", zone.name, e);
            return refuse(r, 503, "unavailable", &e.to_string());
        }
    }
    let key = api_key::encode(keyfile.ring.signing_key(), &id, email);
    let id = rec.id;
    let id = core::str::from_utf8(&id).unwrap_or_default();
    notice!(r, "API key {} created for \"{}\"", api_key::id_hint(id), email);
    if wants_json(r) {
        let body = format!(
            "{{\"key\":{},\"id\":{},\"name\":{},\"created\":\"{}\"}}\n",
            quote(&key),
            quote(id),
            quote(rec.name.as_str()),
            format_utc(rec.created)
        );
        return answer(r, 201, JSON, &body);
    }
    let msg = format!(
        "<div class=\"new\"><p>Your new key <b>{}</b> — copy it now, it is not shown again:</p>\
         <p><code>{}</code></p></div>",
        escape(rec.name.as_str()),
        escape(&key)
    );
    list(r, lcf, zone, email, Some(msg))
}

fn when(t: u64) -> String {
    if t == 0 {
        "never".to_owned()
    } else {
        format_utc(t)
    }
}

fn json_list(records: &[Record]) -> String {
    let items: Vec<String> = records
        .iter()
        .map(|k| {
            format!(
                "{{\"id\":{},\"name\":{},\"created\":\"{}\",\"last_used\":{}}}",
                quote(core::str::from_utf8(&k.id).unwrap_or_default()),
                quote(k.name.as_str()),
                format_utc(k.created),
                if k.last_used == 0 {
                    "null".to_owned()
                } else {
                    format!("\"{}\"", format_utc(k.last_used))
                }
            )
        })
        .collect();
    format!("{{\"keys\":[{}]}}\n", items.join(","))
}

fn list(
    r: &mut Request,
    lcf: &LocConf,
    zone: &Zone,
    email: &str,
    msg: Option<String>,
) -> ngx_int_t {
    let records = keys::list(zone, Some(email));
    if wants_json(r) {
        return answer(r, 200, JSON, &json_list(&records));
    }
    let mut rows = String::new();
    for k in &records {
        let id = escape(core::str::from_utf8(&k.id).unwrap_or_default());
        rows.push_str(&format!(
            "<tr><td>{}</td><td><code>{}…</code></td><td>{}</td><td>{}</td><td><form method=\"post\">\
             <input type=\"hidden\" name=\"action\" value=\"revoke\"><input type=\"hidden\" \
             name=\"id\" value=\"{id}\"><button type=\"submit\">Revoke</button></form></td></tr>\n",
            escape(k.name.as_str()),
            escape(api_key::id_hint(&id)),
            when(k.created),
            when(k.last_used)
        ));
    }
    if records.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">No keys yet.</td></tr>\n");
    }
    let body = render(
        API_KEYS,
        &[
            ("message", msg.as_deref().unwrap_or("")),
            ("rows", &rows),
            ("email", &escape(email)),
            ("max", &lcf.api_keys_max.to_string()),
        ],
    );
    answer(r, 200, HTML, &body)
}
