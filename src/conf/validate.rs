//! The checks of a merged location configuration (`nginx -t` fails on any of them), and the
//! names it refers to resolved: quota zones and providers may be declared after their use.

use nginx_sys::ngx_conf_t;

use super::{Handler, LocConf, MainConf};
use crate::ngx::conf::server_locations;
use crate::ngx::ConfError;

pub fn location(lcf: &mut LocConf, cf: &ngx_conf_t, main: &MainConf) -> Result<(), ConfError> {
    if lcf.enabled() && lcf.keys.is_none() {
        return Err(ConfError::invalid(format_args!(
            "\"gpt_auth on\" in {} needs \"gpt_auth_key_file\" (at the same or an enclosing \
             level) to verify session cookies",
            lcf.enable_source
        )));
    }
    resolve_quota_zone(lcf, main)?;
    content_handler(lcf, main)?;
    fetch_location(lcf, cf, main)
}

/// A login or callback location whose providers fetch (discovery, keys, token exchange) needs
/// the internal fetch location in its server (the snippet nginx-conf/gpt_auth_fetch.conf);
/// without it the fetches would fall into another location (often `location /`, the
/// application) and every sign-in would fail with a misleading error. Host names need a
/// `resolver` there: without one nginx answers 502 at once.
fn fetch_location(lcf: &LocConf, cf: &ngx_conf_t, main: &MainConf) -> Result<(), ConfError> {
    let providers = match &lcf.handler {
        Handler::Login(_) => &lcf.login_providers,
        Handler::Callback => &main.providers,
        _ => return Ok(()),
    };
    let mut locations = None;
    for p in providers.iter().filter(|p| p.needs_fetches()) {
        let locations = locations.get_or_insert_with(|| server_locations(cf));
        let Some(l) = locations.iter().find(|l| l.name == p.fetch_location) else {
            return Err(ConfError::invalid(format_args!(
                "\"{}\" in {}: provider \"{}\" fetches through the internal location \"{}\", \
                 which this server does not have; add \"include \
                 /etc/nginx/snippets/gpt_auth_fetch.conf;\" to the server block (the file is \
                 nginx-conf/gpt_auth_fetch.conf, installed by \"make install\")",
                lcf.handler.directive(),
                lcf.handler_source,
                p.name,
                p.fetch_location
            )));
        };
        if !l.internal {
            warn!(
                cf,
                "location \"{}\" (fetches of provider \"{}\") is not \"internal\": clients \
                 can request it directly",
                l.name,
                p.name
            );
        }
        let names = p.fetched_host_names();
        if !l.resolver && !names.is_empty() {
            warn!(
                cf,
                "provider \"{}\" is reached by host name (\"{}\") but no \"resolver\" applies \
                 to location \"{}\": every sign-in will fail with 502; add a resolver (see \
                 README, \"Choosing the resolver\")",
                p.name,
                names.join("\", \""),
                l.name
            );
        }
    }
    Ok(())
}

fn resolve_quota_zone(lcf: &LocConf, main: &MainConf) -> Result<(), ConfError> {
    let Some(Some(q)) = &lcf.quota else { return Ok(()) };
    if q.zone.get().is_some() {
        return Ok(());
    }
    let zone = main.quota_zone(&q.zone_name).ok_or_else(|| {
        ConfError::invalid(format_args!(
            "\"gpt_auth_quota\" in {}: no \"gpt_auth_quota_zone zone={}:...\" is defined",
            q.source, q.zone_name
        ))
    })?;
    let _ = q.zone.set(zone.clone());
    Ok(())
}

fn content_handler(lcf: &mut LocConf, main: &MainConf) -> Result<(), ConfError> {
    if let Handler::Login(names) = &lcf.handler {
        if lcf.keys.is_some() {
            lcf.login_providers = providers(names, &lcf.handler_source, main)?;
        }
    }
    let key_zone = match &lcf.handler {
        Handler::ApiKeys(name) => main.quota_zone(name),
        _ => None,
    };
    for z in lcf.bearer_zone().and_then(|n| main.quota_zone(n)).into_iter().chain(key_zone) {
        z.api_keys.set(true);
    }
    if let Some(name) = lcf.bearer_zone() {
        if main.quota_zone(name).is_none() {
            return Err(ConfError::invalid(format_args!(
                "\"gpt_auth_bearer zone={name}\": no \"gpt_auth_quota_zone zone={name}:...\" is \
                 defined"
            )));
        }
    }
    let src = &lcf.handler_source;
    let directive = lcf.handler.directive();
    if matches!(lcf.handler, Handler::ApiKeys(_)) && lcf.enable != 1 {
        return Err(ConfError::invalid(format_args!(
            "\"{directive}\" in {src} needs \"gpt_auth on\" in its location: the page is for \
             signed-in users"
        )));
    }
    match &lcf.handler {
        Handler::None => Ok(()),
        Handler::QuotaReport(name) | Handler::QuotaAdmin(name) | Handler::ApiKeys(name) => {
            match main.quota_zone(name) {
                Some(_) => Ok(()),
                None => Err(ConfError::invalid(format_args!(
                    "\"{directive}\" in {src}: no \"gpt_auth_quota_zone zone={name}:...\" is \
                     defined"
                ))),
            }
        }
        Handler::Logout => Ok(()),
        _ if lcf.keys.is_none() => Err(ConfError::invalid(format_args!(
            "\"{directive}\" in {src} needs \"gpt_auth_key_file\" (at the same or an enclosing \
             level) to sign cookies"
        ))),
        Handler::Callback if main.providers.is_empty() => Err(ConfError::invalid(format_args!(
            "\"gpt_auth_callback\" in {src} needs a \"gpt_auth_provider\" block"
        ))),
        Handler::Callback | Handler::Login(_) => Ok(()),
    }
}

/// `gpt_auth_login`'s provider names, resolved.
fn providers(
    names: &[String],
    src: &crate::ngx::Source,
    main: &MainConf,
) -> Result<Vec<std::rc::Rc<super::Provider>>, ConfError> {
    names
        .iter()
        .map(|name| {
            main.provider(name).cloned().ok_or_else(|| {
                ConfError::invalid(format_args!(
                    "\"gpt_auth_login\" in {src}: no \"gpt_auth_provider {name}\" is defined"
                ))
            })
        })
        .collect()
}
