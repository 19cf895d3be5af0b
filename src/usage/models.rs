//! Who may use which model: the location's `gpt_auth_models` rules, in order — the first rule
//! with a pattern that matches the model decides (allowed when it has no list or the user is on
//! it); a model no rule matches is refused. The model list (`GET .../models`) is filtered the
//! same way, so a chat UI offers only the models the user may use.

use gpt_auth_core::usage::glob_match;
use nginx_sys::{ngx_int_t, NGX_HTTP_BAD_REQUEST};
use ngx::http::Request;

use super::access::{model_refused, refuse};
use crate::conf::usage::{ApiFlavor, ModelRule, Who};
use crate::conf::LocConf;
use crate::ngx::time::now;
use crate::ngx::RequestExt;
use crate::pages::api;

/// Whether `user` may use `model` under `rules` (none: every model).
pub fn allows(r: &Request, rules: &[ModelRule], user: &[u8], model: &str) -> bool {
    if rules.is_empty() {
        return true;
    }
    let lower = model.to_ascii_lowercase();
    let Some(rule) = rules.iter().find(|rule| rule.patterns.iter().any(|p| glob_match(p, &lower)))
    else {
        return false;
    };
    match &rule.who {
        Who::Everyone => true,
        Who::List(list) => list.allows(user, now(), r.log_ptr()),
    }
}

/// The model check of a request body; `Err` is the answer sent.
pub fn check(
    r: &mut Request,
    lcf: &LocConf,
    user: &[u8],
    flavor: ApiFlavor,
    model: Option<&str>,
) -> Result<(), ngx_int_t> {
    let rules = lcf.usage.rules();
    if rules.is_empty() {
        return Ok(());
    }
    let Some(model) = model else {
        info!(r, "AI request refused: no \"model\" in the request body");
        return Err(refuse(
            r,
            flavor,
            NGX_HTTP_BAD_REQUEST,
            api::Error::BadRequest,
            "the request names no model",
        ));
    };
    if allows(r, rules, user, model) {
        return Ok(());
    }
    let who = String::from_utf8_lossy(user).into_owned();
    info!(r, "AI request refused: \"{}\" may not use the model \"{}\"", who, model);
    Err(model_refused(r, flavor, model))
}

/// Whether the request asks for a model list (`GET .../models`).
pub fn is_list(r: &Request) -> bool {
    r.is_get_or_head()
        && r.path()
            .as_bytes()
            .strip_suffix(b"/")
            .unwrap_or(r.path().as_bytes())
            .ends_with(b"/models")
}
