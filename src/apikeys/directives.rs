//! `gpt_auth_bearer zone=NAME | off` (any level) and `gpt_auth_api_keys zone=NAME [max=N]`
//! (location).

use crate::conf::directives::{set_content_handler, set_once, utf8};
use crate::conf::{Handler, LocConf};
use crate::ngx::{ConfError, NgxConfExt};

fn zone_name(v: &str) -> Result<String, ConfError> {
    v.strip_prefix("zone=").filter(|n| !n.is_empty()).map(str::to_owned).ok_or_else(|| {
        ConfError::invalid(format_args!("invalid parameter \"{v}\" (expected zone=NAME)"))
    })
}

ngx_entry! {
    /// `gpt_auth_bearer zone=NAME | off`: accept personal API keys recorded in the zone.
    pub directive fn bearer(cf, lcf: LocConf) {
        let v = crate::conf::directives::value(cf);
        let v = utf8(&v)?;
        let setting = if v == "off" { None } else { Some(zone_name(v)?) };
        set_once(&mut lcf.bearer, setting)
    }
}

ngx_entry! {
    /// `gpt_auth_api_keys zone=NAME [max=N]`: the page of a user's keys.
    pub directive fn api_keys(cf, lcf: LocConf) {
        let args = cf.arg_strings();
        let mut zone = None;
        for a in &args {
            if let Some(n) = a.strip_prefix("max=") {
                lcf.api_keys_max = n.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                    ConfError::invalid(format_args!("max=\"{n}\": expected a number from 1 to 1000"))
                })?;
            } else {
                zone = Some(zone_name(a)?);
            }
        }
        let zone = zone.ok_or_else(|| ConfError::invalid("needs zone=NAME"))?;
        set_content_handler(cf, lcf, Handler::ApiKeys(zone), super::page::handler)
    }
}
