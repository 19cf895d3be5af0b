//! HTML for the module's pages: escaping, and filling `{{name}}` placeholders of a template.

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

/// Replaces each `{{name}}` (spaces inside the braces allowed) with its value from `vars`, in
/// one pass: values are never re-scanned, and unknown placeholders stay as they are.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        match vars.iter().find(|(k, _)| *k == key) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[start..start + end + 4]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(escape("alice@example.com"), "alice@example.com");
    }

    #[test]
    fn renders() {
        let vars = [("email", "a@b.c"), ("x", "{{email}}")];
        assert_eq!(render("hi {{email}}, {{ email }}!", &vars), "hi a@b.c, a@b.c!");
        assert_eq!(render("{{x}}", &vars), "{{email}}", "values are not re-scanned");
        assert_eq!(render("{{unknown}} {{email", &vars), "{{unknown}} {{email");
        assert_eq!(render("no placeholders", &vars), "no placeholders");
        assert_eq!(render("{{}}", &vars), "{{}}");
    }
}
