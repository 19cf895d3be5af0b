//! Scanning `Cookie` request headers (RFC 6265 section 5.4 syntax, parsed leniently the way
//! browsers send it) without allocating.

/// Iterates over the `name=value` pairs of one `Cookie` header value.
///
/// Pairs are separated by `;`; optional whitespace around names and values is dropped, a value in
/// double quotes is unquoted, and a pair without `=` is skipped.
pub fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|&b| b == b';').filter_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let name = trim(&pair[..eq]);
        let mut value = trim(&pair[eq + 1..]);
        if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
            value = &value[1..value.len() - 1];
        }
        (!name.is_empty()).then_some((name, value))
    })
}

/// Iterates over the values of every cookie called `name` in one header value, in order.
/// Cookie names are case-sensitive.
pub fn values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    pairs(header).filter(move |(n, _)| *n == name).map(|(_, v)| v)
}

/// A fast search for the values of one cookie name, built once (per configured cookie name) and
/// used on every request: a SIMD substring search for the name instead of splitting every pair.
/// It finds exactly what [`values`] finds.
///
/// On x86-64 with AVX2 the searches call memchr's AVX2 routines directly: the crate's generic
/// entry points pick an implementation through a function pointer on each call, which costs
/// about a fifth of the whole search of a typical `Cookie` header (this runs on every request).
#[derive(Debug, Clone)]
pub struct Finder {
    needle: memchr::memmem::Finder<'static>,
    /// Boxed: its vectors want a 32-byte alignment that nginx's configuration pool, where the
    /// finder lives, does not give.
    #[cfg(target_arch = "x86_64")]
    avx2: Option<Box<Avx2>>,
    name_len: usize,
}

/// The AVX2 searchers: the name, and the `;` that ends a value.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone)]
struct Avx2 {
    name: memchr::arch::x86_64::avx2::packedpair::Finder,
    semicolon: memchr::arch::x86_64::avx2::memchr::One,
}

impl Finder {
    pub fn new(name: &str) -> Finder {
        Finder {
            needle: memchr::memmem::Finder::new(name.as_bytes()).into_owned(),
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::packedpair::Finder::new(name.as_bytes())
                .zip(memchr::arch::x86_64::avx2::memchr::One::new(b';'))
                .map(|(name, semicolon)| Box::new(Avx2 { name, semicolon })),
            name_len: name.len(),
        }
    }

    #[inline]
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = &self.avx2 {
            if haystack.len() >= f.name.min_haystack_len() {
                return f.name.find(haystack, self.needle.needle());
            }
        }
        self.needle.find(haystack)
    }

    /// The first `;` of a cookie value and what follows it.
    #[inline]
    fn find_semicolon(&self, h: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = &self.avx2 {
            return f.semicolon.find(h);
        }
        memchr::memchr(b';', h)
    }

    /// The values of the cookie in one header value, in order.
    pub fn values<'h>(&'h self, header: &'h [u8]) -> impl Iterator<Item = &'h [u8]> + 'h {
        let mut from = 0;
        core::iter::from_fn(move || {
            let (value, next) = self.next_value(header, from)?;
            from = next;
            Some(value)
        })
    }

    /// The first value of the cookie at or after byte `from` of `header`, and where to look for
    /// the next one. A plain loop rather than an iterator adapter: this runs on every request.
    pub fn next_value<'h>(&self, header: &'h [u8], from: usize) -> Option<(&'h [u8], usize)> {
        let mut pos = from;
        loop {
            let at = pos + self.find(header.get(pos..)?)?;
            pos = at + 1;
            // Only a pair's name: nothing but white space between it and the previous `;`.
            let before = &header[..at];
            let start = before.iter().rposition(|&b| b != b' ' && b != b'\t');
            if start.is_some_and(|i| before[i] != b';') {
                continue;
            }
            // ... and then nothing but white space up to its `=`.
            let after = &header[at + self.name_len..];
            let eq = after.iter().position(|&b| b != b' ' && b != b'\t')?;
            if after[eq] != b'=' {
                continue;
            }
            let value_at = at + self.name_len + eq + 1;
            let rest = &header[value_at..];
            let end = self.find_semicolon(rest).unwrap_or(rest.len());
            let mut value = trim(&rest[..end]);
            if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                value = &value[1..value.len() - 1];
            }
            return Some((value, value_at + end));
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ws(b)).map_or(start, |p| p + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect<'a>(h: &'a str, n: &'a str) -> Vec<&'a str> {
        values(h.as_bytes(), n.as_bytes()).map(|v| core::str::from_utf8(v).unwrap()).collect()
    }

    #[test]
    fn finds_values() {
        assert_eq!(collect("a=1; gpt_auth=xyz; b=2", "gpt_auth"), ["xyz"]);
        assert_eq!(collect("gpt_auth=one;gpt_auth=two", "gpt_auth"), ["one", "two"]);
        assert_eq!(collect("  gpt_auth = \"q.v\" ;", "gpt_auth"), ["q.v"]);
        assert_eq!(collect("gpt_auth=", "gpt_auth"), [""]);
        assert_eq!(collect("x=a=b", "x"), ["a=b"]);
    }

    #[test]
    fn finder_matches_values() {
        let f = Finder::new("gpt_auth");
        for h in [
            "a=1; gpt_auth=xyz; b=2",
            "gpt_auth=one;gpt_auth=two",
            "  gpt_auth = \"q.v\" ;",
            "x=gpt_auth=abc",
            "c=d gpt_auth=x",
            "GPT_AUTH=x; gpt_auth_state_x=y",
            "gpt_auth=",
            "\tgpt_auth=\t1\t;\tgpt_auth=2",
        ] {
            let a: Vec<&[u8]> = values(h.as_bytes(), b"gpt_auth").collect();
            let b: Vec<&[u8]> = f.values(h.as_bytes()).collect();
            assert_eq!(a, b, "{h:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_finder_equals_values(h in "[a-z_= ;\t\"]{0,80}|[a-z_= ;\"]{80,400}") {
            let f = Finder::new("gpt_auth");
            let h = h.replace("zz", "gpt_auth");
            let a: Vec<&[u8]> = values(h.as_bytes(), b"gpt_auth").collect();
            let b: Vec<&[u8]> = f.values(h.as_bytes()).collect();
            proptest::prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn ignores_other_names_and_junk() {
        assert!(collect("GPT_AUTH=x; gpt_auth_state=y; xgpt_auth=z", "gpt_auth").is_empty());
        assert!(collect(";;; =novalue; noequals; ", "gpt_auth").is_empty());
        assert!(collect("", "gpt_auth").is_empty());
        assert_eq!(collect("\"=x; a=\"", "a"), ["\""]);
    }
}
