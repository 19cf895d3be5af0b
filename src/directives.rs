//! The command table: every directive of the module and the function that parses it.
//!
//! | directives | parsed in |
//! |---|---|
//! | `gpt_auth`, `gpt_auth_key_file`, `gpt_auth_cookie_*`, `gpt_auth_login_url`, `gpt_auth_allowlist`, URLs, pages | `conf::directives` |
//! | `gpt_auth_provider { ... }` | `conf::provider` |
//! | `gpt_auth_login`, `gpt_auth_callback`, `gpt_auth_logout` | `login::directives` |
//! | `gpt_auth_quota_zone`, `gpt_auth_quota_redis`, `gpt_auth_quota`, `gpt_auth_quota_report` | `quota::directives` |

use core::mem::offset_of;

use nginx_sys::{
    ngx_command_t, NGX_CONF_1MORE, NGX_CONF_BLOCK, NGX_CONF_FLAG, NGX_CONF_NOARGS, NGX_CONF_TAKE1,
    NGX_CONF_TAKE12, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF,
};

use crate::conf::directives as general;
use crate::conf::{provider, LocConf};
use crate::ngx::conf::{command, DirectiveHandler};
use crate::{apikeys, login, quota, usage};

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A directive valid at http, server and location level (location configuration).
const fn any_level(
    name: &'static core::ffi::CStr,
    args: u32,
    set: DirectiveHandler,
) -> ngx_command_t {
    command(name, ANY_LEVEL | args, set, NGX_HTTP_LOC_CONF_OFFSET, 0)
}

/// The same, for a handler that writes at `offset` in the location configuration (nginx's slot
/// setters).
const fn any_level_slot(
    name: &'static core::ffi::CStr,
    args: u32,
    set: DirectiveHandler,
    offset: usize,
) -> ngx_command_t {
    command(name, ANY_LEVEL | args, set, NGX_HTTP_LOC_CONF_OFFSET, offset)
}

/// A content handler directive (location level only).
const fn location(
    name: &'static core::ffi::CStr,
    args: u32,
    set: DirectiveHandler,
) -> ngx_command_t {
    command(name, NGX_HTTP_LOC_CONF | args, set, NGX_HTTP_LOC_CONF_OFFSET, 0)
}

/// An http-level directive (main configuration).
const fn http(name: &'static core::ffi::CStr, args: u32, set: DirectiveHandler) -> ngx_command_t {
    command(name, NGX_HTTP_MAIN_CONF | args, set, NGX_HTTP_MAIN_CONF_OFFSET, 0)
}

pub static mut COMMANDS: [ngx_command_t; 40] = [
    any_level(c"gpt_auth", NGX_CONF_FLAG, general::enable),
    any_level(c"gpt_auth_key_file", NGX_CONF_TAKE1, general::key_file),
    any_level(c"gpt_auth_cookie_name", NGX_CONF_TAKE1, general::cookie_name),
    any_level(c"gpt_auth_cookie_domain", NGX_CONF_TAKE1, general::cookie_domain),
    any_level(c"gpt_auth_cookie_path", NGX_CONF_TAKE1, general::cookie_path),
    any_level(c"gpt_auth_cookie_max_age", NGX_CONF_TAKE1, general::cookie_max_age),
    any_level(c"gpt_auth_cookie_samesite", NGX_CONF_TAKE1, general::cookie_samesite),
    any_level_slot(
        c"gpt_auth_cookie_secure",
        NGX_CONF_FLAG,
        nginx_sys::ngx_conf_set_flag_slot,
        offset_of!(LocConf, cookie_secure),
    ),
    any_level_slot(
        c"gpt_auth_cache_control",
        NGX_CONF_FLAG,
        nginx_sys::ngx_conf_set_flag_slot,
        offset_of!(LocConf, cache_control),
    ),
    any_level_slot(
        c"gpt_auth_login_url",
        NGX_CONF_TAKE1,
        general::login_url,
        offset_of!(LocConf, login_url),
    ),
    any_level(c"gpt_auth_allowlist", NGX_CONF_TAKE1, general::allowlist),
    any_level(c"gpt_auth_revoked", NGX_CONF_TAKE1, general::revoked),
    any_level(c"gpt_auth_logout_url", NGX_CONF_TAKE1, general::logout_url),
    any_level(c"gpt_auth_return_hosts", NGX_CONF_1MORE, general::return_hosts),
    any_level(c"gpt_auth_default_return_url", NGX_CONF_TAKE1, general::default_return_url),
    any_level(c"gpt_auth_login_page", NGX_CONF_TAKE1, general::login_page),
    any_level(c"gpt_auth_not_allowed_page", NGX_CONF_TAKE1, general::not_allowed_page),
    any_level(c"gpt_auth_error_page", NGX_CONF_TAKE1, general::error_page),
    http(c"gpt_auth_provider", NGX_CONF_BLOCK | NGX_CONF_TAKE1, provider::provider),
    location(c"gpt_auth_login", NGX_CONF_1MORE, login::directives::login),
    location(c"gpt_auth_callback", NGX_CONF_NOARGS, login::directives::callback),
    location(c"gpt_auth_logout", NGX_CONF_NOARGS, login::directives::logout),
    http(c"gpt_auth_quota_zone", NGX_CONF_1MORE, quota::directives::quota_zone),
    any_level(c"gpt_auth_quota", NGX_CONF_1MORE, quota::directives::quota),
    any_level(c"gpt_auth_quota_page", NGX_CONF_TAKE1, general::quota_page),
    location(c"gpt_auth_quota_report", NGX_CONF_TAKE1, quota::directives::quota_report),
    location(c"gpt_auth_quota_admin", NGX_CONF_TAKE1, quota::directives::quota_admin),
    any_level(c"gpt_auth_api", NGX_CONF_TAKE1, usage::directives::api),
    any_level(c"gpt_auth_models", NGX_CONF_1MORE, usage::directives::models),
    any_level(c"gpt_auth_models_filter", NGX_CONF_TAKE1, usage::directives::models_filter),
    any_level(c"gpt_auth_meter", NGX_CONF_TAKE1, usage::directives::meter),
    any_level(c"gpt_auth_stream_usage", NGX_CONF_TAKE1, usage::directives::stream_usage),
    any_level(c"gpt_auth_meter_fallback", NGX_CONF_TAKE1, usage::directives::meter_fallback),
    any_level(c"gpt_auth_prices", NGX_CONF_TAKE1, usage::directives::prices),
    any_level(c"gpt_auth_api_body_limit", NGX_CONF_TAKE1, usage::directives::body_limit),
    http(c"gpt_auth_quota_group", NGX_CONF_1MORE, quota::directives::quota_group),
    http(c"gpt_auth_quota_redis", NGX_CONF_1MORE, quota::directives::quota_redis),
    any_level(c"gpt_auth_bearer", NGX_CONF_TAKE1, apikeys::directives::bearer),
    location(c"gpt_auth_api_keys", NGX_CONF_TAKE12, apikeys::directives::api_keys),
    ngx_command_t::empty(),
];
