//! The small self-contained HTML pages the module serves.

pub const HTML: &str = "text/html; charset=utf-8";

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34em;margin:4em auto;\
padding:0 1em;color:#222}h1{font-size:1.4em}code,b{overflow-wrap:anywhere}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
}

/// 403: signed in, but not on this location's allowlist.
pub fn not_allowed(email: &str) -> String {
    page(
        "Not allowed",
        &format!(
            "<h1>Not allowed</h1>\n<p>You are signed in as <b>{}</b>, but this account is not \
             allowed to use this site.</p>\n<p>Ask an administrator for access, or sign out and \
             sign in with another account.</p>",
            escape(email)
        ),
    )
}
