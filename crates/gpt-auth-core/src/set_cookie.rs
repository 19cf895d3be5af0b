//! `Set-Cookie` header values for the cookies the module writes.

/// `SameSite` attribute values.
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

/// Attributes of a cookie the module sets. `HttpOnly` is always set.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub path: &'a str,
    /// `None`: a host-only cookie.
    pub domain: Option<&'a str>,
    pub secure: bool,
    pub same_site: SameSite,
}

/// `name=value; Path=..; [Domain=..;] Max-Age=..; HttpOnly; [Secure;] SameSite=..`
pub fn set(name: &str, value: &str, max_age: u64, a: &Attributes<'_>) -> String {
    let mut s = format!("{name}={value}; Path={}", a.path);
    if let Some(d) = a.domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    s.push_str(&format!("; Max-Age={max_age}; HttpOnly"));
    if a.secure {
        s.push_str("; Secure");
    }
    s.push_str("; SameSite=");
    s.push_str(a.same_site.as_str());
    s
}

/// A header that removes the cookie (same name, path and domain; empty, expired).
pub fn clear(name: &str, a: &Attributes<'_>) -> String {
    let mut s = set(name, "", 0, a);
    s.push_str("; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let a = Attributes {
            path: "/",
            domain: Some(".example.com"),
            secure: true,
            same_site: SameSite::Lax,
        };
        assert_eq!(
            set("gpt_auth", "v", 604800, &a),
            "gpt_auth=v; Path=/; Domain=.example.com; Max-Age=604800; HttpOnly; Secure; SameSite=Lax"
        );
        let b =
            Attributes { path: "/cb", domain: None, secure: false, same_site: SameSite::Strict };
        assert_eq!(
            clear("s", &b),
            "s=; Path=/cb; Max-Age=0; HttpOnly; SameSite=Strict; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(SameSite::parse(b"NONE"), Some(SameSite::None));
        assert_eq!(SameSite::parse(b"sometimes"), None);
    }
}
