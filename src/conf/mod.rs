//! What the operator configured: the module's http-level and location-level structures, how a
//! location inherits from the levels above it (merge), and the checks `nginx -t` runs on the
//! merged result. The directive handlers that fill these structures are in
//! [`directives`] (general ones), [`provider`] (the `gpt_auth_provider` block), `login` and
//! `quota` (the feature directives); the command table that maps names to handlers is
//! `crate::directives`.

use core::cell::RefCell;
use std::rc::Rc;

use gpt_auth_core::cookie_header::Finder;
use gpt_auth_core::keys::KeyRing;
use gpt_auth_core::session_cache::{CookieName, VerifiedCache};
use gpt_auth_core::set_cookie::{Attributes, SameSite};
use nginx_sys::{ngx_conf_t, ngx_flag_t, ngx_http_complex_value_t, NGX_CONF_UNSET};

use crate::files::{WatchedAllowlist, WatchedRevocations};
use crate::ngx::conf::ComplexValueSlot;
use crate::ngx::{ConfError, Source};

pub mod directives;
pub mod provider;
pub mod quota;
pub mod usage;
mod validate;

pub use provider::Provider;
pub use quota::{QuotaConf, Zone};

pub const DEFAULT_COOKIE_NAME: &str = "gpt_auth";
pub const DEFAULT_COOKIE_PATH: &str = "/";
pub const DEFAULT_MAX_AGE: u64 = 7 * 86400;

pub(crate) const FLAG_UNSET: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;

/// A key file as loaded at configuration time, with each worker's cache of the session cookies
/// it verified.
#[derive(Debug)]
pub struct KeyFile {
    pub path: String,
    pub ring: KeyRing,
    pub cache: RefCell<VerifiedCache>,
}

/// http-level state shared by all locations: files loaded once per configuration, however many
/// locations name them, the providers and the quota zones.
#[derive(Debug, Default)]
pub struct MainConf {
    pub key_files: Vec<Rc<KeyFile>>,
    pub allowlists: Vec<Rc<WatchedAllowlist>>,
    pub revocation_lists: Vec<Rc<WatchedRevocations>>,
    pub providers: Vec<Rc<Provider>>,
    pub quota_zones: Vec<Rc<Zone>>,
    /// Some location fronts an AI API (`gpt_auth_api`): only then are the answer filters and
    /// the settling log handler installed, so that other configurations pay nothing for them.
    pub uses_ai: core::cell::Cell<bool>,
}

impl MainConf {
    pub fn provider(&self, name: &str) -> Option<&Rc<Provider>> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn quota_zone(&self, name: &str) -> Option<&Rc<Zone>> {
        self.quota_zones.iter().find(|z| z.name == name)
    }
}

/// Which content handler a location runs (not inherited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Handler {
    #[default]
    None,
    /// `gpt_auth_login NAME ...`
    Login(Vec<String>),
    /// `gpt_auth_callback`
    Callback,
    /// `gpt_auth_logout`
    Logout,
    /// `gpt_auth_quota_report zone=NAME`
    QuotaReport(String),
    /// `gpt_auth_quota_admin zone=NAME`
    QuotaAdmin(String),
    /// `gpt_auth_api_keys zone=NAME`
    ApiKeys(String),
}

impl Handler {
    pub fn directive(&self) -> &'static str {
        match self {
            Handler::None => "",
            Handler::Login(_) => "gpt_auth_login",
            Handler::Callback => "gpt_auth_callback",
            Handler::Logout => "gpt_auth_logout",
            Handler::QuotaReport(_) => "gpt_auth_quota_report",
            Handler::QuotaAdmin(_) => "gpt_auth_quota_admin",
            Handler::ApiKeys(_) => "gpt_auth_api_keys",
        }
    }
}

/// How the session cookie is found and checked, built once per location when merged.
#[derive(Debug)]
pub struct SessionCookie {
    /// The search for the cookie in `Cookie` headers.
    pub finder: Finder,
    /// The name, with the hash the verified-session cache keys it by.
    pub name: CookieName,
}

/// Location-level configuration (also holds http- and server-level values, inherited down).
/// Keys one user may have unless `gpt_auth_api_keys max=` says otherwise.
pub const DEFAULT_API_KEYS_MAX: usize = 10;

#[derive(Debug)]
pub struct LocConf {
    pub enable: ngx_flag_t,
    pub enable_source: Source,
    pub keys: Option<Rc<KeyFile>>,
    pub cookie_name: Option<String>,
    /// `Some("")` means `off` (a host-only cookie).
    pub cookie_domain: Option<String>,
    pub cookie_path: Option<String>,
    pub cookie_max_age: Option<u64>,
    pub cookie_samesite: Option<SameSite>,
    pub cookie_secure: ngx_flag_t,
    /// `gpt_auth_cache_control on | off` (nginx's flag slot).
    pub cache_control: ngx_flag_t,
    /// Filled by nginx's complex-value slot setter.
    pub login_url: ComplexValueSlot,
    /// `Some(None)` for `off`.
    pub allowlist: Option<Option<Rc<WatchedAllowlist>>>,
    /// `gpt_auth_revoked`; `Some(None)` for `off`.
    pub revoked: Option<Option<Rc<WatchedRevocations>>>,
    pub logout_url: Option<String>,
    pub return_hosts: Option<Vec<String>>,
    pub default_return_url: Option<String>,
    pub login_page: Option<Rc<String>>,
    pub not_allowed_page: Option<Rc<String>>,
    pub error_page: Option<Rc<String>>,
    pub quota_page: Option<Rc<String>>,
    /// `Some(None)` for `off`.
    pub quota: Option<Option<Rc<QuotaConf>>>,
    /// `gpt_auth_bearer zone=NAME | off`: personal API keys accepted, recorded in this zone.
    pub bearer: Option<Option<String>>,
    /// `gpt_auth_api_keys ... max=N`: keys one user may have.
    pub api_keys_max: usize,
    /// AI API control (`gpt_auth_api`, `gpt_auth_models`, ...).
    pub usage: usage::UsageConf,
    pub handler: Handler,
    pub handler_source: Source,
    /// `gpt_auth_login`'s providers, resolved when the configuration is merged.
    pub login_providers: Vec<Rc<Provider>>,
    /// Built when merged. Boxed: the finder holds SIMD vectors, more strictly aligned than the
    /// nginx pool this struct lives in.
    pub session_cookie: Option<Box<SessionCookie>>,
    /// The "plain http with Secure cookies" error was logged (once per worker and location).
    pub insecure_site_logged: core::cell::Cell<bool>,
}

impl Default for LocConf {
    fn default() -> LocConf {
        LocConf {
            enable: FLAG_UNSET,
            enable_source: Source::default(),
            keys: None,
            cookie_name: None,
            cookie_domain: None,
            cookie_path: None,
            cookie_max_age: None,
            cookie_samesite: None,
            cookie_secure: FLAG_UNSET,
            cache_control: FLAG_UNSET,
            login_url: ComplexValueSlot::UNSET,
            allowlist: None,
            revoked: None,
            logout_url: None,
            return_hosts: None,
            default_return_url: None,
            login_page: None,
            not_allowed_page: None,
            error_page: None,
            quota_page: None,
            quota: None,
            bearer: None,
            api_keys_max: DEFAULT_API_KEYS_MAX,
            usage: usage::UsageConf::default(),
            handler: Handler::None,
            handler_source: Source::default(),
            login_providers: Vec::new(),
            session_cookie: None,
            insecure_site_logged: core::cell::Cell::new(false),
        }
    }
}

impl ngx::http::Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), ngx::http::MergeConfigError> {
        self.inherit_from(prev);
        Ok(())
    }
}

fn inherit<T: Clone>(this: &mut Option<T>, prev: &Option<T>) {
    if this.is_none() {
        this.clone_from(prev);
    }
}

fn inherit_flag(this: &mut ngx_flag_t, prev: ngx_flag_t, default: bool) {
    if *this == FLAG_UNSET {
        *this = if prev == FLAG_UNSET { ngx_flag_t::from(default) } else { prev };
    }
}

impl LocConf {
    /// Inherits unset values from the enclosing level and applies defaults (nginx's merge). The
    /// content handler is not inherited.
    pub fn inherit_from(&mut self, prev: &LocConf) {
        if self.enable == FLAG_UNSET {
            self.enable_source = prev.enable_source.clone();
        }
        inherit_flag(&mut self.enable, prev.enable, false);
        inherit(&mut self.keys, &prev.keys);
        inherit(&mut self.cookie_name, &prev.cookie_name);
        inherit(&mut self.cookie_domain, &prev.cookie_domain);
        inherit(&mut self.cookie_path, &prev.cookie_path);
        inherit(&mut self.cookie_max_age, &prev.cookie_max_age);
        inherit(&mut self.cookie_samesite, &prev.cookie_samesite);
        inherit_flag(&mut self.cookie_secure, prev.cookie_secure, true);
        inherit_flag(&mut self.cache_control, prev.cache_control, true);
        if self.login_url.is_unset() {
            self.login_url =
                if prev.login_url.is_unset() { ComplexValueSlot::OFF } else { prev.login_url };
        }
        inherit(&mut self.allowlist, &prev.allowlist);
        inherit(&mut self.revoked, &prev.revoked);
        inherit(&mut self.logout_url, &prev.logout_url);
        inherit(&mut self.return_hosts, &prev.return_hosts);
        inherit(&mut self.default_return_url, &prev.default_return_url);
        inherit(&mut self.login_page, &prev.login_page);
        inherit(&mut self.not_allowed_page, &prev.not_allowed_page);
        inherit(&mut self.error_page, &prev.error_page);
        inherit(&mut self.quota_page, &prev.quota_page);
        inherit(&mut self.quota, &prev.quota);
        inherit(&mut self.bearer, &prev.bearer);
        self.usage.inherit_from(&prev.usage);
        let name = self.cookie_name();
        self.session_cookie = Some(Box::new(SessionCookie {
            finder: Finder::new(name),
            name: CookieName::new(name),
        }));
    }

    /// Checks a merged configuration for `nginx -t` and resolves the names it refers to.
    pub fn validate(&mut self, cf: &ngx_conf_t, main: &MainConf) -> Result<(), ConfError> {
        if self.usage.enabled() {
            main.uses_ai.set(true);
        }
        validate::location(self, cf, main)
    }

    pub fn enabled(&self) -> bool {
        self.enable == 1
    }

    pub fn cookie_name(&self) -> &str {
        self.cookie_name.as_deref().unwrap_or(DEFAULT_COOKIE_NAME)
    }

    pub fn max_age(&self) -> u64 {
        self.cookie_max_age.unwrap_or(DEFAULT_MAX_AGE)
    }

    pub fn secure(&self) -> bool {
        self.cookie_secure != 0
    }

    pub fn cookie_domain(&self) -> Option<&str> {
        self.cookie_domain.as_deref().filter(|d| !d.is_empty())
    }

    /// Attributes of the session cookie.
    pub fn session_cookie_attrs(&self) -> Attributes<'_> {
        Attributes {
            path: self.cookie_path.as_deref().unwrap_or(DEFAULT_COOKIE_PATH),
            domain: self.cookie_domain(),
            secure: self.secure(),
            same_site: self.cookie_samesite.unwrap_or(SameSite::Lax),
        }
    }

    /// Attributes of a login-state cookie: host-only, for the whole login site (so the login
    /// page sees earlier ones and can clear surplus ones). The callback is reached by a
    /// cross-site top-level redirect (GET: `Lax` is sent) or, for Google Identity Services, a
    /// cross-site POST (`None`, which browsers accept only with `Secure`).
    pub fn state_cookie_attrs(&self, cross_site_post: bool) -> Attributes<'static> {
        let same_site =
            if cross_site_post && self.secure() { SameSite::None } else { SameSite::Lax };
        Attributes { path: "/", domain: None, secure: self.secure(), same_site }
    }

    pub fn login_url(&self) -> Option<&ngx_http_complex_value_t> {
        self.login_url.get()
    }

    pub fn allowlist(&self) -> Option<&WatchedAllowlist> {
        self.allowlist.as_ref().and_then(|a| a.as_deref())
    }

    pub fn revoked(&self) -> Option<&WatchedRevocations> {
        self.revoked.as_ref().and_then(|a| a.as_deref())
    }

    /// The zone whose personal API keys this location accepts.
    pub fn bearer_zone(&self) -> Option<&str> {
        self.bearer.as_ref().and_then(|b| b.as_deref())
    }

    pub fn quota(&self) -> Option<&QuotaConf> {
        self.quota.as_ref().and_then(|q| q.as_deref())
    }

    /// The AI API's error format of a request to `path`, where the location fronts one.
    pub fn api_flavor(&self, path: &[u8]) -> Option<usage::ApiFlavor> {
        self.usage.flavor(path)
    }
}

// Configuration structures live in nginx pools, which align only to NGX_ALIGNMENT: a field with
// a stricter alignment (SIMD types) must be boxed. Checked at compile time.
const _: () = assert!(core::mem::align_of::<LocConf>() <= nginx_sys::NGX_ALIGNMENT);
const _: () = assert!(core::mem::align_of::<MainConf>() <= nginx_sys::NGX_ALIGNMENT);
