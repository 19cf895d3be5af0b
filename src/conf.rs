//! Configuration structures, inheritance (merge) and the checks `nginx -t` runs on them.

use core::cell::RefCell;
use std::rc::Rc;

use gpt_auth_core::cookie_header::Finder;
use gpt_auth_core::keys::KeyRing;
use gpt_auth_core::session_cache::VerifiedCache;
use gpt_auth_core::set_cookie::{Attributes, SameSite};
use nginx_sys::{ngx_conf_t, ngx_flag_t, ngx_http_complex_value_t, NGX_CONF_UNSET};

use crate::provider::Provider;
use crate::quota::{QuotaConf, Zone};
use crate::watch::WatchedAllowlist;

pub const DEFAULT_COOKIE_NAME: &str = "gpt_auth";
pub const DEFAULT_COOKIE_PATH: &str = "/";
pub const DEFAULT_MAX_AGE: u64 = 7 * 86400;

const FLAG_UNSET: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;
/// NGX_CONF_UNSET_PTR, as nginx's own slots expect it.
pub const PTR_UNSET: *mut ngx_http_complex_value_t = usize::MAX as *mut ngx_http_complex_value_t;

/// A key file as loaded at configuration time, with each worker's cache of the session cookies
/// it verified.
#[derive(Debug)]
pub struct KeyFile {
    pub path: String,
    pub ring: KeyRing,
    pub cache: RefCell<VerifiedCache>,
}

/// http-level state shared by all locations: files loaded once per configuration, however many
/// locations name them, and the providers.
#[derive(Debug, Default)]
pub struct MainConf {
    pub key_files: Vec<Rc<KeyFile>>,
    pub allowlists: Vec<Rc<WatchedAllowlist>>,
    pub providers: Vec<Rc<Provider>>,
    pub quota_zones: Vec<Rc<Zone>>,
}

impl MainConf {
    pub fn provider(&self, name: &str) -> Option<&Rc<Provider>> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn quota_zone(&self, name: &str) -> Option<&Rc<Zone>> {
        self.quota_zones.iter().find(|z| z.name == name)
    }
}

/// Where a directive was written, to point `nginx -t` errors at it.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub file: String,
    pub line: usize,
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
    /// `gpt_auth_quota_report ZONE`
    QuotaReport(String),
}

/// Location-level configuration (also holds http- and server-level values, inherited down).
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
    /// `PTR_UNSET` until set; NULL for `off`.
    pub login_url: *mut ngx_http_complex_value_t,
    /// `Some(None)` for `off`.
    pub allowlist: Option<Option<Rc<WatchedAllowlist>>>,
    pub logout_url: Option<String>,
    pub return_hosts: Option<Vec<String>>,
    pub default_return_url: Option<String>,
    pub login_page: Option<Rc<String>>,
    pub not_allowed_page: Option<Rc<String>>,
    pub error_page: Option<Rc<String>>,
    pub quota_page: Option<Rc<String>>,
    /// `Some(None)` for `off`.
    pub quota: Option<Option<Rc<QuotaConf>>>,
    pub handler: Handler,
    pub handler_source: Source,
    /// `gpt_auth_login`'s providers, resolved when the configuration is merged.
    pub login_providers: Vec<Rc<Provider>>,
    /// The search for the session cookie in `Cookie` headers, built when merged. Boxed: it
    /// holds SIMD vectors, more strictly aligned than the nginx pool this struct lives in.
    pub cookie_finder: Option<Box<Finder>>,
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
            login_url: PTR_UNSET,
            allowlist: None,
            logout_url: None,
            return_hosts: None,
            default_return_url: None,
            login_page: None,
            not_allowed_page: None,
            error_page: None,
            quota_page: None,
            quota: None,
            handler: Handler::None,
            handler_source: Source::default(),
            login_providers: Vec::new(),
            cookie_finder: None,
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
    /// Inherits unset values from the enclosing level and applies defaults. The content handler
    /// is not inherited.
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
        if self.login_url == PTR_UNSET {
            self.login_url =
                if prev.login_url == PTR_UNSET { core::ptr::null_mut() } else { prev.login_url };
        }
        inherit(&mut self.allowlist, &prev.allowlist);
        inherit(&mut self.logout_url, &prev.logout_url);
        inherit(&mut self.return_hosts, &prev.return_hosts);
        inherit(&mut self.default_return_url, &prev.default_return_url);
        inherit(&mut self.login_page, &prev.login_page);
        inherit(&mut self.not_allowed_page, &prev.not_allowed_page);
        inherit(&mut self.error_page, &prev.error_page);
        inherit(&mut self.quota_page, &prev.quota_page);
        inherit(&mut self.quota, &prev.quota);
        self.cookie_finder = Some(Box::new(Finder::new(self.cookie_name())));
    }

    /// Checks a merged configuration and resolves provider names; logs and returns `Err` for
    /// `nginx -t`.
    pub fn validate(&mut self, cf: &ngx_conf_t, main: &MainConf) -> Result<(), ()> {
        if self.enabled() && self.keys.is_none() {
            emerg!(
                cf,
                "\"gpt_auth on\" in {}:{} needs \"gpt_auth_key_file\" (at the same or an \
                 enclosing level) to verify session cookies",
                self.enable_source.file,
                self.enable_source.line
            );
            return Err(());
        }
        if let Some(Some(q)) = &self.quota {
            if q.zone.get().is_none() {
                let Some(zone) = main.quota_zone(&q.zone_name) else {
                    emerg!(
                        cf,
                        "\"gpt_auth_quota\" in {}:{}: no \"gpt_auth_quota_zone zone={}:...\" is \
                         defined",
                        q.source.file,
                        q.source.line,
                        q.zone_name
                    );
                    return Err(());
                };
                let _ = q.zone.set(zone.clone());
            }
        }
        let directive = match &self.handler {
            Handler::None => return Ok(()),
            Handler::Login(_) => "gpt_auth_login",
            Handler::Callback => "gpt_auth_callback",
            Handler::Logout => "gpt_auth_logout",
            Handler::QuotaReport(_) => "gpt_auth_quota_report",
        };
        let src = &self.handler_source;
        if let Handler::QuotaReport(name) = &self.handler {
            if main.quota_zone(name).is_none() {
                emerg!(
                    cf,
                    "\"gpt_auth_quota_report\" in {}:{}: no \"gpt_auth_quota_zone zone={}:...\" is \
                     defined",
                    src.file,
                    src.line,
                    name
                );
                return Err(());
            }
            return Ok(());
        }
        if self.handler != Handler::Logout && self.keys.is_none() {
            emerg!(
                cf,
                "\"{}\" in {}:{} needs \"gpt_auth_key_file\" (at the same or an enclosing level) \
                 to sign cookies",
                directive,
                src.file,
                src.line
            );
            return Err(());
        }
        if self.handler == Handler::Callback && main.providers.is_empty() {
            emerg!(
                cf,
                "\"gpt_auth_callback\" in {}:{} needs a \"gpt_auth_provider\" block",
                src.file,
                src.line
            );
            return Err(());
        }
        if let Handler::Login(names) = &self.handler {
            let mut resolved = Vec::new();
            for name in names {
                let Some(p) = main.provider(name) else {
                    emerg!(
                        cf,
                        "\"gpt_auth_login\" in {}:{}: no \"gpt_auth_provider {}\" is defined",
                        src.file,
                        src.line,
                        name
                    );
                    return Err(());
                };
                resolved.push(p.clone());
            }
            self.login_providers = resolved;
        }
        Ok(())
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
        if self.login_url == PTR_UNSET {
            return None;
        }
        // SAFETY: NULL or a complex value compiled into the configuration pool.
        unsafe { self.login_url.as_ref() }
    }

    pub fn allowlist(&self) -> Option<&WatchedAllowlist> {
        self.allowlist.as_ref().and_then(|a| a.as_deref())
    }

    pub fn quota(&self) -> Option<&QuotaConf> {
        self.quota.as_ref().and_then(|q| q.as_deref())
    }
}

// Configuration structures live in nginx pools, which align only to NGX_ALIGNMENT: a field with
// a stricter alignment (SIMD types) must be boxed. Checked at compile time.
const _: () = assert!(core::mem::align_of::<LocConf>() <= nginx_sys::NGX_ALIGNMENT);
const _: () = assert!(core::mem::align_of::<MainConf>() <= nginx_sys::NGX_ALIGNMENT);
