//! What an AI API request asks for, read from its JSON body: the model, whether it streams and
//! asks for the usage chunk, and its output limit (the reservation a budget check needs before
//! the answer says what was used).
//!
//! Request bodies can be large (a conversation with its history, images as base64: megabytes)
//! and only a few top-level members matter, so the body is not built into a document: [`parse`]
//! checks the whole body as JSON in one linear pass, with a depth counter instead of recursion,
//! and looks only at the top-level `model`, `stream`, `stream_options.include_usage`,
//! `max_tokens`, `max_completion_tokens` and `max_output_tokens`. The same names further down
//! (inside `messages[].content`, a tool's JSON schema, or a string) are not members of the top
//! level and are skipped. Keys are compared after unescaping (`"mod\u0065l"` is `model`).
//!
//! [`with_include_usage`] rewrites a streaming chat completions request so that the answer ends
//! with a usage chunk, leaving every other byte as it was.

/// Deepest nesting accepted (the top-level object counts as 1). Deeper bodies are refused rather
/// than scanned: no API takes them (serde_json, which most servers in Rust use, stops at 128).
pub const MAX_DEPTH: usize = 512;

/// What [`parse`] read from a request body. Absent members and members whose value is `null` are
/// `None` (`false` for `stream`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Top-level `model`, unescaped.
    pub model: Option<String>,
    /// Top-level `stream`.
    pub stream: bool,
    /// `include_usage` inside the top-level `stream_options` object.
    pub include_usage: Option<bool>,
    /// Chat completions' (deprecated there) and Anthropic's output limit, legacy completions'.
    pub max_tokens: Option<u64>,
    /// Chat completions' output limit (reasoning tokens included).
    pub max_completion_tokens: Option<u64>,
    /// The Responses API's output limit.
    pub max_output_tokens: Option<u64>,
    /// Where [`RequestInfo::with_include_usage`] edits the body.
    edit: Edit,
}

/// Positions in the body, found by the scan, for adding `include_usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Edit {
    body_len: usize,
    /// Just after the last top-level member's value (just after `{` when there is none).
    top_insert: usize,
    top_empty: bool,
    stream_options: StreamOptionsAt,
    /// The span of an `include_usage` whose value is `null`.
    include_usage_null: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum StreamOptionsAt {
    #[default]
    Absent,
    /// `"stream_options": null`: the span of `null`.
    Null(usize, usize),
    /// An object: the position just after its `{`, and whether it has members.
    Object { after_brace: usize, empty: bool },
}

/// Why a request body could not be read. `Display` is short and safe to log: it names a member
/// or a byte offset, never content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is empty")]
    Empty,
    #[error("request body is not a JSON object")]
    NotObject,
    #[error("request body is not valid JSON (at byte {0})")]
    NotJson(usize),
    #[error("request body is cut off (incomplete JSON)")]
    Truncated,
    #[error("request body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The same member twice (after unescaping). JSON parsers disagree on which one counts
    /// (most take the last, some the first), so a body with two `model`s could be metered for
    /// one model and served by another: refused rather than guessed.
    #[error("request body has \"{0}\" more than once")]
    Duplicate(&'static str),
    /// `model` not a string, `stream` not a boolean, a limit not a non-negative integer (that
    /// fits 64 bits), `stream_options` not an object. `null` is accepted for each (as absent).
    #[error("request body member \"{0}\" has the wrong type")]
    BadField(&'static str),
}

/// What [`with_include_usage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeUsage {
    /// The body with `stream_options.include_usage` set to `true`. The answer will end with a
    /// usage-only chunk the client did not ask for: remove it (see
    /// `response::StreamMeter::new`).
    Added(Vec<u8>),
    /// Unchanged: the client asked for the usage chunk itself (it must reach the client).
    AlreadyRequested,
    /// Unchanged: the client set `include_usage` to `false`. Its choice is kept; the answer
    /// will carry no usage, so metering falls back to an estimate.
    Declined,
    /// Unchanged: not a streaming request (`stream` is not `true`). OpenAI refuses
    /// `stream_options` without `stream: true`, and a non-streaming answer has its usage anyway.
    NotStreaming,
}

impl RequestInfo {
    /// The output limit a reservation should assume: the largest of `max_tokens`,
    /// `max_completion_tokens` and `max_output_tokens` given (each API uses one of them; if a
    /// client sends several, the largest is the safe side). `None` when the client set none.
    pub fn output_limit(&self) -> Option<u64> {
        [self.max_tokens, self.max_completion_tokens, self.max_output_tokens]
            .into_iter()
            .flatten()
            .max()
    }

    /// [`with_include_usage`] without scanning the body again: `body` must be the bytes this was
    /// parsed from (the positions found by [`parse`] are used). A body of another length is
    /// parsed anew.
    pub fn with_include_usage(&self, body: &[u8]) -> Result<IncludeUsage, RequestError> {
        if body.len() != self.edit.body_len {
            return with_include_usage(body);
        }
        if !self.stream {
            return Ok(IncludeUsage::NotStreaming);
        }
        match self.include_usage {
            Some(true) => return Ok(IncludeUsage::AlreadyRequested),
            Some(false) => return Ok(IncludeUsage::Declined),
            None => {}
        }
        let e = &self.edit;
        let (at, remove, insert): (usize, usize, &[&[u8]]) = match e.stream_options {
            StreamOptionsAt::Absent => {
                let comma: &[u8] = if e.top_empty { b"" } else { b"," };
                (e.top_insert, 0, &[comma, br#""stream_options":{"include_usage":true}"#])
            }
            StreamOptionsAt::Null(start, end) => {
                (start, end - start, &[br#"{"include_usage":true}"#])
            }
            StreamOptionsAt::Object { after_brace, empty } => match e.include_usage_null {
                Some((start, end)) => (start, end - start, &[b"true"]),
                None => {
                    let comma: &[u8] = if empty { b"" } else { b"," };
                    (after_brace, 0, &[br#""include_usage":true"#, comma])
                }
            },
        };
        let added: usize = insert.iter().map(|s| s.len()).sum();
        let mut out = Vec::with_capacity(body.len() + added);
        out.extend_from_slice(&body[..at]);
        for s in insert {
            out.extend_from_slice(s);
        }
        out.extend_from_slice(&body[at + remove..]);
        Ok(IncludeUsage::Added(out))
    }
}

/// Reads the top-level members that metering needs from a JSON request body, checking that the
/// whole body is one valid JSON object (UTF-8, RFC 8259 grammar, no duplicate of the members
/// read, at most [`MAX_DEPTH`] deep). One pass, linear in the body's size; the only allocation
/// is the returned model name.
pub fn parse(body: &[u8]) -> Result<RequestInfo, RequestError> {
    Scanner::new(body)?.run()
}

/// The body of a streaming request with `stream_options.include_usage` set to `true`, for chat
/// completions (and legacy completions), which otherwise stream no usage at all. Either a new
/// top-level member `"stream_options":{"include_usage":true}` is added after the last one, or
/// `"include_usage":true` goes first into the existing `stream_options` object (a `null` there
/// is replaced); every other byte stays as it was.
///
/// The Responses API and Anthropic's Messages API always report usage: do not call this for
/// them (they would refuse the unknown member).
pub fn with_include_usage(body: &[u8]) -> Result<IncludeUsage, RequestError> {
    let info = parse(body)?;
    info.with_include_usage(body)
}

/// The members read, as bits of a "seen" set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Model,
    Stream,
    StreamOptions,
    MaxTokens,
    MaxCompletionTokens,
    MaxOutputTokens,
    /// `include_usage` inside the top-level `stream_options`.
    IncludeUsage,
    /// Anything else, at any depth.
    Other,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Model => "model",
            Field::Stream => "stream",
            Field::StreamOptions => "stream_options",
            Field::MaxTokens => "max_tokens",
            Field::MaxCompletionTokens => "max_completion_tokens",
            Field::MaxOutputTokens => "max_output_tokens",
            Field::IncludeUsage => "stream_options.include_usage",
            Field::Other => "",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn top_level(key: &[u8]) -> Field {
        match key {
            b"model" => Field::Model,
            b"stream" => Field::Stream,
            b"stream_options" => Field::StreamOptions,
            b"max_tokens" => Field::MaxTokens,
            b"max_completion_tokens" => Field::MaxCompletionTokens,
            b"max_output_tokens" => Field::MaxOutputTokens,
            _ => Field::Other,
        }
    }
}

/// Longest key compared after unescaping (`max_completion_tokens`); longer keys are other keys.
const LONGEST_KEY: usize = 21;

/// What the scanner expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (after `:`, after `,` in an array).
    Value,
    /// The first key of an object, or `}`.
    FirstKey,
    /// A key (after `,` in an object).
    Key,
    Colon,
    /// The first value of an array, or `]`.
    FirstValue,
    /// `,` or the end of the current container.
    CommaOrEnd,
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
    /// Open containers; bit `i` of `kinds` is 1 when container `i` (0: the top level) is an
    /// object. A fixed bit set, so that nesting costs no allocation.
    depth: usize,
    kinds: [u64; MAX_DEPTH / 64],
    /// The member whose value comes next (`Other` below the top level, except in
    /// `stream_options`).
    field: Field,
    /// Whether container 1 (the one at depth 2) is the top-level `stream_options` object.
    in_stream_options: bool,
    seen: u8,
    info: RequestInfo,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Result<Scanner<'a>, RequestError> {
        // Strings are checked byte by byte below; UTF-8 is checked once, here (outside strings
        // any non-ASCII byte is a syntax error anyway).
        if let Err(e) = core::str::from_utf8(b) {
            return Err(RequestError::NotJson(e.valid_up_to()));
        }
        Ok(Scanner {
            b,
            pos: 0,
            depth: 0,
            kinds: [0; MAX_DEPTH / 64],
            field: Field::Other,
            in_stream_options: false,
            seen: 0,
            info: RequestInfo::default(),
        })
    }

    fn run(mut self) -> Result<RequestInfo, RequestError> {
        use RequestError as E;
        self.skip_ws();
        match self.b.get(self.pos) {
            None => return Err(E::Empty),
            Some(b'{') => {}
            Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                return Err(E::NotObject)
            }
            Some(_) => return Err(E::NotJson(self.pos)),
        }
        self.pos += 1;
        self.open(true)?;
        self.info.edit.top_insert = self.pos;
        self.info.edit.top_empty = true;
        let mut expect = Expect::FirstKey;
        loop {
            self.skip_ws();
            let Some(&c) = self.b.get(self.pos) else { return Err(E::Truncated) };
            expect = match expect {
                Expect::FirstKey | Expect::Key => {
                    if c == b'}' && expect == Expect::FirstKey {
                        self.pos += 1;
                        if self.close()? {
                            break;
                        }
                        Expect::CommaOrEnd
                    } else if c == b'"' {
                        self.key()?;
                        Expect::Colon
                    } else {
                        return Err(E::NotJson(self.pos));
                    }
                }
                Expect::Colon => {
                    if c != b':' {
                        return Err(E::NotJson(self.pos));
                    }
                    self.pos += 1;
                    Expect::Value
                }
                Expect::FirstValue if c == b']' => {
                    self.pos += 1;
                    if self.close()? {
                        break;
                    }
                    Expect::CommaOrEnd
                }
                Expect::FirstValue | Expect::Value => self.value(c)?,
                Expect::CommaOrEnd => {
                    let object = self.top_is_object();
                    match c {
                        b',' => {
                            self.pos += 1;
                            if object {
                                Expect::Key
                            } else {
                                Expect::Value
                            }
                        }
                        b'}' if object => {
                            self.pos += 1;
                            if self.close()? {
                                break;
                            }
                            Expect::CommaOrEnd
                        }
                        b']' if !object => {
                            self.pos += 1;
                            if self.close()? {
                                break;
                            }
                            Expect::CommaOrEnd
                        }
                        _ => return Err(E::NotJson(self.pos)),
                    }
                }
            };
        }
        self.skip_ws();
        if self.pos != self.b.len() {
            return Err(E::NotJson(self.pos));
        }
        self.info.edit.body_len = self.b.len();
        Ok(self.info)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn top_is_object(&self) -> bool {
        let i = self.depth - 1;
        self.kinds[i / 64] & (1 << (i % 64)) != 0
    }

    fn open(&mut self, object: bool) -> Result<(), RequestError> {
        if self.depth == MAX_DEPTH {
            return Err(RequestError::TooDeep);
        }
        let (word, bit) = (self.depth / 64, 1u64 << (self.depth % 64));
        if object {
            self.kinds[word] |= bit;
        } else {
            self.kinds[word] &= !bit;
        }
        self.depth += 1;
        Ok(())
    }

    /// Closes the current container (its `}` or `]` consumed); `true` when that was the top
    /// level.
    fn close(&mut self) -> Result<bool, RequestError> {
        self.depth -= 1;
        match self.depth {
            0 => Ok(true),
            1 => {
                self.in_stream_options = false;
                self.value_done_at_top();
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// A value of the top-level object ended at `pos`: a new member would go here.
    fn value_done_at_top(&mut self) {
        self.info.edit.top_insert = self.pos;
        self.info.edit.top_empty = false;
    }

    /// Reads a key (at `"`) and decides which member the next value belongs to.
    fn key(&mut self) -> Result<(), RequestError> {
        let (start, end, escaped) = self.string()?;
        self.field = Field::Other;
        let in_top = self.depth == 1;
        let in_options = self.depth == 2 && self.in_stream_options;
        if !in_top && !in_options {
            return Ok(());
        }
        if in_options {
            if let StreamOptionsAt::Object { ref mut empty, .. } = self.info.edit.stream_options {
                *empty = false;
            }
        }
        let mut buf = [0u8; LONGEST_KEY];
        let key = if escaped {
            match unescape_small(&self.b[start..end], &mut buf) {
                Some(k) => k,
                None => return Ok(()),
            }
        } else {
            &self.b[start..end]
        };
        let field = if in_top {
            Field::top_level(key)
        } else if key == b"include_usage" {
            Field::IncludeUsage
        } else {
            Field::Other
        };
        if field != Field::Other {
            if self.seen & field.bit() != 0 {
                return Err(RequestError::Duplicate(field.name()));
            }
            self.seen |= field.bit();
        }
        self.field = field;
        Ok(())
    }

    /// Reads a value starting with `c` at `pos`; what is expected after it.
    fn value(&mut self, c: u8) -> Result<Expect, RequestError> {
        use RequestError as E;
        let field = core::mem::replace(&mut self.field, Field::Other);
        let start = self.pos;
        match c {
            b'{' => {
                self.pos += 1;
                match field {
                    Field::Other => {}
                    Field::StreamOptions => {
                        self.in_stream_options = true;
                        self.info.edit.stream_options =
                            StreamOptionsAt::Object { after_brace: self.pos, empty: true };
                    }
                    _ => return Err(E::BadField(field.name())),
                }
                self.open(true)?;
                return Ok(Expect::FirstKey);
            }
            b'[' => {
                if field != Field::Other {
                    return Err(E::BadField(field.name()));
                }
                self.pos += 1;
                self.open(false)?;
                return Ok(Expect::FirstValue);
            }
            b'"' => {
                let (s, e, escaped) = self.string()?;
                match field {
                    Field::Other => {}
                    Field::Model => {
                        let raw = &self.b[s..e];
                        self.info.model = Some(if escaped {
                            unescape(raw)
                        } else {
                            // The whole body is valid UTF-8 and `raw` is cut at ASCII quotes.
                            String::from_utf8_lossy(raw).into_owned()
                        });
                    }
                    _ => return Err(E::BadField(field.name())),
                }
            }
            b't' | b'f' | b'n' => {
                let word: &[u8] = match c {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                let rest = &self.b[self.pos..];
                if !rest.starts_with(word) {
                    return Err(if word.starts_with(rest) {
                        E::Truncated
                    } else {
                        E::NotJson(start)
                    });
                }
                self.pos += word.len();
                let value = match c {
                    b't' => Some(true),
                    b'f' => Some(false),
                    _ => None,
                };
                match (field, value) {
                    (Field::Other, _) => {}
                    (Field::Stream, v) => self.info.stream = v == Some(true),
                    (Field::IncludeUsage, v) => {
                        self.info.include_usage = v;
                        if v.is_none() {
                            self.info.edit.include_usage_null = Some((start, self.pos));
                        }
                    }
                    (Field::StreamOptions, None) => {
                        self.info.edit.stream_options = StreamOptionsAt::Null(start, self.pos)
                    }
                    (Field::Model | Field::MaxTokens, None) => {}
                    (Field::MaxCompletionTokens | Field::MaxOutputTokens, None) => {}
                    (f, Some(_)) => return Err(E::BadField(f.name())),
                }
            }
            b'-' | b'0'..=b'9' => {
                let whole = self.number()?;
                let limit = match field {
                    Field::Other => None,
                    Field::MaxTokens => Some(&mut self.info.max_tokens),
                    Field::MaxCompletionTokens => Some(&mut self.info.max_completion_tokens),
                    Field::MaxOutputTokens => Some(&mut self.info.max_output_tokens),
                    _ => return Err(E::BadField(field.name())),
                };
                if let Some(slot) = limit {
                    let n = whole.ok_or(E::BadField(field.name()))?;
                    *slot = Some(n);
                }
            }
            _ => return Err(E::NotJson(start)),
        }
        if self.depth == 1 {
            self.value_done_at_top();
        }
        Ok(Expect::CommaOrEnd)
    }

    /// Reads a string at `"`: the span of its content and whether it has escapes. Checks that
    /// escapes are valid (surrogates paired) and that no control character is left raw.
    fn string(&mut self) -> Result<(usize, usize, bool), RequestError> {
        use RequestError as E;
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = find_special(self.b, i);
            let Some(&c) = self.b.get(i) else { return Err(E::Truncated) };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok((start, i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = self.escape(i)?;
                }
                _ => return Err(E::NotJson(i)),
            }
        }
    }

    /// Checks the escape at `i` (a backslash); the position after it.
    fn escape(&self, i: usize) -> Result<usize, RequestError> {
        use RequestError as E;
        match self.b.get(i + 1) {
            None => Err(E::Truncated),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let unit = self.hex4(i + 2)?;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low one.
                        match (self.b.get(i + 6), self.b.get(i + 7)) {
                            (None, _) | (Some(b'\\'), None) => return Err(E::Truncated),
                            (Some(b'\\'), Some(b'u')) => {}
                            _ => return Err(E::NotJson(i)),
                        }
                        match self.hex4(i + 8)? {
                            0xDC00..=0xDFFF => Ok(i + 12),
                            _ => Err(E::NotJson(i)),
                        }
                    }
                    0xDC00..=0xDFFF => Err(E::NotJson(i)),
                    _ => Ok(i + 6),
                }
            }
            Some(_) => Err(E::NotJson(i)),
        }
    }

    fn hex4(&self, at: usize) -> Result<u32, RequestError> {
        let Some(digits) = self.b.get(at..at + 4) else {
            let rest = self.b.get(at..).unwrap_or_default();
            return Err(if rest.iter().all(u8::is_ascii_hexdigit) {
                RequestError::Truncated
            } else {
                RequestError::NotJson(at)
            });
        };
        hex4(digits).ok_or(RequestError::NotJson(at))
    }

    /// Reads a number (RFC 8259 grammar); its value when it is a non-negative integer that fits
    /// 64 bits.
    fn number(&mut self) -> Result<Option<u64>, RequestError> {
        use RequestError as E;
        let b = self.b;
        let start = self.pos;
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let int_start = i;
        match b.get(i) {
            None => return Err(E::Truncated),
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i),
            Some(_) => return Err(E::NotJson(i)),
        }
        let int_end = i;
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            match b.get(i + 1) {
                None => return Err(E::Truncated),
                Some(c) if c.is_ascii_digit() => i = digits(i + 1),
                Some(_) => return Err(E::NotJson(i + 1)),
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            integer = false;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            match b.get(i) {
                None => return Err(E::Truncated),
                Some(c) if c.is_ascii_digit() => i = digits(i),
                Some(_) => return Err(E::NotJson(i)),
            }
        }
        self.pos = i;
        if negative || !integer {
            return Ok(None);
        }
        let mut n: u64 = 0;
        for &d in &b[int_start..int_end] {
            n = match n.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))) {
                Some(n) => n,
                None => return Ok(None),
            };
        }
        Ok(Some(n))
    }
}

/// The position of the first `"`, `\` or control character (below 0x20) at or after `i`, or the
/// end of `b`. This is where a large body's time goes. Keys and short values end within a few
/// words, found eight bytes at a time (SWAR); past 32 bytes, a SIMD search for the two ASCII
/// bytes takes over, then a check for control bytes before the one found that the compiler
/// vectorizes (a fold without early exit), 64 bytes at a time.
fn find_special(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes of `x` below `n` (n <= 128) flagged by their high bit; bits above the lowest
    // flagged byte may be wrong, the lowest one is exact.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    for _ in 0..4 {
        let Some(word) = b.get(i..i + 8) else { break };
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let hits = below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let end = memchr::memchr2(b'"', b'\\', &b[i..]).map_or(b.len(), |k| i + k);
    let mut at = i;
    for block in b[i..end].chunks(64) {
        if block.iter().fold(false, |any, &c| any | (c < 0x20)) {
            return at + block.iter().position(|&c| c < 0x20).expect("found above");
        }
        at += block.len();
    }
    end
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let mut v = 0;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// Decodes the content of a string already checked by [`Scanner::string`], calling `push` with
/// runs of UTF-8; stops early (returning `false`) when `push` does.
fn for_each_unescaped(raw: &[u8], mut push: impl FnMut(&[u8]) -> bool) -> bool {
    let mut i = 0;
    while i < raw.len() {
        let Some(k) = memchr::memchr(b'\\', &raw[i..]) else { return push(&raw[i..]) };
        if k > 0 && !push(&raw[i..i + k]) {
            return false;
        }
        i += k;
        let simple = match raw[i + 1] {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            _ => 0,
        };
        if raw[i + 1] != b'u' {
            if !push(&[simple]) {
                return false;
            }
            i += 2;
            continue;
        }
        let unit = hex4(&raw[i + 2..i + 6]).expect("checked escape");
        let (c, len) = if (0xD800..=0xDBFF).contains(&unit) {
            let low = hex4(&raw[i + 8..i + 12]).expect("checked escape");
            (0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), 12)
        } else {
            (unit, 6)
        };
        let c = char::from_u32(c).expect("checked escape");
        if !push(c.encode_utf8(&mut [0; 4]).as_bytes()) {
            return false;
        }
        i += len;
    }
    true
}

fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    for_each_unescaped(raw, |s| {
        out.extend_from_slice(s);
        true
    });
    String::from_utf8(out).expect("unescaped valid UTF-8 is valid UTF-8")
}

/// A key unescaped into `buf`; `None` when it is longer than any key we look for.
fn unescape_small<'b>(raw: &[u8], buf: &'b mut [u8; LONGEST_KEY]) -> Option<&'b [u8]> {
    let mut len = 0;
    let fits = for_each_unescaped(raw, |s| {
        let Some(dst) = buf.get_mut(len..len + s.len()) else { return false };
        dst.copy_from_slice(s);
        len += s.len();
        true
    });
    fits.then_some(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    fn info(body: &str) -> RequestInfo {
        parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body:?}: {e}"))
    }

    fn err(body: &[u8]) -> RequestError {
        parse(body).expect_err(&String::from_utf8_lossy(body))
    }

    fn added(body: &str) -> String {
        match with_include_usage(body.as_bytes()).unwrap() {
            IncludeUsage::Added(out) => String::from_utf8(out).unwrap(),
            other => panic!("{body:?}: {other:?}"),
        }
    }

    #[test]
    fn reference_requests() {
        // The streaming chat completions request of the OpenAI API reference
        // (openai/openai-openapi, openapi.yaml, createChatCompletion, example "Streaming").
        let r = info(
            r#"{
                "model": "VAR_chat_model_id",
                "messages": [
                  {"role": "developer", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "Hello!"}
                ],
                "stream": true
              }"#,
        );
        assert_eq!(r.model.as_deref(), Some("VAR_chat_model_id"));
        assert!(r.stream);
        assert_eq!((r.include_usage, r.output_limit()), (None, None));
        // Anthropic's streaming request (platform.claude.com, "Streaming messages").
        let r = info(
            r#"{"model": "claude-opus-4-6", "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 256, "stream": true}"#,
        );
        assert_eq!(r.model.as_deref(), Some("claude-opus-4-6"));
        assert_eq!(r.max_tokens, Some(256));
        assert_eq!(r.output_limit(), Some(256));
        // Legacy completions (createCompletion example).
        let r = info(
            r#"{"model": "VAR_completion_model_id", "prompt": "Say this is a test",
                "max_tokens": 7, "temperature": 0, "stream": true}"#,
        );
        assert_eq!(r.max_tokens, Some(7));
        let r = info(
            r#"{"model":"o3","max_completion_tokens":4096,"max_tokens":100,
                "stream":true,"stream_options":{"include_usage":true}}"#,
        );
        assert_eq!(r.include_usage, Some(true));
        assert_eq!(r.output_limit(), Some(4096), "the largest limit given");
        let r = info(r#"{"model":"gpt-5.4","input":"Hi","max_output_tokens":0}"#);
        assert_eq!(r.max_output_tokens, Some(0));
        assert_eq!(r.output_limit(), Some(0));
    }

    #[test]
    fn only_the_top_level_counts() {
        let r = info(
            r#"{"messages":[{"role":"user","content":"{\"model\":\"gpt-4\",\"stream\":true}"},
                 {"model":"nested","stream":true,"max_tokens":5,
                  "content":[{"type":"text","model":"deeper","stream_options":{"include_usage":true}}]}],
                "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object",
                  "properties":{"model":{"type":"string"},"max_tokens":{"type":"integer"}},
                  "required":["model"]}}}],
                "metadata":{"model":"meta","stream":"yes","stream_options":null},
                "model":"gpt-4o-mini",
                "x":{"stream_options":{"include_usage":false}},
                "y":[{"include_usage":false}],
                "stream_options":{"other":{"include_usage":false},"include_usage":true,
                  "list":[{"include_usage":false}]},
                "z":"\"model\":\"fake\",\"stream\":true"}"#,
        );
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
        assert!(!r.stream);
        assert_eq!(r.include_usage, Some(true));
        assert_eq!(r.output_limit(), None);
        // Duplicates below the top level are other members.
        let r = info(
            r#"{"a":{"model":"x","model":"y"},"stream_options":{"x":{"include_usage":1,"include_usage":2}}}"#,
        );
        assert_eq!(r.model, None);
        assert_eq!(r.include_usage, None);
    }

    #[test]
    fn escapes_and_whitespace() {
        let r = info(
            " \t\r\n{ \"mod\\u0065l\" :\t\"gpt-\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\" ,\n\
             \"str\\u0065am\" : true , \"stream_\\u006fptions\":{\"include\\u005Fusage\":false},\
             \"max_\\u0074okens\" : 12 }\r\n ",
        );
        assert_eq!(r.model.as_deref(), Some("gpt-\u{e9}\u{1F600}\"\\/\u{8}\u{c}\n\r\t"));
        assert!(r.stream);
        assert_eq!(r.include_usage, Some(false));
        assert_eq!(r.max_tokens, Some(12));
        // A long escaped key is no key we read.
        let r = info(r#"{"m\u006fdel_and_much_longer_than_any":"x","model":"y"}"#);
        assert_eq!(r.model.as_deref(), Some("y"));
        assert_eq!(info(r#"{"model":""}"#).model.as_deref(), Some(""));
        assert_eq!(info(r#"{"model":"a\u0000b"}"#).model.as_deref(), Some("a\0b"));
        assert_eq!(
            info("{\"model\":\"caf\u{e9} \u{1F600}\"}").model.as_deref(),
            Some("caf\u{e9} \u{1F600}")
        );
        let r = info(r#"{"model":null,"stream":null,"stream_options":null,"max_tokens":null}"#);
        assert_eq!(r, RequestInfo { edit: r.edit, ..RequestInfo::default() });
        assert_eq!(info("{}"), RequestInfo { edit: info("{}").edit, ..RequestInfo::default() });
    }

    #[test]
    fn refusals() {
        use RequestError as E;
        assert_eq!(err(b""), E::Empty);
        assert_eq!(err(b" \n\t"), E::Empty);
        for not_object in ["[]", "[{\"model\":\"x\"}]", "\"x\"", "1", "-1", "true", "null"] {
            assert_eq!(err(not_object.as_bytes()), E::NotObject, "{not_object}");
        }
        for cut in [
            "{",
            "{\"model\"",
            "{\"model\":",
            "{\"model\":\"gpt",
            "{\"model\":\"x\"",
            "{\"model\":\"x\",",
            "{\"a\":[1,2",
            "{\"a\":tr",
            "{\"a\":-",
            "{\"a\":1.",
            "{\"a\":1e",
            "{\"a\":1e+",
            "{\"a\":\"\\",
            "{\"a\":\"\\u00",
            "{\"a\":\"\\ud83d",
            "{\"a\":\"\\ud83d\\",
            "{\"a\":\"\\ud83d\\ude",
            "{\"a\":{\"b\":{}}",
        ] {
            assert_eq!(err(cut.as_bytes()), E::Truncated, "{cut}");
        }
        for (bad, at) in [
            ("x", 0),
            ("\u{feff}{}", 0),
            ("{}x", 2),
            ("{} {}", 3),
            ("{,}", 1),
            ("{\"a\"}", 4),
            ("{\"a\":1,}", 7),
            ("{\"a\":[1,]}", 8),
            ("{\"a\":[,1]}", 6),
            ("{\"a\":1 \"b\":2}", 7),
            ("{'a':1}", 1),
            ("{a:1}", 1),
            ("{\"a\":01}", 6),
            ("{\"a\":+1}", 5),
            ("{\"a\":.5}", 5),
            ("{\"a\":1.e5}", 7),
            ("{\"a\":-x}", 6),
            ("{\"a\":NaN}", 5),
            ("{\"a\":tru}", 5),
            ("{\"a\":nul1}", 5),
            ("{\"a\":\"\t\"}", 6),
            ("{\"a\":\"\u{1}\"}", 6),
            ("{\"a\":\"\\x\"}", 6),
            ("{\"a\":\"\\u12G4\"}", 8),
            ("{\"a\":\"\\udc00\"}", 6),
            ("{\"a\":\"\\ud800x\"}", 6),
            ("{\"a\":\"\\ud800\\u0041\"}", 6),
            ("{\"a\":[}", 6),
            ("{\"a\":{]}", 6),
            ("{\"a\":[1}", 7),
            ("{\"a\":{\"b\":1]}", 11),
        ] {
            assert_eq!(err(bad.as_bytes()), E::NotJson(at), "{bad:?}");
        }
        assert_eq!(err(b"{\"a\":\"\xff\"}"), E::NotJson(6));
        assert_eq!(err(b"{\"a\":\"\xc3\"}"), E::NotJson(6));
        for (dup, name) in [
            (r#"{"model":"a","model":"b"}"#, "model"),
            (r#"{"model":"a","mod\u0065l":"a"}"#, "model"),
            (r#"{"model":null,"model":"b"}"#, "model"),
            (r#"{"stream":true,"x":1,"stream":false}"#, "stream"),
            (r#"{"stream_options":{},"stream_options":null}"#, "stream_options"),
            (
                r#"{"stream_options":{"include_usage":true,"include_usage":true}}"#,
                "stream_options.include_usage",
            ),
            (r#"{"max_tokens":1,"max_tokens":1}"#, "max_tokens"),
        ] {
            assert_eq!(err(dup.as_bytes()), E::Duplicate(name), "{dup}");
        }
        for (bad, name) in [
            (r#"{"model":1}"#, "model"),
            (r#"{"model":["gpt-4"]}"#, "model"),
            (r#"{"model":{"id":"gpt-4"}}"#, "model"),
            (r#"{"model":true}"#, "model"),
            (r#"{"stream":"true"}"#, "stream"),
            (r#"{"stream":1}"#, "stream"),
            (r#"{"stream_options":true}"#, "stream_options"),
            (r#"{"stream_options":[]}"#, "stream_options"),
            (r#"{"stream_options":{"include_usage":"yes"}}"#, "stream_options.include_usage"),
            (r#"{"stream_options":{"include_usage":{}}}"#, "stream_options.include_usage"),
            (r#"{"max_tokens":-1}"#, "max_tokens"),
            (r#"{"max_tokens":1.5}"#, "max_tokens"),
            (r#"{"max_tokens":1.0}"#, "max_tokens"),
            (r#"{"max_tokens":1e3}"#, "max_tokens"),
            (r#"{"max_tokens":18446744073709551616}"#, "max_tokens"),
            (r#"{"max_completion_tokens":"100"}"#, "max_completion_tokens"),
            (r#"{"max_output_tokens":false}"#, "max_output_tokens"),
        ] {
            assert_eq!(err(bad.as_bytes()), E::BadField(name), "{bad}");
        }
        assert_eq!(info(r#"{"max_tokens":18446744073709551615}"#).max_tokens, Some(u64::MAX));
        // serde_json reads `-0` as the float -0.0: not an integer here either.
        assert_eq!(err(br#"{"max_tokens":-0}"#), E::BadField("max_tokens"));
        assert_eq!(info(r#"{"y":-0.0e-0,"x":-1.5E+3,"z":0.5e-10}"#).model, None);
        // Depth: 512 levels (the top-level object included) are fine, 513 are not.
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(parse(deep(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(err(deep(MAX_DEPTH + 1).as_bytes()), E::TooDeep);
        assert_eq!(err(format!("{{\"a\":{}", "[".repeat(100_000)).as_bytes()), E::TooDeep);
        // Messages are short and say no more than a member name or an offset.
        for e in [E::Empty, E::NotJson(123_456), E::Duplicate("model"), E::TooDeep] {
            assert!(e.to_string().len() < 60, "{e}");
        }
    }

    #[test]
    fn include_usage_added() {
        assert_eq!(
            added(r#"{"model":"gpt-4o","stream":true}"#),
            r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#
        );
        // Right after the last member's value, whatever whitespace follows.
        assert_eq!(
            added("{\n  \"stream\": true,\n  \"messages\": [{\"a\": {}}] \n}\n"),
            "{\n  \"stream\": true,\n  \"messages\": [{\"a\": {}}],\"stream_options\":{\"include_usage\":true} \n}\n"
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{}}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options": { } }"#),
            r#"{"stream":true,"stream_options": {"include_usage":true } }"#
        );
        assert_eq!(
            added(r#"{"stream_options":{"include_obfuscation":false},"stream":true}"#),
            r#"{"stream_options":{"include_usage":true,"include_obfuscation":false},"stream":true}"#
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":null,"n":1}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true},"n":1}"#
        );
        assert_eq!(
            added(r#"{"stream":true,"stream_options":{"include_usage":null}}"#),
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let unchanged = |body: &str| with_include_usage(body.as_bytes()).unwrap();
        assert_eq!(
            unchanged(r#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            IncludeUsage::AlreadyRequested
        );
        assert_eq!(
            unchanged(r#"{"stream":true,"stream_options":{"include_usage":false}}"#),
            IncludeUsage::Declined
        );
        assert_eq!(unchanged(r#"{"stream":false}"#), IncludeUsage::NotStreaming);
        assert_eq!(unchanged(r#"{"model":"x"}"#), IncludeUsage::NotStreaming);
        assert_eq!(unchanged(r#"{"stream":null}"#), IncludeUsage::NotStreaming);
        assert_eq!(with_include_usage(b"{\"stream\":true"), Err(RequestError::Truncated));
        // The positions of a parse are reused for the same body; another body is parsed anew.
        let body = br#"{"stream":true,"model":"m"}"#;
        let r = parse(body).unwrap();
        assert_eq!(r.with_include_usage(body), with_include_usage(body));
        assert_eq!(
            r.with_include_usage(br#"{"stream":true}"#).unwrap(),
            IncludeUsage::Added(
                br#"{"stream":true,"stream_options":{"include_usage":true}}"#.to_vec()
            )
        );
    }

    #[test]
    fn large_bodies() {
        // 10 MB of messages: linear, and the model after them is still found.
        let msg = json!({"role": "user", "content": "x\"y\\z \u{e9}".repeat(1000), "model": "no"});
        let mut body = String::from("{\"messages\":[");
        while body.len() < 10_000_000 {
            body.push_str(&msg.to_string());
            body.push(',');
        }
        body.push_str("{}],\"model\":\"gpt-4.1\",\"stream\":true}");
        let r = info(&body);
        assert_eq!(r.model.as_deref(), Some("gpt-4.1"));
        let IncludeUsage::Added(out) = r.with_include_usage(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert!(out.ends_with(br#""stream":true,"stream_options":{"include_usage":true}}"#));
    }

    #[test]
    fn find_special_is_exact() {
        for len in 0..140 {
            for at in 0..len {
                for c in [b'"', b'\\', 0u8, 0x1f] {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    if at + 1 < len {
                        v[at + 1] = b'"';
                    }
                    assert_eq!(find_special(&v, 0), at);
                    assert_eq!(find_special(&v, at + 1), if at + 1 < len { at + 1 } else { len });
                }
            }
            let v: Vec<u8> =
                (0..len).map(|i| [0x20u8, 0x7f, 0x80, 0xff, b'!', b'#'][i % 6]).collect();
            assert_eq!(find_special(&v, 0), len);
        }
    }

    // --- Property tests: the scanner agrees with serde_json on what serde_json parses. ---

    const NAMES: &[&str] = &[
        "model",
        "stream",
        "stream_options",
        "include_usage",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "messages",
        "content",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(NAMES).prop_map(String::from),
            1 => "\\PC{0,8}",
            1 => Just("\"\\/\u{0}\u{1f}\u{7f}\u{e9}\u{1F600}".to_string()),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|n| json!(n)),
            (0u64..100).prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            // Floats that serde_json reads back exactly (it is built without float_roundtrip).
            (-4000i32..4000).prop_map(|m| json!(f64::from(m) / 4.0)),
            proptest::sample::select(&[1e22, -1.5e300, 2.5e-7][..]).prop_map(|f| json!(f)),
            key().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn top_object() -> impl Strategy<Value = Map<String, Value>> {
        proptest::collection::vec((key(), json_value()), 0..8)
            .prop_map(|kv| kv.into_iter().collect())
    }

    /// JSON text of `v`, with whitespace and `\u` escapes (surrogate pairs included) where the
    /// bits say so, so that the scanner sees what other serializers write.
    fn write(v: &Value, bits: &mut impl Iterator<Item = bool>, out: &mut String) {
        let ws = |out: &mut String, bits: &mut dyn Iterator<Item = bool>| {
            if bits.next().unwrap_or(false) {
                out.push_str(
                    [" ", "\n", "\t", "\r\n "][usize::from(bits.next().unwrap_or(false)) * 2
                        + usize::from(bits.next().unwrap_or(false))],
                );
            }
        };
        match v {
            Value::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if bits.next().unwrap_or(false) {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{u:04x}"));
                        }
                    } else {
                        let escaped = serde_json::to_string(&c.to_string()).unwrap();
                        out.push_str(&escaped[1..escaped.len() - 1]);
                    }
                }
                out.push('"');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(out, bits);
                    write(x, bits, out);
                    ws(out, bits);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(out, bits);
                    write(&Value::String(k.clone()), bits, out);
                    ws(out, bits);
                    out.push(':');
                    ws(out, bits);
                    write(x, bits, out);
                    ws(out, bits);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    /// What the scanner should say of a top-level object, by the rules of `RequestInfo`, read
    /// from serde_json's document (members in document order; keys unique).
    fn expected(top: &Map<String, Value>) -> Result<RequestInfo, RequestError> {
        fn bad<T>(f: Field) -> Result<T, RequestError> {
            Err(RequestError::BadField(f.name()))
        }
        let mut r = RequestInfo::default();
        let limit = |v: &Value, f: Field| match v {
            Value::Null => Ok(None),
            Value::Number(n) if n.is_u64() && !n.to_string().contains(['.', 'e', 'E']) => {
                Ok(n.as_u64())
            }
            _ => bad(f),
        };
        for (k, v) in top {
            match k.as_str() {
                "model" => match v {
                    Value::Null => {}
                    Value::String(s) => r.model = Some(s.clone()),
                    _ => return bad(Field::Model),
                },
                "stream" => match v {
                    Value::Null => {}
                    Value::Bool(b) => r.stream = *b,
                    _ => return bad(Field::Stream),
                },
                "stream_options" => match v {
                    Value::Null => {}
                    Value::Object(o) => {
                        for (k, v) in o {
                            if k == "include_usage" {
                                match v {
                                    Value::Null => {}
                                    Value::Bool(b) => r.include_usage = Some(*b),
                                    _ => return bad(Field::IncludeUsage),
                                }
                            } else if let Some(e) = first_error(v) {
                                return Err(e);
                            }
                        }
                    }
                    _ => return bad(Field::StreamOptions),
                },
                "max_tokens" => r.max_tokens = limit(v, Field::MaxTokens)?,
                "max_completion_tokens" => {
                    r.max_completion_tokens = limit(v, Field::MaxCompletionTokens)?
                }
                "max_output_tokens" => r.max_output_tokens = limit(v, Field::MaxOutputTokens)?,
                _ => {}
            }
        }
        Ok(r)
    }

    /// Values below the top level never fail the scan (serde_json wrote them).
    fn first_error(_: &Value) -> Option<RequestError> {
        None
    }

    fn same(a: &RequestInfo, b: &RequestInfo) -> bool {
        RequestInfo { edit: Edit::default(), ..a.clone() }
            == RequestInfo { edit: Edit::default(), ..b.clone() }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn prop_agrees_with_serde_json(
            top in top_object(),
            bits in proptest::collection::vec(any::<bool>(), 0..400),
        ) {
            let mut text = String::new();
            write(&Value::Object(top.clone()), &mut bits.into_iter(), &mut text);
            // serde_json reads what was written as the same document.
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &Value::Object(top.clone()));
            let got = parse(text.as_bytes());
            match (expected(&top), &got) {
                (Ok(want), Ok(got)) => prop_assert!(same(&want, got), "{text}: {want:?} {got:?}"),
                (want, got) => prop_assert_eq!(&want, got, "{}", text),
            }
        }

        #[test]
        fn prop_include_usage_changes_only_include_usage(
            mut top in top_object(),
            options in prop_oneof![
                Just(None),
                Just(Some(Value::Null)),
                Just(Some(json!({}))),
                Just(Some(json!({"include_usage": null}))),
                Just(Some(json!({"include_usage": true}))),
                Just(Some(json!({"include_usage": false}))),
                top_object().prop_map(|o| Some(Value::Object(o))),
            ],
            stream in any::<bool>(),
            bits in proptest::collection::vec(any::<bool>(), 0..400),
        ) {
            top.insert("stream".into(), Value::Bool(stream));
            match options {
                Some(o) => { top.insert("stream_options".into(), o); }
                None => { top.remove("stream_options"); }
            }
            let mut text = String::new();
            write(&Value::Object(top.clone()), &mut bits.into_iter(), &mut text);
            let Ok(r) = parse(text.as_bytes()) else { return Ok(()) };
            let result = with_include_usage(text.as_bytes()).unwrap();
            let asked = r.include_usage;
            match result {
                IncludeUsage::NotStreaming => prop_assert!(!stream),
                IncludeUsage::AlreadyRequested => prop_assert!(stream && asked == Some(true)),
                IncludeUsage::Declined => prop_assert!(stream && asked == Some(false)),
                IncludeUsage::Added(out) => {
                    prop_assert!(stream && asked.is_none());
                    let after: Value = serde_json::from_slice(&out).unwrap();
                    let mut after = after.as_object().unwrap().clone();
                    let mut options = after.remove("stream_options").unwrap();
                    prop_assert_eq!(options["include_usage"].clone(), Value::Bool(true));
                    options.as_object_mut().unwrap().remove("include_usage");
                    let mut before = top.clone();
                    let mut was = before.remove("stream_options").unwrap_or(Value::Null);
                    if let Some(o) = was.as_object_mut() {
                        o.remove("include_usage");
                    } else {
                        was = json!({});
                    }
                    prop_assert_eq!(options, was);
                    prop_assert_eq!(after, before);
                    // Byte for byte the same outside one inserted (or `null`-replacing) piece.
                    let (a, b) = (text.as_bytes(), &out[..]);
                    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                    let max_s = a.len().min(b.len()) - p;
                    let s = a.iter().rev().zip(b.iter().rev()).take(max_s).take_while(|(x, y)| x == y).count();
                    prop_assert!(a.len() - p - s <= 4, "{} -> {}", text, String::from_utf8_lossy(b));
                    let grown = b.len() - a.len();
                    prop_assert!([40, 39, 21, 20, 18, 0].contains(&grown), "{}", grown);
                    // The result is itself a request that now asks for usage.
                    prop_assert_eq!(parse(&out).unwrap().include_usage, Some(true));
                }
            }
        }

        #[test]
        fn prop_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
            let _ = with_include_usage(&bytes);
        }

        #[test]
        fn prop_cut_bodies_are_refused(top in top_object(), cut in any::<proptest::sample::Index>()) {
            // A prefix of a valid body is never invalid, only incomplete.
            let text = Value::Object(top).to_string();
            let at = cut.index(text.len());
            if text.is_char_boundary(at) && parse(text.as_bytes()).is_ok() {
                let e = parse(&text.as_bytes()[..at]).unwrap_err();
                prop_assert!(matches!(e, RequestError::Truncated | RequestError::Empty), "{e:?}");
            }
        }
    }
}
