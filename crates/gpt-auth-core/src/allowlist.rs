//! Allowlist files: who may pass a location.
//!
//! One entry per line: an address (`alice@example.com`) or a whole domain (`@example.com`);
//! either after `!` is a deny entry (`!bob@example.com`), which refuses whatever the other
//! entries say: deny entries are checked first. Matching is ASCII case-insensitive. `#` starts a comment at the beginning of a line or after
//! whitespace (an address may itself contain `#`). Blank lines are ignored. A domain entry admits
//! that exact domain, not its subdomains.

use std::collections::HashSet;

use crate::session::MAX_EMAIL_LEN;

/// Why an allowlist file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AllowlistError {
    pub line: usize,
    pub reason: &'static str,
}

/// The sets' hasher: randomly seeded per process, and much cheaper than SipHash on the per-request
/// lookup (the entries come from the operator's file, the looked-up address from a verified
/// session).
pub(crate) type Hasher = foldhash::fast::RandomState;

/// A parsed allowlist (entries lower-cased, as bytes: lookups need no UTF-8 check).
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    addresses: HashSet<Box<[u8]>, Hasher>,
    domains: HashSet<Box<[u8]>, Hasher>,
    /// Deny entries (`!...`): refused before the entries above are looked at.
    denied_addresses: HashSet<Box<[u8]>, Hasher>,
    denied_domains: HashSet<Box<[u8]>, Hasher>,
}

impl Allowlist {
    /// Parses an allowlist file. Any invalid line refuses the whole file, so that a typo never
    /// silently narrows or widens who gets in.
    pub fn parse(text: &str) -> Result<Allowlist, AllowlistError> {
        let mut list = Allowlist::default();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let entry = strip_comment(raw).trim();
            if entry.is_empty() {
                continue;
            }
            let err = |reason| AllowlistError { line, reason };
            if entry.contains(char::is_whitespace) {
                return Err(err("an entry must not contain spaces"));
            }
            if entry.len() > MAX_EMAIL_LEN {
                return Err(err("entry too long"));
            }
            let entry = entry.to_ascii_lowercase();
            let (deny, entry) = match entry.strip_prefix('!') {
                Some("") => return Err(err("nothing after '!'")),
                Some(rest) if rest.starts_with('!') => return Err(err("one '!' before an entry")),
                Some(rest) => (true, rest.to_owned()),
                None => (false, entry),
            };
            if let Some(domain) = entry.strip_prefix('@') {
                if !valid_domain(domain) {
                    return Err(err("invalid domain after '@'"));
                }
                let set = if deny { &mut list.denied_domains } else { &mut list.domains };
                set.insert(domain.as_bytes().into());
            } else {
                let Some((local, domain)) = entry.rsplit_once('@') else {
                    return Err(err("expected an address (user@domain) or a domain (@domain)"));
                };
                if local.is_empty() || !crate::session::valid_email(&entry) {
                    return Err(err("invalid address"));
                }
                if !valid_domain(domain) {
                    return Err(err("invalid domain in address"));
                }
                let set = if deny { &mut list.denied_addresses } else { &mut list.addresses };
                set.insert(entry.as_bytes().into());
            }
        }
        Ok(list)
    }

    /// Whether `email` is admitted. Never allocates.
    pub fn allows(&self, email: &str) -> bool {
        self.allows_bytes(email.as_bytes())
    }

    /// [`Allowlist::allows`] for an address as bytes (as sessions hold it).
    pub fn allows_bytes(&self, email: &[u8]) -> bool {
        let mut buf = [0u8; MAX_EMAIL_LEN];
        let Some(lower) = buf.get_mut(..email.len()) else { return false };
        lower.copy_from_slice(email);
        lower.make_ascii_lowercase();
        let domain = lower.iter().rposition(|&b| b == b'@').map(|at| &lower[at + 1..]);
        if self.denied_addresses.contains(&*lower)
            || domain.is_some_and(|d| self.denied_domains.contains(d))
        {
            return false;
        }
        self.addresses.contains(&*lower) || domain.is_some_and(|d| self.domains.contains(d))
    }

    /// Number of entries (addresses and domains).
    /// Entries, deny entries included.
    pub fn len(&self) -> usize {
        self.addresses.len()
            + self.domains.len()
            + self.denied_addresses.len()
            + self.denied_domains.len()
    }

    /// Whether no one can pass (no entries, or deny entries only).
    pub fn admits_nobody(&self) -> bool {
        self.addresses.is_empty() && self.domains.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The line without its comment: `#` at the start or after white space (an address may itself
/// contain `#`).
pub(crate) fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
            return &line[..i];
        }
    }
    line
}

/// A DNS name: dot-separated labels of letters, digits and hyphens (IDNs in punycode).
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_domains() {
        let l = Allowlist::parse(
            "# team\nalice@example.com\n\n  Bob@Example.COM  # the boss\n@corp.example\n",
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert!(l.allows("alice@example.com"));
        assert!(l.allows("ALICE@EXAMPLE.COM"));
        assert!(l.allows("bob@example.com"));
        assert!(l.allows("anyone@corp.example"));
        assert!(l.allows("Anyone@CORP.example"));
        assert!(!l.allows("carol@example.com"));
        assert!(!l.allows("x@sub.corp.example"), "domain entries do not cover subdomains");
        assert!(!l.allows("x@corp.example.evil.com"));
        assert!(!l.allows(""));
        assert!(!l.allows(&"a".repeat(300)));
    }

    #[test]
    fn deny_entries_come_first() {
        let l = Allowlist::parse(
            "@example.com\n!Bob@Example.com   # left in June\ncarol@partner.org\n!carol@partner.org\n\
             !@contractors.example\nx@contractors.example\n",
        )
        .unwrap();
        assert_eq!(l.len(), 6);
        assert!(l.allows("alice@example.com"));
        assert!(!l.allows("bob@example.com"), "a deny entry beats the domain entry");
        assert!(!l.allows("BOB@EXAMPLE.COM"));
        assert!(!l.allows("carol@partner.org"), "and an address entry");
        assert!(!l.allows("x@contractors.example"), "a denied domain beats its addresses");
        assert!(!l.admits_nobody());
        let only_deny = Allowlist::parse("!bob@example.com\n").unwrap();
        assert!(only_deny.admits_nobody());
        assert!(!only_deny.allows("alice@example.com"));
        assert_eq!(Allowlist::parse("!\n").unwrap_err().reason, "nothing after '!'");
        assert_eq!(Allowlist::parse("!bob\n").unwrap_err().line, 1);
        assert_eq!(
            Allowlist::parse("!!bob@example.com\n").unwrap_err().reason,
            "one '!' before an entry"
        );
    }

    #[test]
    fn hash_inside_address_is_not_a_comment() {
        let l = Allowlist::parse("a#b@example.com\n").unwrap();
        assert!(l.allows("a#b@example.com"));
    }

    #[test]
    fn empty_file_is_empty_list() {
        let l = Allowlist::parse("# nobody yet\n\n").unwrap();
        assert!(l.is_empty());
        assert!(!l.allows("alice@example.com"));
    }

    #[test]
    fn refuses_bad_lines() {
        for (text, line) in [
            ("alice", 1),
            ("ok@example.com\nalice example.com", 2),
            ("@", 1),
            ("@-bad.com", 1),
            ("@bad..com", 1),
            ("a@", 1),
            ("@example.com\n\n@exa_mple.com", 3),
            ("a\"b@example.com", 1),
        ] {
            assert_eq!(Allowlist::parse(text).unwrap_err().line, line, "{text:?}");
        }
    }
}
