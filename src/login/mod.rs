//! The login site: the login page ([`page`]), the provider's callback ([`callback`]) and logout
//! ([`logout`]); the login flow they run ([`flow`]), its exchanges with the provider
//! ([`provider`], over [`fetch`] subrequests), the login-state cookies ([`state`]) and the
//! session it ends with ([`session`]).

use nginx_sys::{ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR};
use ngx::http::{HttpModuleLocationConf, Request};

use crate::conf::LocConf;
use crate::GptAuthModule;

pub mod callback;
pub mod directives;
pub mod fetch;
pub mod flow;
pub mod logout;
pub mod page;
pub mod provider;
mod random;
mod request;
pub mod session;
pub mod state;

/// Runs a content handler's body with its location configuration.
fn with_conf(
    r: &mut Request,
    f: impl FnOnce(&mut Request, &'static LocConf) -> ngx_int_t,
) -> ngx_int_t {
    let Some(lcf) = GptAuthModule::location_conf(r) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    #[cfg(feature = "test-hooks")]
    crate::test_hooks::maybe_panic(r, "content");
    f(r, lcf)
}
