//! Making text that came from outside (a provider's error message, a token's key id) safe to put
//! in a log line or an error message: printable ASCII only, bounded length.

/// `s` with every character outside printable ASCII (space to `~`) replaced by `?`, cut to
/// `max_chars` characters (then followed by `...`).
pub fn log_safe(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars) + 3);
    for (i, c) in s.chars().enumerate() {
        if i == max_chars {
            out.push_str("...");
            break;
        }
        out.push(if (' '..='~').contains(&c) { c } else { '?' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_and_bounded() {
        assert_eq!(log_safe("invalid_grant", 64), "invalid_grant");
        assert_eq!(log_safe("a\r\nb\u{1b}[31m\u{e9}", 64), "a??b?[31m?");
        assert_eq!(log_safe("abcdef", 3), "abc...");
        assert_eq!(log_safe("abc", 3), "abc");
        assert_eq!(log_safe("", 3), "");
    }
}
