//! Query strings and form bodies (`form::decode_query_param`, `form::form_params`): `rd`,
//! `code`, `state`, `iss`, `error` of a callback, the `form_post` body with `id_token` or
//! Google's `credential` and `g_csrf_token`.
//!
//! Input: a first byte picking the parameter name, then the query string or body.
#![no_main]

use gpt_auth_core::form::{
    decode_query_param, form_params, MAX_FORM_LEN, MAX_FORM_PARAMS, MAX_QUERY_LEN,
};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "rd",
    "code",
    "state",
    "iss",
    "error",
    "provider",
    "id_token",
    "credential",
    "g_csrf_token",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&select, query)) = data.split_first() else { return };
    let name = NAMES[usize::from(select) % NAMES.len()];

    let value = decode_query_param(query, name);
    let params = form_params(query);
    assert!(params.len() <= MAX_FORM_PARAMS);
    if query.len() > MAX_QUERY_LEN {
        assert_eq!(value, None);
    }
    if query.len() > MAX_FORM_LEN {
        assert!(params.is_empty());
    }
    // The first pair of that name, both ways (as far as the form pair limit lets one see).
    if query.len() <= MAX_QUERY_LEN && params.len() < MAX_FORM_PARAMS {
        let first = params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(value, first);
    }
    if query.is_ascii() && !query.contains(&b'%') && !query.contains(&b'+') {
        // Nothing to decode: values are substrings of the input.
        let text = std::str::from_utf8(query).unwrap();
        for (k, v) in &params {
            assert!(text.contains(k.as_str()) && text.contains(v.as_str()));
        }
    }
});
