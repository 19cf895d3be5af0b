//! The login site's directives: `gpt_auth_login`, `gpt_auth_callback`, `gpt_auth_logout` (each
//! makes its location run one of the login's content handlers).

use crate::conf::directives::set_content_handler;
use crate::conf::{Handler, LocConf};
use crate::ngx::NgxConfExt;

ngx_entry! {
    /// `gpt_auth_login PROVIDER ...`
    pub directive fn login(cf, lcf: LocConf) {
        let names = cf.arg_strings();
        set_content_handler(cf, lcf, Handler::Login(names), super::page::login_handler)
    }
}

ngx_entry! {
    /// `gpt_auth_callback`
    pub directive fn callback(cf, lcf: LocConf) {
        set_content_handler(cf, lcf, Handler::Callback, super::callback::callback_handler)
    }
}

ngx_entry! {
    /// `gpt_auth_logout`
    pub directive fn logout(cf, lcf: LocConf) {
        set_content_handler(cf, lcf, Handler::Logout, super::logout::logout_handler)
    }
}
