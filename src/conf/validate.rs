//! The checks of a merged location configuration (`nginx -t` fails on any of them), and the
//! names it refers to resolved: quota zones and providers may be declared after their use.

use nginx_sys::ngx_conf_t;

use super::{Handler, LocConf, MainConf};
use crate::ngx::ConfError;

pub fn location(lcf: &mut LocConf, _cf: &ngx_conf_t, main: &MainConf) -> Result<(), ConfError> {
    if lcf.enabled() && lcf.keys.is_none() {
        return Err(ConfError::invalid(format_args!(
            "\"gpt_auth on\" in {} needs \"gpt_auth_key_file\" (at the same or an enclosing \
             level) to verify session cookies",
            lcf.enable_source
        )));
    }
    resolve_quota_zone(lcf, main)?;
    content_handler(lcf, main)
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
    let src = &lcf.handler_source;
    let directive = lcf.handler.directive();
    match &lcf.handler {
        Handler::None => Ok(()),
        Handler::QuotaReport(name) => match main.quota_zone(name) {
            Some(_) => Ok(()),
            None => Err(ConfError::invalid(format_args!(
                "\"gpt_auth_quota_report\" in {src}: no \"gpt_auth_quota_zone zone={name}:...\" \
                 is defined"
            ))),
        },
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
