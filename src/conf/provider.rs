//! `gpt_auth_provider NAME { ... }`: an OpenID Connect provider (Google, Entra ID, Okta,
//! Keycloak, GitLab, ...). The block is parsed like nginx's own blocks, with a command table of
//! its own ([`BLOCK_COMMANDS`]); plain fields use nginx's slot setters.

use core::cell::RefCell;
use core::mem::offset_of;
use std::rc::Rc;

use super::{MainConf, FLAG_UNSET};
use crate::ngx::conf::{command, parse_block, read_conf_file};
use crate::ngx::{ConfError, NgxConfExt};
use gpt_auth_core::discovery::Discovery;
use gpt_auth_core::duration;
use gpt_auth_core::idtoken::Jwks;
use gpt_auth_core::jwks_cache::RefetchLimiter;
use nginx_sys::{
    ngx_command_t, ngx_flag_t, ngx_str_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_TAKE1,
};

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

    /// The `prompt` that lets a user sign in with another account: Google's account chooser, or
    /// a fresh login elsewhere (`select_account` is optional in OpenID Connect).
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

    /// Whether a login with this provider makes fetch subrequests: the token exchange of a code
    /// flow, the key set (unless `jwks_file`), discovery (unless every endpoint is configured).
    pub fn needs_fetches(&self) -> bool {
        self.code_flow() || self.jwks_file.is_none()
    }

    /// The host names (not IP addresses) the module will fetch from, as far as the
    /// configuration tells (discovery may name more).
    pub fn fetched_host_names(&self) -> Vec<&str> {
        let mut urls = vec![self.issuer.as_str()];
        urls.extend(self.token_endpoint.as_deref());
        urls.extend(self.jwks_uri.as_deref());
        let mut hosts: Vec<&str> = urls.into_iter().filter_map(host_name).collect();
        hosts.dedup();
        hosts
    }
}

/// The host of an absolute http(s) URL when it is a name, not an IP literal.
fn host_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.starts_with('[') {
        return None; // IPv6 literal
    }
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let ipv4 = host.split('.').count() == 4 && host.split('.').all(|p| p.parse::<u8>().is_ok());
    (!ipv4 && !host.is_empty()).then_some(host)
}

/// The block while it is parsed: the provider, and the fields nginx's slot setters fill.
#[repr(C)]
struct Block {
    provider: Provider,
    client_id: ngx_str_t,
    gsi: ngx_flag_t,
}

impl Block {
    /// The provider, once the block is complete and consistent.
    fn finish(self) -> Result<Provider, ConfError> {
        let mut p = self.provider;
        p.client_id = self.client_id.to_string();
        p.gsi = self.gsi == 1;
        if p.issuer.is_empty() {
            return Err(ConfError::invalid("has no \"issuer\""));
        }
        if p.client_id.is_empty() {
            return Err(ConfError::invalid("has no \"client_id\""));
        }
        if !p.code_flow() && !p.gsi {
            return Err(ConfError::invalid(
                "needs \"client_secret_file\" (authorization code flow) or \"gsi on\" (Google \
                 Identity Services)",
            ));
        }
        if p.display_name.is_empty() {
            p.display_name = if p.issuer == GOOGLE_ISSUER {
                "Google".to_owned()
            } else {
                let mut n = p.name.clone();
                if let Some(first) = n.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                n
            };
        }
        Ok(p)
    }
}

ngx_entry! {
    /// `gpt_auth_provider NAME { ... }` (http level). Errors found once the block is read are
    /// worded `"gpt_auth_provider" "NAME" reason`.
    pub block_directive fn provider(cf, mcf: MainConf) {
        let name = cf.arg_strings().into_iter().next().unwrap_or_default();
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfError::invalid(format_args!("directive invalid name \"{name}\"")));
        }
        if mcf.providers.iter().any(|p| p.name == name) {
            return Err(ConfError::invalid(format_args!("directive \"{name}\" is duplicate")));
        }
        let mut block =
            Block { provider: Provider::new(&name), client_id: ngx_str_t::default(), gsi: FLAG_UNSET };
        // SAFETY: the table is only read (nginx's slot setters take `*mut ngx_command_t` but
        // do not write through it).
        let table = unsafe { &*core::ptr::addr_of!(BLOCK_COMMANDS) };
        if !parse_block(cf, "gpt_auth_provider", table, &mut block) {
            return Err(ConfError::Logged);
        }
        let p = block.finish().map_err(|e| ConfError::invalid(format_args!("\"{name}\" {e}")))?;
        mcf.providers.push(Rc::new(p));
        Ok(())
    }
}

const fn field(
    name: &'static core::ffi::CStr,
    args: u32,
    set: crate::ngx::conf::DirectiveHandler,
) -> ngx_command_t {
    command(name, args, set, 0, 0)
}

/// The directives of a `gpt_auth_provider` block.
static mut BLOCK_COMMANDS: [ngx_command_t; 17] = [
    field(c"issuer", NGX_CONF_TAKE1, issuer),
    command(
        c"client_id",
        NGX_CONF_TAKE1,
        nginx_sys::ngx_conf_set_str_slot,
        0,
        offset_of!(Block, client_id),
    ),
    field(c"client_secret_file", NGX_CONF_TAKE1, client_secret_file),
    field(c"redirect_uri", NGX_CONF_TAKE1, redirect_uri),
    field(c"scope", NGX_CONF_1MORE, scope),
    field(c"authorization_endpoint", NGX_CONF_TAKE1, authorization_endpoint),
    field(c"token_endpoint", NGX_CONF_TAKE1, token_endpoint),
    field(c"jwks_uri", NGX_CONF_TAKE1, jwks_uri),
    field(c"jwks_file", NGX_CONF_TAKE1, jwks_file),
    field(c"token_endpoint_auth", NGX_CONF_TAKE1, token_endpoint_auth),
    field(c"hosted_domain", NGX_CONF_1MORE, hosted_domain),
    field(c"leeway", NGX_CONF_TAKE1, leeway),
    command(c"gsi", NGX_CONF_FLAG, nginx_sys::ngx_conf_set_flag_slot, 0, offset_of!(Block, gsi)),
    field(c"extra_auth_args", NGX_CONF_TAKE1, extra_auth_args),
    field(c"fetch_location", NGX_CONF_TAKE1, fetch_location),
    field(c"display_name", NGX_CONF_1MORE, display_name),
    ngx_command_t::empty(),
];

/// The first argument.
fn arg(cf: &nginx_sys::ngx_conf_t) -> String {
    cf.arg_strings().into_iter().next().unwrap_or_default()
}

fn absolute_url(value: &str) -> Result<String, ConfError> {
    let lower = value.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || value.contains(' ') {
        return Err(ConfError::invalid(format_args!("\"{value}\" is not an absolute http(s) URL")));
    }
    Ok(value.to_owned())
}

fn set_once(slot: &mut String, value: &str) -> Result<(), ConfError> {
    if !slot.is_empty() {
        return Err(ConfError::Duplicate);
    }
    if value.is_empty() {
        return Err(ConfError::invalid("must not be empty"));
    }
    *slot = value.to_owned();
    Ok(())
}

fn set_url_once(slot: &mut Option<String>, value: &str) -> Result<(), ConfError> {
    let url = absolute_url(value)?;
    super::directives::set_once(slot, url)
}

ngx_entry! {
    /// `issuer URL`: exactly as the provider writes it (some, like Auth0, end in "/").
    block_directive fn issuer(cf, b: Block) {
        let v = absolute_url(&arg(cf))?;
        set_once(&mut b.provider.issuer, &v)
    }
}

ngx_entry! {
    /// `client_secret_file FILE`: the secret on one line.
    block_directive fn client_secret_file(cf, b: Block) {
        let (path, data) = read_conf_file(cf, arg(cf).as_bytes())?;
        let secret = String::from_utf8(data)
            .map_err(|_| ConfError::invalid(format_args!("\"{path}\" is not text")))?
            .trim()
            .to_owned();
        if secret.is_empty() || secret.contains(['\r', '\n']) {
            return Err(ConfError::invalid(format_args!(
                "\"{path}\" must hold the client secret on one line"
            )));
        }
        super::directives::set_once(&mut b.provider.client_secret, secret)
    }
}

ngx_entry! {
    /// `redirect_uri URL | /path`
    block_directive fn redirect_uri(cf, b: Block) {
        let v = arg(cf);
        if !v.starts_with('/') {
            absolute_url(&v)?;
        }
        b.provider.redirect_uri = v;
        Ok(())
    }
}

ngx_entry! {
    /// `scope SCOPE ...` (must include `openid`)
    block_directive fn scope(cf, b: Block) {
        let v = cf.arg_strings().join(" ");
        if !v.split_whitespace().any(|s| s == "openid") {
            return Err(ConfError::invalid(format_args!("\"{v}\" must include \"openid\"")));
        }
        b.provider.scope = v;
        Ok(())
    }
}

ngx_entry! {
    block_directive fn authorization_endpoint(cf, b: Block) {
        set_url_once(&mut b.provider.authorization_endpoint, &arg(cf))
    }
}

ngx_entry! {
    block_directive fn token_endpoint(cf, b: Block) {
        set_url_once(&mut b.provider.token_endpoint, &arg(cf))
    }
}

ngx_entry! {
    block_directive fn jwks_uri(cf, b: Block) {
        set_url_once(&mut b.provider.jwks_uri, &arg(cf))
    }
}

ngx_entry! {
    /// `jwks_file FILE`: a local key set instead of fetching one.
    block_directive fn jwks_file(cf, b: Block) {
        if b.provider.jwks_file.is_some() {
            return Err(ConfError::Duplicate);
        }
        let (path, data) = read_conf_file(cf, arg(cf).as_bytes())?;
        let jwks =
            Jwks::parse(&data).map_err(|e| ConfError::invalid(format_args!("\"{path}\": {e}")))?;
        b.provider.jwks_file = Some(Rc::new(jwks));
        Ok(())
    }
}

ngx_entry! {
    block_directive fn token_endpoint_auth(cf, b: Block) {
        b.provider.token_auth = match arg(cf).as_str() {
            "client_secret_basic" => TokenAuth::ClientSecretBasic,
            "client_secret_post" => TokenAuth::ClientSecretPost,
            v => {
                return Err(ConfError::invalid(format_args!(
                    "invalid value \"{v}\", it must be \"client_secret_basic\" or \
                     \"client_secret_post\""
                )))
            }
        };
        Ok(())
    }
}

ngx_entry! {
    /// `hosted_domain DOMAIN ...`: Google Workspace domains accepted (the `hd` claim).
    block_directive fn hosted_domain(cf, b: Block) {
        for d in cf.arg_strings() {
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            {
                return Err(ConfError::invalid(format_args!("invalid domain \"{d}\"")));
            }
            b.provider.hosted_domains.push(d.to_ascii_lowercase());
        }
        Ok(())
    }
}

ngx_entry! {
    block_directive fn leeway(cf, b: Block) {
        let v = arg(cf);
        b.provider.leeway = duration::parse_seconds(&v)
            .map_err(|e| ConfError::invalid(format_args!("invalid time \"{v}\": {e}")))?;
        Ok(())
    }
}

ngx_entry! {
    block_directive fn extra_auth_args(cf, b: Block) {
        let v = arg(cf);
        if v.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#') {
            return Err(ConfError::invalid(format_args!("invalid query string \"{v}\"")));
        }
        b.provider.extra_auth_args = v.trim_start_matches(['?', '&']).to_owned();
        Ok(())
    }
}

ngx_entry! {
    block_directive fn fetch_location(cf, b: Block) {
        let v = arg(cf);
        if !v.starts_with('/') {
            return Err(ConfError::invalid(format_args!(
                "\"{v}\" must be a location path starting with \"/\""
            )));
        }
        b.provider.fetch_location = v;
        Ok(())
    }
}

ngx_entry! {
    block_directive fn display_name(cf, b: Block) {
        b.provider.display_name = cf.arg_strings().join(" ");
        Ok(())
    }
}
