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
    fn ignores_other_names_and_junk() {
        assert!(collect("GPT_AUTH=x; gpt_auth_state=y; xgpt_auth=z", "gpt_auth").is_empty());
        assert!(collect(";;; =novalue; noequals; ", "gpt_auth").is_empty());
        assert!(collect("", "gpt_auth").is_empty());
        assert_eq!(collect("\"=x; a=\"", "a"), ["\""]);
    }
}
