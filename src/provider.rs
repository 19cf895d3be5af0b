//! `gpt_auth_provider NAME { ... }`: an OpenID Connect provider (Google, Entra ID, Okta,
//! Keycloak, GitLab, ...), and each worker's cache of what was fetched from it.

use core::cell::RefCell;
use core::ffi::{c_char, c_void};
use core::ptr;
use std::fs;
use std::rc::Rc;

use gpt_auth_core::discovery::Discovery;
use gpt_auth_core::duration;
use gpt_auth_core::idtoken::Jwks;
use gpt_auth_core::jwks_cache::RefetchLimiter;
use nginx_sys::{ngx_command_t, ngx_conf_t};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::HttpModuleMainConf;

use crate::log::io_reason;
use crate::ngx_ext::{conf_args, conf_full_path, guard};
use crate::GptAuthModule;

/// Google's issuer; its ID tokens may also carry the scheme-less form.
const GOOGLE_ISSUER: &str = "https://accounts.google.com";

pub const DEFAULT_FETCH_LOCATION: &str = "/_gpt_auth_fetch";
pub const DEFAULT_REDIRECT_URI: &str = "/callback";
pub const DEFAULT_SCOPE: &str = "openid email";
pub const DEFAULT_LEEWAY: u64 = 60;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

/// What a worker has fetched from the provider.
#[derive(Debug, Default)]
pub struct Cache {
    pub discovery: Option<(Rc<Discovery>, u64)>,
    pub jwks: Option<(Rc<Jwks>, u64)>,
    pub refetch: RefetchLimiter,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Absolute, or a path resolved against the request's scheme and host.
    pub redirect_uri: String,
    pub scope: String,
    pub token_auth: TokenAuth,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    /// A local JWKS (air-gapped setups): no key fetching at all.
    pub jwks_file: Option<Rc<Jwks>>,
    pub hosted_domains: Vec<String>,
    pub leeway: u64,
    /// Accept Google Identity Services credential POSTs at the callback.
    pub gsi: bool,
    pub extra_auth_args: String,
    pub fetch_location: String,
    pub cache: RefCell<Cache>,
}

impl Provider {
    fn new(name: &str) -> Provider {
        Provider {
            name: name.to_owned(),
            display_name: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            redirect_uri: DEFAULT_REDIRECT_URI.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            token_auth: TokenAuth::ClientSecretBasic,
            authorization_endpoint: None,
            token_endpoint: None,
            jwks_uri: None,
            jwks_file: None,
            hosted_domains: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            gsi: false,
            extra_auth_args: String::new(),
            fetch_location: DEFAULT_FETCH_LOCATION.to_owned(),
            cache: RefCell::new(Cache::default()),
        }
    }

    /// Issuer values accepted in ID tokens.
    pub fn accepted_issuers(&self) -> Vec<&str> {
        if self.issuer == GOOGLE_ISSUER {
            vec![GOOGLE_ISSUER, "accounts.google.com"]
        } else {
            vec![self.issuer.as_str()]
        }
    }

    /// The `prompt` that lets a user sign in with another account: Google's account chooser, or a
    /// fresh login elsewhere (`select_account` is optional in OpenID Connect and not every
    /// provider supports it).
    pub fn switch_account_prompt(&self) -> &'static str {
        if self.issuer == GOOGLE_ISSUER {
            "select_account"
        } else {
            "login"
        }
    }

    /// Whether the authorization code flow is configured (it needs a client secret).
    pub fn code_flow(&self) -> bool {
        self.client_secret.is_some()
    }

    fn finish(&mut self) -> Result<(), String> {
        if self.issuer.is_empty() {
            return Err("has no \"issuer\"".into());
        }
        if self.client_id.is_empty() {
            return Err("has no \"client_id\"".into());
        }
        if !self.code_flow() && !self.gsi {
            return Err("needs \"client_secret_file\" (authorization code flow) or \"gsi on\" \
                 (Google Identity Services)"
                .into());
        }
        if self.display_name.is_empty() {
            self.display_name = if self.issuer == GOOGLE_ISSUER {
                "Google".to_owned()
            } else {
                let mut n = self.name.clone();
                if let Some(first) = n.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                n
            };
        }
        Ok(())
    }
}

fn absolute_url(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || value.contains(' ') {
        return Err(format!("\"{value}\" is not an absolute http(s) URL"));
    }
    Ok(value.to_owned())
}

/// `gpt_auth_provider NAME { ... }` (http level).
pub extern "C" fn cmd_provider(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: nginx passes the configuration being parsed.
        let cfr = unsafe { &mut *cf };
        let name = match conf_args(cfr) {
            [_, name] => name.to_string(),
            _ => return NGX_CONF_ERROR,
        };
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            conf_emerg!(cf, "\"gpt_auth_provider\" directive invalid name \"{}\"", name);
            return NGX_CONF_ERROR;
        }
        let Some(mcf) = GptAuthModule::main_conf_mut(cfr) else { return NGX_CONF_ERROR };
        if mcf.providers.iter().any(|p| p.name == name) {
            conf_emerg!(cf, "\"gpt_auth_provider\" directive \"{}\" is duplicate", name);
            return NGX_CONF_ERROR;
        }

        let mut provider = Provider::new(&name);
        let mut block_cf: ngx_conf_t = *cfr;
        block_cf.handler = Some(cmd_provider_block);
        block_cf.handler_conf = ptr::addr_of_mut!(provider).cast();
        // SAFETY: parses the block with our handler; `provider` outlives the call.
        let rv = unsafe { nginx_sys::ngx_conf_parse(&mut block_cf, ptr::null_mut()) };
        if rv != NGX_CONF_OK {
            return rv;
        }
        if let Err(e) = provider.finish() {
            conf_emerg!(cf, "\"gpt_auth_provider\" \"{}\" {}", name, e);
            return NGX_CONF_ERROR;
        }
        mcf.providers.push(Rc::new(provider));
        NGX_CONF_OK
    })
}

extern "C" fn cmd_provider_block(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    guard(NGX_CONF_ERROR, || {
        // SAFETY: handler_conf is the provider being filled by cmd_provider.
        let cfr = unsafe { &mut *cf };
        let provider = unsafe { &mut *cfr.handler_conf.cast::<Provider>() };
        let args: Vec<String> = conf_args(cfr).iter().map(|a| a.to_string()).collect();
        let Some(directive) = args.first().cloned() else { return NGX_CONF_ERROR };
        match set_provider_field(cfr, provider, &directive, &args[1..]) {
            Ok(()) => NGX_CONF_OK,
            Err(msg) => {
                conf_emerg!(cf, "\"{}\" {}", directive, msg);
                NGX_CONF_ERROR
            }
        }
    })
}

fn one(args: &[String]) -> Result<&str, String> {
    match args {
        [v] => Ok(v.as_str()),
        _ => Err("takes exactly one argument".into()),
    }
}

fn set_once(slot: &mut String, value: &str) -> Result<(), String> {
    if !slot.is_empty() {
        return Err("is duplicate".into());
    }
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    *slot = value.to_owned();
    Ok(())
}

fn set_once_opt(slot: &mut Option<String>, value: String) -> Result<(), String> {
    if slot.is_some() {
        return Err("is duplicate".into());
    }
    *slot = Some(value);
    Ok(())
}

fn flag(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("invalid value \"{value}\", it must be \"on\" or \"off\"")),
    }
}

fn read_file(cf: &mut ngx_conf_t, value: &str) -> Result<(String, Vec<u8>), String> {
    let path = conf_full_path(cf, value.as_bytes()).ok_or("cannot resolve the path")?;
    let data = fs::read(&path).map_err(|e| format!("cannot read \"{path}\": {}", io_reason(&e)))?;
    Ok((path, data))
}

fn set_provider_field(
    cf: &mut ngx_conf_t,
    p: &mut Provider,
    directive: &str,
    args: &[String],
) -> Result<(), String> {
    match directive {
        "issuer" => {
            // Exactly as the provider writes it (some, like Auth0, end in "/").
            let v = absolute_url(one(args)?)?;
            set_once(&mut p.issuer, &v)
        }
        "client_id" => set_once(&mut p.client_id, one(args)?),
        "client_secret_file" => {
            let (path, data) = read_file(cf, one(args)?)?;
            let secret = String::from_utf8(data)
                .map_err(|_| format!("\"{path}\" is not text"))?
                .trim()
                .to_owned();
            if secret.is_empty() || secret.contains(['\r', '\n']) {
                return Err(format!("\"{path}\" must hold the client secret on one line"));
            }
            set_once_opt(&mut p.client_secret, secret)
        }
        "redirect_uri" => {
            let v = one(args)?;
            if !v.starts_with('/') {
                absolute_url(v)?;
            }
            p.redirect_uri = v.to_owned();
            Ok(())
        }
        "scope" => {
            let v = args.join(" ");
            if !v.split_whitespace().any(|s| s == "openid") {
                return Err(format!("\"{v}\" must include \"openid\""));
            }
            p.scope = v;
            Ok(())
        }
        "authorization_endpoint" => {
            set_once_opt(&mut p.authorization_endpoint, absolute_url(one(args)?)?)
        }
        "token_endpoint" => set_once_opt(&mut p.token_endpoint, absolute_url(one(args)?)?),
        "jwks_uri" => set_once_opt(&mut p.jwks_uri, absolute_url(one(args)?)?),
        "jwks_file" => {
            if p.jwks_file.is_some() {
                return Err("is duplicate".into());
            }
            let (path, data) = read_file(cf, one(args)?)?;
            let jwks = Jwks::parse(&data).map_err(|e| format!("\"{path}\": {e}"))?;
            p.jwks_file = Some(Rc::new(jwks));
            Ok(())
        }
        "token_endpoint_auth" => {
            p.token_auth = match one(args)? {
                "client_secret_basic" => TokenAuth::ClientSecretBasic,
                "client_secret_post" => TokenAuth::ClientSecretPost,
                v => {
                    return Err(format!(
                        "invalid value \"{v}\", it must be \"client_secret_basic\" or \
                         \"client_secret_post\""
                    ))
                }
            };
            Ok(())
        }
        "hosted_domain" => {
            if args.is_empty() {
                return Err("takes one or more domains".into());
            }
            for d in args {
                if d.is_empty()
                    || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                {
                    return Err(format!("invalid domain \"{d}\""));
                }
                p.hosted_domains.push(d.to_ascii_lowercase());
            }
            Ok(())
        }
        "leeway" => {
            let v = one(args)?;
            p.leeway =
                duration::parse_seconds(v).map_err(|e| format!("invalid time \"{v}\": {e}"))?;
            Ok(())
        }
        "gsi" => {
            p.gsi = flag(one(args)?)?;
            Ok(())
        }
        "extra_auth_args" => {
            let v = one(args)?;
            if v.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#') {
                return Err(format!("invalid query string \"{v}\""));
            }
            p.extra_auth_args = v.trim_start_matches(['?', '&']).to_owned();
            Ok(())
        }
        "fetch_location" => {
            let v = one(args)?;
            if !v.starts_with('/') {
                return Err(format!("\"{v}\" must be a location path starting with \"/\""));
            }
            p.fetch_location = v.to_owned();
            Ok(())
        }
        "display_name" => {
            p.display_name = args.join(" ");
            Ok(())
        }
        _ => Err("is unknown here (inside \"gpt_auth_provider\")".into()),
    }
}
