//! Configuration structures, inheritance (merge) and the checks `nginx -t` runs on them.

use std::rc::Rc;

use gpt_auth_core::keys::KeyRing;
use nginx_sys::{ngx_conf_t, ngx_flag_t, ngx_http_complex_value_t, NGX_CONF_UNSET};

use crate::watch::WatchedAllowlist;

pub const DEFAULT_COOKIE_NAME: &str = "gpt_auth";
pub const DEFAULT_MAX_AGE: u64 = 7 * 86400;

const FLAG_UNSET: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;
/// NGX_CONF_UNSET_PTR, as nginx's own slots expect it.
pub const PTR_UNSET: *mut ngx_http_complex_value_t = usize::MAX as *mut ngx_http_complex_value_t;

/// A key file as loaded at configuration time.
#[derive(Debug)]
pub struct KeyFile {
    pub path: String,
    pub ring: KeyRing,
}

/// `SameSite` cookie attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn parse(s: &[u8]) -> Option<SameSite> {
        match s.to_ascii_lowercase().as_slice() {
            b"strict" => Some(SameSite::Strict),
            b"lax" => Some(SameSite::Lax),
            b"none" => Some(SameSite::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// http-level state shared by all locations: files loaded once per configuration, however many
/// locations name them.
#[derive(Debug, Default)]
pub struct MainConf {
    pub key_files: Vec<Rc<KeyFile>>,
    pub allowlists: Vec<Rc<WatchedAllowlist>>,
}

/// Where `gpt_auth on` was written, to point `nginx -t` errors at it.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub file: String,
    pub line: usize,
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
    /// Inherits unset values from the enclosing level and applies defaults.
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
    }

    /// Checks a merged configuration; logs and returns `Err` for `nginx -t`.
    pub fn validate(&self, cf: &ngx_conf_t) -> Result<(), ()> {
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
}
