//! The variable table: every variable of the module and its getter.
//!
//! - `$gpt_auth_email`, `$gpt_auth_result`: who is signed in ([`crate::gate::variables`]);
//! - `$gpt_auth_quota_day_used`, `..._day_remaining`, `..._month_used`, `..._month_remaining`:
//!   the user's request budget after this request was admitted (a request the user's own budget
//!   refused: the counters that refused it; `unlimited` without a limit; empty for a request
//!   not counted), and `$gpt_auth_quota_warning` ([`crate::quota::variables`]);
//! - `$gpt_auth_model`, `$gpt_auth_input_tokens`, `$gpt_auth_output_tokens`, `$gpt_auth_cost`,
//!   `$gpt_auth_usage_source`: an AI request's model and what it was charged
//!   ([`crate::usage::variables`]);
//! - `$gpt_auth_fetch_*`: an outbound request of the login flow, inside the module's own fetch
//!   subrequests only (see nginx-conf/gpt_auth_fetch.conf) ([`crate::login::fetch`]).

use nginx_sys::{ngx_http_variable_t, ngx_str_t, ngx_uint_t, NGX_HTTP_VAR_NOCACHEABLE};
use ngx::ngx_string;

use crate::gate::variables as gate;
use crate::login::fetch;
use crate::quota::variables as quota;
use crate::usage::variables as usage;

type Getter = unsafe extern "C" fn(
    *mut nginx_sys::ngx_http_request_t,
    *mut nginx_sys::ngx_variable_value_t,
    usize,
) -> nginx_sys::ngx_int_t;

const fn variable(name: ngx_str_t, get: Getter) -> ngx_http_variable_t {
    ngx_http_variable_t {
        name,
        set_handler: None,
        get_handler: Some(get),
        data: 0,
        flags: NGX_HTTP_VAR_NOCACHEABLE as ngx_uint_t,
        index: 0,
    }
}

/// The table, registered in `preconfiguration` (nginx copies what it keeps).
pub const VARIABLES: [ngx_http_variable_t; 17] = [
    variable(ngx_string!("gpt_auth_email"), gate::email),
    variable(ngx_string!("gpt_auth_result"), gate::result),
    variable(ngx_string!("gpt_auth_fetch_url"), fetch::var_url),
    variable(ngx_string!("gpt_auth_fetch_method"), fetch::var_method),
    variable(ngx_string!("gpt_auth_fetch_body"), fetch::var_body),
    variable(ngx_string!("gpt_auth_fetch_content_type"), fetch::var_content_type),
    variable(ngx_string!("gpt_auth_fetch_authorization"), fetch::var_authorization),
    variable(ngx_string!("gpt_auth_quota_day_used"), quota::day_used),
    variable(ngx_string!("gpt_auth_quota_day_remaining"), quota::day_remaining),
    variable(ngx_string!("gpt_auth_quota_month_used"), quota::month_used),
    variable(ngx_string!("gpt_auth_quota_month_remaining"), quota::month_remaining),
    variable(ngx_string!("gpt_auth_quota_warning"), quota::warning),
    variable(ngx_string!("gpt_auth_model"), usage::model),
    variable(ngx_string!("gpt_auth_input_tokens"), usage::input_tokens),
    variable(ngx_string!("gpt_auth_output_tokens"), usage::output_tokens),
    variable(ngx_string!("gpt_auth_cost"), usage::cost),
    variable(ngx_string!("gpt_auth_usage_source"), usage::usage_source),
];
