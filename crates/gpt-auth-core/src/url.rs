//! URL pieces: percent-encoding a query parameter and building the login redirect.

/// Appends `s` to `out`, percent-encoding every byte but RFC 3986 unreserved characters.
pub fn percent_encode_into(out: &mut String, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// `base` with `name=value` appended as a query parameter (before any `#fragment`).
pub fn with_query_param(base: &str, name: &str, value: &[u8]) -> String {
    let (head, fragment) = match base.find('#') {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    let mut out = String::with_capacity(head.len() + name.len() + value.len() * 3 + 2);
    out.push_str(head);
    out.push(if !head.contains('?') {
        '?'
    } else if head.ends_with('?') || head.ends_with('&') {
        '\0'
    } else {
        '&'
    });
    if out.ends_with('\0') {
        out.pop();
    }
    percent_encode_into(&mut out, name.as_bytes());
    out.push('=');
    percent_encode_into(&mut out, value);
    out.push_str(fragment);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode() {
        let mut s = String::new();
        percent_encode_into(&mut s, b"https://a.b/c?d=e&f=g h~");
        assert_eq!(s, "https%3A%2F%2Fa.b%2Fc%3Fd%3De%26f%3Dg%20h~");
        s.clear();
        percent_encode_into(&mut s, "\r\n\u{e9}".as_bytes());
        assert_eq!(s, "%0D%0A%C3%A9");
    }

    #[test]
    fn query_param() {
        assert_eq!(with_query_param("/login", "rd", b"http://x/"), "/login?rd=http%3A%2F%2Fx%2F");
        assert_eq!(with_query_param("https://a/l?x=1", "rd", b"y"), "https://a/l?x=1&rd=y");
        assert_eq!(with_query_param("https://a/l?", "rd", b"y"), "https://a/l?rd=y");
        assert_eq!(with_query_param("/l#top", "rd", b"y"), "/l?rd=y#top");
    }
}
