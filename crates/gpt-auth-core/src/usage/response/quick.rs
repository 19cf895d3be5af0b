//! A quick reader for the one chunk of a chat stream that is read: the usage chunk (or an error
//! chunk). serde_json costs about 350 instructions per member there (19 members in OpenAI's
//! usage chunk), more than the rest of the stream's metering; this reader takes the plain JSON
//! that providers write (strings of printable ASCII without escapes, integers, nesting up to
//! [`MAX_DEPTH`]) in one pass with no allocation but the model's name.
//!
//! It never decides alone: for anything outside that plain subset (an escape, a byte outside
//! printable ASCII in a string, a number of another shape, a value of the wrong type, broken
//! JSON) it returns `None` and serde_json reads the chunk, as before. Where it answers, it gives
//! what serde_json gives ([`readers_agree`], checked by a property test and the `usage_response`
//! fuzz target).

use serde::de::IgnoredAny;

use super::{ArrayLen, ChatChunk, Details, RawUsage};

/// The bytes a plain string holds: printable ASCII but `"` and `\`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        t[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    t
};

/// Deepest nesting of a skipped value read here (serde_json allows 128: deeper goes to it).
const MAX_DEPTH: u8 = 16;

/// The chunk's members, or `None`: not plain JSON, left to serde_json.
pub(super) fn chat_chunk(data: &[u8]) -> Option<ChatChunk> {
    let mut c = Cursor { b: data, i: 0, depth: 0 };
    let mut out = ChatChunk::default();
    c.members(|c, name| {
        match name {
            b"model" => out.model = c.nullable(Cursor::text)?,
            b"choices" => out.choices = ArrayLen(c.nullable(Cursor::array_len)?),
            b"usage" => out.usage = c.nullable(Cursor::usage)?,
            b"error" => out.error = c.nullable(|c| c.skip().map(|()| IgnoredAny))?,
            _ => c.skip()?,
        }
        Some(())
    })?;
    c.ws();
    (c.i == data.len()).then_some(out)
}

/// Whether the quick reader declines `data` or reads it as serde_json does (for tests and
/// fuzzing).
#[doc(hidden)]
pub fn readers_agree(data: &[u8]) -> bool {
    let Some(quick) = chat_chunk(data) else { return true };
    serde_json::from_slice::<ChatChunk>(data).is_ok_and(|slow| slow == quick)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    depth: u8,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after white space (not taken).
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b.get(self.i..)?.starts_with(word).then(|| self.i += word.len())
    }

    /// `null` (`Some(None)`) or what `read` reads (as serde's `Option` does).
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A string of printable ASCII without escapes: its bytes, without the quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.b.get(self.i..)?;
        // Byte by byte (the strings here are short: names, ids).
        let len = rest.iter().position(|&b| !PLAIN[usize::from(b)])?;
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        Some(&rest[..len])
    }

    /// A string as text (printable ASCII is UTF-8).
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.string()?.to_vec()).ok()
    }

    /// An object's members: `each` reads the value of each name.
    fn members(&mut self, mut each: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let name = self.string()?;
            self.eat(b':')?;
            each(self, name)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array's elements, each skipped: how many.
    fn array_len(&mut self) -> Option<usize> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(0);
        }
        let mut n = 0;
        loop {
            self.skip()?;
            n += 1;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(n);
                }
                _ => return None,
            }
        }
    }

    /// Any value, unread.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.nested(|c| c.members(|c, _| c.skip())),
            b'[' => self.nested(|c| c.array_len().map(drop)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn nested(&mut self, read: impl FnOnce(&mut Self) -> Option<()>) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let out = read(self);
        self.depth -= 1;
        out
    }

    /// A JSON number of any kind, unread.
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        self.integer_digits()?;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    /// `0` or digits without a leading zero.
    fn integer_digits(&mut self) -> Option<()> {
        match self.b.get(self.i)? {
            b'0' => {
                self.i += 1;
                (!self.b.get(self.i).is_some_and(u8::is_ascii_digit)).then_some(())
            }
            b'1'..=b'9' => self.digits(),
            _ => None,
        }
    }

    /// One digit or more.
    fn digits(&mut self) -> Option<()> {
        let n = self.b.get(self.i..)?.iter().take_while(|b| b.is_ascii_digit()).count();
        self.i += n;
        (n > 0).then_some(())
    }

    /// A count: a non-negative integer that fits (anything else goes to serde_json, which
    /// refuses fractions, exponents and overflow for a `u64` and takes `-0`).
    fn count(&mut self) -> Option<u64> {
        let start = self.i;
        self.integer_digits()?;
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        self.b[start..self.i]
            .iter()
            .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    }

    fn usage(&mut self) -> Option<RawUsage> {
        let mut u = RawUsage::default();
        self.members(|c, name| {
            let count = |c: &mut Self| c.nullable(Cursor::count);
            let details = |c: &mut Self| c.nullable(Cursor::details);
            match name {
                b"prompt_tokens" => u.prompt_tokens = count(c)?,
                b"completion_tokens" => u.completion_tokens = count(c)?,
                b"input_tokens" => u.input_tokens = count(c)?,
                b"output_tokens" => u.output_tokens = count(c)?,
                b"prompt_tokens_details" => u.prompt_tokens_details = details(c)?,
                b"input_tokens_details" => u.input_tokens_details = details(c)?,
                b"completion_tokens_details" => u.completion_tokens_details = details(c)?,
                b"output_tokens_details" => u.output_tokens_details = details(c)?,
                b"cache_creation_input_tokens" => u.cache_creation_input_tokens = count(c)?,
                b"cache_read_input_tokens" => u.cache_read_input_tokens = count(c)?,
                _ => c.skip()?,
            }
            Some(())
        })?;
        Some(u)
    }

    fn details(&mut self) -> Option<Details> {
        let mut d = Details::default();
        self.members(|c, name| {
            match name {
                b"cached_tokens" => d.cached_tokens = c.nullable(Cursor::count)?,
                b"cache_write_tokens" => d.cache_write_tokens = c.nullable(Cursor::count)?,
                b"reasoning_tokens" => d.reasoning_tokens = c.nullable(Cursor::count)?,
                _ => c.skip()?,
            }
            Some(())
        })?;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// OpenAI's usage chunk as its API reference shows it (with `stream_options.include_usage`).
    const USAGE_CHUNK: &[u8] = br#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;

    #[test]
    fn reads_the_reference_usage_chunk() {
        let c = chat_chunk(USAGE_CHUNK).expect("plain JSON is read here");
        assert_eq!(c.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(c.choices.0, Some(0));
        let u = c.usage.as_ref().expect("usage");
        assert_eq!((u.prompt_tokens, u.completion_tokens), (Some(9), Some(12)));
        assert_eq!(u.prompt_tokens_details.as_ref().and_then(|d| d.cached_tokens), Some(0));
        assert!(c.error.is_none());
        assert!(readers_agree(USAGE_CHUNK));
    }

    #[test]
    fn leaves_the_rest_to_serde() {
        for data in [
            &br#"{"model":"gpt-\u0034o"}"#[..],         // an escape
            br#"{"model":"gpt-4o","x":"caf\xc3\xa9"}"#, // non-ASCII
            br#"{"usage":{"prompt_tokens":1.0}}"#,      // not an integer
            br#"{"usage":{"prompt_tokens":-0}}"#,       // serde_json takes it
            br#"{"usage":{"prompt_tokens":18446744073709551616}}"#, // overflow
            br#"{"usage":{"prompt_tokens":01}}"#,       // not JSON
            br#"{"model":7}"#,                          // wrong type
            br#"{"choices":{}}"#,
            br#"{"usage":[]}"#,
            br#"{"a":1} x"#,
            br#"{"a":1,}"#,
            br#"{"a":nul}"#,
            br#"{"a":[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]}"#, // deeper than MAX_DEPTH
            b"{\"a\":\"\x01\"}",
            b"",
        ] {
            assert!(chat_chunk(data).is_none(), "{}", String::from_utf8_lossy(data));
            assert!(readers_agree(data));
        }
    }

    #[test]
    fn reads_as_serde_does() {
        for data in [
            &br#" { "model" : null , "choices" : null , "usage" : null , "error" : null } "#[..],
            br#"{"model":"a","model":"b","usage":{"prompt_tokens":1},"usage":null}"#,
            br#"{"error":{"message":"x","code":[1,2.5e-3,true,false,null,{}]},"choices":[{},[]]}"#,
            br#"{"usage":{"input_tokens":3,"output_tokens_details":{"reasoning_tokens":2}}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551615,"prompt_tokens":null}}"#,
            br#"{}"#,
        ] {
            assert!(chat_chunk(data).is_some(), "{}", String::from_utf8_lossy(data));
            assert!(readers_agree(data), "{}", String::from_utf8_lossy(data));
        }
    }

    /// A member list `{"name": value, …}` with names from `names` (repeats allowed).
    fn object(
        names: &'static [&'static str],
        value: BoxedStrategy<String>,
    ) -> BoxedStrategy<String> {
        prop::collection::vec((prop::sample::select(names), value), 0..6)
            .prop_map(|m| {
                let m: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                format!("{{{}}}", m.join(","))
            })
            .boxed()
    }

    /// Any value, mostly plain, sometimes one serde_json reads differently or refuses.
    fn leaf() -> BoxedStrategy<String> {
        prop_oneof![
            4 => any::<u32>().prop_map(|n| n.to_string()),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            1 => Just("18446744073709551616".to_owned()),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => prop::sample::select(vec!["null", "true", "false", "1.5e3", "-0", "01", "1."])
                .prop_map(str::to_owned),
            2 => "[a-z\\\\\"é\u{1}]{0,6}".prop_map(|s| format!("\"{s}\"")),
        ]
        .boxed()
    }

    /// Chunk-shaped JSON text: the members read here, in and out of place, with values of
    /// the right type and of others.
    fn json_text() -> impl Strategy<Value = String> {
        const DETAILS: &[&str] = &["cached_tokens", "cache_write_tokens", "reasoning_tokens", "x"];
        const USAGE: &[&str] = &[
            "prompt_tokens",
            "completion_tokens",
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "input_tokens_details",
            "completion_tokens_details",
            "output_tokens_details",
        ];
        const TOP: &[&str] = &["model", "choices", "usage", "error", "id", "object"];
        let any = leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                object(&["a", "b"], inner.boxed()),
            ]
        });
        let any = any.boxed();
        let details = prop_oneof![4 => object(DETAILS, leaf()), 1 => any.clone()].boxed();
        let usage =
            prop_oneof![4 => object(USAGE, prop_oneof![leaf(), details].boxed()), 1 => any.clone()];
        let top = prop_oneof![3 => usage, 1 => any, 1 => leaf()].boxed();
        object(TOP, top)
    }

    proptest! {
        #[test]
        fn prop_agrees_with_serde(text in json_text(), cut in any::<prop::sample::Index>()) {
            prop_assert!(readers_agree(text.as_bytes()), "{text}");
            let cut = &text.as_bytes()[..cut.index(text.len() + 1)];
            prop_assert!(readers_agree(cut), "{}", String::from_utf8_lossy(cut));
        }
    }
}
