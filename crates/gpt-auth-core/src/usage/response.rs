//! The answer's side of metering: which API a request went to, and how many tokens the answer
//! says it used, from a whole JSON body ([`from_json`]) or from a stream of server-sent events
//! ([`StreamMeter`], fed by [`super::sse::Parser`]).
//!
//! The APIs count tokens differently; [`Usage`] holds them one way: `input` is every input token
//! (cached or not), of which `cached_input` were read from a prompt cache and
//! `cache_creation_input` written to one; `output` is every output token, of which `reasoning`
//! were the model's hidden reasoning. OpenAI's counts are already of that shape; Anthropic's
//! `input_tokens` excludes the cache reads and writes, which are added to it here.
//!
//! Only the members needed are read: serde skips the rest, content included, without building
//! it (nor checking that its strings are UTF-8: an answer is metered for what its usage says
//! even if some of its text is broken). The usage chunk of a chat stream is first offered to a
//! quick reader of plain JSON ([`quick`]), which reads it as serde_json would or declines.

use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::sse::{Event, Parser};
use crate::log_safe::log_safe;

mod quick;
#[doc(hidden)]
pub use quick::readers_agree;

/// The APIs metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI `POST /v1/chat/completions` (and the many servers that copy it).
    ChatCompletions,
    /// OpenAI's legacy `POST /v1/completions`.
    Completions,
    /// OpenAI `POST /v1/responses`.
    Responses,
    /// OpenAI `POST /v1/embeddings` (input tokens only; never streamed).
    Embeddings,
    /// Anthropic `POST /v1/messages`.
    AnthropicMessages,
}

/// Longest error code kept from a provider's error answer.
pub const MAX_ERROR_CODE_LEN: usize = 64;

/// Bytes per token assumed by [`estimate`].
pub const BYTES_PER_TOKEN: u64 = 4;

impl Api {
    /// The API of a request path (without the query: nginx's `$uri`), recognised by its last
    /// segments: `/chat/completions`, `/completions`, `/responses`, `/embeddings`, `/messages`.
    /// Any prefix is accepted (`/v1/...`, Azure OpenAI's `/openai/deployments/NAME/...`, a
    /// proxy's own), one trailing `/` too, in any case: a client should not dodge metering by
    /// writing the path differently from the way an upstream still accepts. `None` for other
    /// paths, among them the Assistants API's `/threads/ID/messages` and sub-resources such as
    /// `/responses/ID` or `/messages/count_tokens`.
    pub fn from_path(path: &[u8]) -> Option<Api> {
        let path = match memchr::memchr(b'?', path) {
            Some(q) => &path[..q],
            None => path,
        };
        let path = path.strip_suffix(b"/").unwrap_or(path);
        let ends = |suffix: &[u8]| {
            path.len() >= suffix.len()
                && path[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        };
        if ends(b"/chat/completions") {
            Some(Api::ChatCompletions)
        } else if ends(b"/completions") {
            Some(Api::Completions)
        } else if ends(b"/responses") {
            Some(Api::Responses)
        } else if ends(b"/embeddings") {
            Some(Api::Embeddings)
        } else if ends(b"/messages") {
            let parent = &path[..path.len() - b"/messages".len()];
            let grandparent = match memchr::memrchr(b'/', parent) {
                Some(slash) => &parent[..slash],
                None => return Some(Api::AnthropicMessages),
            };
            let threads = grandparent.len() >= b"/threads".len()
                && grandparent[grandparent.len() - b"/threads".len()..]
                    .eq_ignore_ascii_case(b"/threads");
            (!threads).then_some(Api::AnthropicMessages)
        } else {
            None
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat completions",
            Api::Completions => "completions",
            Api::Responses => "responses",
            Api::Embeddings => "embeddings",
            Api::AnthropicMessages => "anthropic messages",
        }
    }

    /// Whether a streaming request reports usage only when asked with
    /// `stream_options.include_usage` (see `request::with_include_usage`): chat completions and
    /// completions. The Responses API and Anthropic always report it.
    pub fn needs_include_usage(self) -> bool {
        matches!(self, Api::ChatCompletions | Api::Completions)
    }
}

/// Tokens used by one request (see the module documentation for what each count includes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Usage {
    /// Every input token, cached or not.
    pub input: u64,
    /// Of `input`, read from a prompt cache (billed at a lower price).
    pub cached_input: u64,
    /// Of `input`, written to a prompt cache (Anthropic bills these at a higher price).
    pub cache_creation_input: u64,
    /// Every output token, reasoning included.
    pub output: u64,
    /// Of `output`, the model's reasoning (already counted in `output`).
    pub reasoning: u64,
}

impl Usage {
    /// Input and output tokens together.
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Why no usage came out of a whole answer. `Display` is short and safe to log: the provider's
/// error code is cut short and reduced to printable ASCII, no content is quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("answer is an HTML page, not JSON")]
    Html,
    /// Not JSON at all, or not an object: a compressed body, an answer cut off.
    #[error("answer is not a valid JSON object")]
    NotJson,
    /// JSON, but `usage`, `model` or `error` is not of the documented shape (or given twice).
    #[error("answer's usage, model or error has the wrong type")]
    Malformed,
    /// The provider refused or failed, and reported no usage: its error type or code.
    #[error("provider error \"{0}\"")]
    Provider(String),
    #[error("answer reports no usage")]
    MissingUsage,
}

/// The usage of a whole (non-streaming) JSON answer, and the model that answered if it says.
/// An answer that reports usage is metered even if it is also an error (a failed Responses
/// answer may have used tokens).
pub fn from_json(api: Api, body: &[u8]) -> Result<(Usage, Option<String>), UsageError> {
    let start = body.trim_ascii_start();
    match start.first() {
        Some(b'{') => {}
        Some(b'<') => return Err(UsageError::Html),
        _ => return Err(UsageError::NotJson),
    }
    let whole: WholeAnswer<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => UsageError::Malformed,
        _ => UsageError::NotJson,
    })?;
    let model = whole.model.filter(|m| !m.is_empty()).map(Cow::into_owned);
    if let Some(usage) = whole.usage.as_ref().and_then(|u| u.usage(api)) {
        return Ok((usage, model));
    }
    if let Some(error) = whole.error.filter(|e| !e.is_null()) {
        return Err(UsageError::Provider(error_code(&error)));
    }
    Err(UsageError::MissingUsage)
}

/// A rough usage for when the answer reports none (a compressed or unreadable body, a stream
/// cut off before its usage): one token per [`BYTES_PER_TOKEN`] (4) bytes, rounded up, of the
/// request body for input and of the answer body for output. That is OpenAI's rule of thumb for
/// English text; JSON and event-stream framing make it an overestimate, which is the side to err
/// on: cutting a stream short, or asking for no usage, must not be cheaper than honest use.
pub fn estimate(request_bytes: u64, response_bytes: u64) -> Usage {
    Usage {
        input: request_bytes.div_ceil(BYTES_PER_TOKEN),
        output: response_bytes.div_ceil(BYTES_PER_TOKEN),
        ..Usage::default()
    }
}

/// What to do with a stream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Send it on to the client.
    Forward,
    /// Leave it out: the usage chunk that the request rewrite asked for on the client's behalf.
    Remove,
}

/// Meters a streamed answer: fed each event of the stream (in order), it keeps the usage the
/// answer reports, the model, and whether the stream ended the way the API ends a complete one:
/// `data: [DONE]` for (chat) completions, a terminal `response.completed`,
/// `response.incomplete` or `response.failed` for the Responses API, `message_stop` for
/// Anthropic.
///
/// - Chat completions and completions: the usage is in the extra chunk that
///   `stream_options.include_usage` adds before `[DONE]`, with `"choices": []` (every other
///   chunk has `"usage": null`).
/// - Responses: `response.usage` of the terminal event (the stream has no `[DONE]`).
/// - Anthropic: input and cache tokens from `message_start`'s `message.usage`, output tokens
///   from the last `message_delta`'s `usage`, whose counts are cumulative; `message_start`'s
///   own small `output_tokens` is superseded by it, and so are its input counts where a
///   `message_delta` gives them too.
#[derive(Debug, Clone)]
pub struct StreamMeter {
    api: Api,
    remove_usage_chunk: bool,
    usage: Option<Usage>,
    anthropic: AnthropicCounts,
    model: Option<String>,
    ended: bool,
    error: bool,
    unreadable: u32,
}

/// Anthropic's counts as its events report them.
#[derive(Debug, Clone, Copy, Default)]
struct AnthropicCounts {
    input: u64,
    cache_creation: u64,
    cache_read: u64,
    output: u64,
}

impl StreamMeter {
    /// `usage_chunk_added`: the request was rewritten to ask for the usage chunk
    /// (`request::IncludeUsage::Added`), so the client did not ask for it and must not get it.
    pub fn new(api: Api, usage_chunk_added: bool) -> StreamMeter {
        StreamMeter {
            api,
            remove_usage_chunk: usage_chunk_added && api.needs_include_usage(),
            usage: None,
            anthropic: AnthropicCounts::default(),
            model: None,
            ended: false,
            error: false,
            unreadable: 0,
        }
    }

    /// Takes the next event of the stream; whether the client gets it.
    // Inlined into the parser's loop: the common event (a content delta) is decided here by a
    // look at its last bytes; the rest goes to `read_event`.
    #[inline]
    pub fn on_event(&mut self, event: &Event<'_>) -> Disposition {
        if self.ended || (self.api.needs_include_usage() && plain_chunk(event.data)) {
            return Disposition::Forward;
        }
        self.read_event(event)
    }

    /// Takes a chunk of the stream if it is only events that need no reading (content deltas
    /// of a chat stream, whose last bytes say `"usage":null`): they change nothing here, the
    /// parser is moved past them. Returns false, and takes nothing, otherwise: then the chunk
    /// goes to `parser.feed` with [`StreamMeter::on_event`] as usual.
    #[inline]
    pub fn skip_plain(&self, parser: &mut Parser, chunk: &[u8]) -> bool {
        !self.ended && self.api.needs_include_usage() && parser.skip_events(chunk, plain_chunk)
    }

    #[inline(never)]
    fn read_event(&mut self, event: &Event<'_>) -> Disposition {
        match self.api {
            Api::ChatCompletions | Api::Completions | Api::Embeddings => self.chat(event.data),
            Api::Responses => {
                self.responses(event);
                Disposition::Forward
            }
            Api::AnthropicMessages => {
                self.anthropic(event);
                Disposition::Forward
            }
        }
    }

    /// The usage reported so far; `None` when the stream reported none (yet). For a stream that
    /// did not end (see [`StreamMeter::ended`]) it can be short of what was used.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The model the answer names (the first non-empty one of the events read: in a chat stream
    /// the usage chunk or an error chunk, not the content deltas).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the stream's terminal event came.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the stream reported an error (an `error` event, an error chunk, or
    /// `response.failed`).
    pub fn error(&self) -> bool {
        self.error
    }

    /// Events read (those that may hold usage or an error: content deltas are not parsed) whose
    /// data was not JSON of the expected shape (they are forwarded as they are).
    pub fn unreadable_events(&self) -> u32 {
        self.unreadable
    }

    fn note_model(&mut self, model: Option<Cow<'_, str>>) {
        if self.model.is_none() {
            if let Some(m) = model.filter(|m| !m.is_empty()) {
                self.model = Some(m.into_owned());
            }
        }
    }

    fn unreadable(&mut self) {
        self.unreadable = self.unreadable.saturating_add(1);
    }

    fn chat(&mut self, data: &[u8]) -> Disposition {
        if data.len() < 16 && data.trim_ascii() == b"[DONE]" {
            self.ended = true;
            return Disposition::Forward;
        }
        // Most chunks are content deltas: a chunk is read only if it may hold a usage object or
        // an error (a scan, no JSON parse, no allocation). The model is taken from the chunk
        // that is read (the usage chunk names it like every other).
        if ends_with_null_usage(data)
            || (!may_hold(data, b"\"usage\"", b'{') && !may_hold(data, b"\"error\"", 0))
        {
            return Disposition::Forward;
        }
        let Some(chunk) =
            quick::chat_chunk(data).or_else(|| serde_json::from_slice::<ChatChunk>(data).ok())
        else {
            self.unreadable();
            return Disposition::Forward;
        };
        self.note_model(chunk.model.map(Cow::Owned));
        if chunk.error.is_some() {
            self.error = true;
        }
        let Some(usage) = chunk.usage.as_ref().and_then(|u| u.usage(self.api)) else {
            return Disposition::Forward;
        };
        self.usage = Some(usage);
        // Some servers send the usage chunk with `"choices": null` or none at all.
        if self.remove_usage_chunk && chunk.choices.0.unwrap_or(0) == 0 {
            Disposition::Remove
        } else {
            Disposition::Forward
        }
    }

    fn responses(&mut self, event: &Event<'_>) {
        const READ: &[&[u8]] = &[
            b"response.created",
            b"response.in_progress",
            b"response.completed",
            b"response.incomplete",
            b"response.failed",
            b"error",
        ];
        // Deltas are most of the stream and say nothing about usage: skipped by name unread.
        if !event.name.is_empty() && !READ.contains(&event.name) {
            return;
        }
        let Ok(e) = serde_json::from_slice::<ResponsesEvent<'_>>(event.data) else {
            self.unreadable();
            return;
        };
        let kind = e.kind.as_deref().map(str::as_bytes).unwrap_or(event.name);
        let terminal =
            matches!(kind, b"response.completed" | b"response.incomplete" | b"response.failed");
        if kind == b"error" || kind == b"response.failed" {
            self.error = true;
        }
        if let Some(response) = e.response {
            self.note_model(response.model);
            if let Some(usage) = response.usage.as_ref().and_then(|u| u.usage(self.api)) {
                self.usage = Some(usage);
            }
        }
        if terminal {
            self.ended = true;
        }
    }

    fn anthropic(&mut self, event: &Event<'_>) {
        const READ: &[&[u8]] = &[b"message_start", b"message_delta", b"message_stop", b"error"];
        if !event.name.is_empty() && !READ.contains(&event.name) {
            return;
        }
        let Ok(e) = serde_json::from_slice::<AnthropicEvent<'_>>(event.data) else {
            self.unreadable();
            return;
        };
        let kind = e.kind.as_deref().map(str::as_bytes).unwrap_or(event.name);
        let usage = match kind {
            b"message_start" => e.message.and_then(|m| {
                self.note_model(m.model);
                m.usage
            }),
            b"message_delta" => e.usage,
            b"message_stop" => {
                self.ended = true;
                None
            }
            b"error" => {
                self.error = true;
                None
            }
            _ => None,
        };
        if let Some(u) = usage {
            let c = &mut self.anthropic;
            let keep = |slot: &mut u64, v: Option<u64>| *slot = v.unwrap_or(*slot);
            keep(&mut c.input, u.input_tokens);
            keep(&mut c.cache_creation, u.cache_creation_input_tokens);
            keep(&mut c.cache_read, u.cache_read_input_tokens);
            keep(&mut c.output, u.output_tokens);
            self.usage = Some(anthropic_usage(c.input, c.cache_creation, c.cache_read, c.output));
        }
    }
}

/// The common chunk as OpenAI writes it (compact JSON, `"usage":null` last when usage was
/// asked for): a comparison of its last bytes. The `"` after `,` cannot be escaped, so this is
/// the last member of the object the final `}` closes, the top-level one. Anything else
/// (white space, another order) is left to [`ends_with_null_usage`] and [`may_hold`].
#[inline]
fn plain_chunk(data: &[u8]) -> bool {
    const END: &[u8; 14] = b",\"usage\":null}";
    // Two overlapping 8-byte words: the comparison of a constant is then two loads, not a loop.
    let word = |b: &[u8]| b.try_into().map(u64::from_ne_bytes).ok();
    let n = data.len();
    n >= END.len()
        && word(&data[n - 14..n - 6]) == word(&END[..8])
        && word(&data[n - 8..]) == word(&END[6..])
}

/// Whether a chunk's last member is `"usage": null` (how OpenAI-compatible servers send every
/// chunk but the usage chunk when usage was asked for): then it has no usage (a member appears
/// once) and is an ordinary chunk, not an error. A scan of its last bytes.
fn ends_with_null_usage(data: &[u8]) -> bool {
    // Backwards over the last bytes: `}`, `null`, `:`, `"usage"` with white space between.
    let mut i = data.len();
    let mut back = |token: &[u8]| -> bool {
        while i > 0 && matches!(data[i - 1], b' ' | b'\t' | b'\n' | b'\r') {
            i -= 1;
        }
        if i >= token.len() && &data[i - token.len()..i] == token {
            i -= token.len();
            true
        } else {
            false
        }
    };
    back(b"}")
        && back(b"null")
        && back(b":")
        && back(b"\"usage\"")
        && (i == 0 || data[i - 1] != b'\\')
}

/// Whether `data` (one JSON value) may have the member `key` (quoted) whose value starts with
/// `first` (any value for 0). Never false for a chunk that has it: a key is `"name"`, white
/// space, `:`, white space, the value; inside a JSON string a `"` is always escaped, so the
/// quoted name cannot appear there unescaped. It can be true for chunks that lack it (then the
/// chunk is parsed: the scan only saves work).
fn may_hold(data: &[u8], key: &[u8], first: u8) -> bool {
    // The searchers are built once: building one costs more than a search of a chunk.
    static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
    let finder = match key {
        b"\"usage\"" => &*USAGE,
        b"\"error\"" => &*ERROR,
        _ => return memchr::memmem::find(data, key).is_some(),
    };
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut from = 0;
    // `find` on a slice, not `find_iter`: the iterator copies the searcher each time.
    while let Some(at) = data.get(from..).and_then(|d| finder.find(d)) {
        from += at + key.len();
        let mut rest = data[from..].iter().skip_while(|b| ws(b));
        if rest.next() == Some(&b':') && (first == 0 || rest.find(|b| !ws(b)) == Some(&first)) {
            return true;
        }
    }
    false
}

fn anthropic_usage(input: u64, cache_creation: u64, cache_read: u64, output: u64) -> Usage {
    Usage {
        input: input.saturating_add(cache_creation).saturating_add(cache_read),
        cached_input: cache_read,
        cache_creation_input: cache_creation,
        output,
        reasoning: 0,
    }
}

/// `Deserialize` for a struct of `Default` members from a JSON object whose member names are
/// compared as bytes: serde_json then hands each name over as it is in the input, where the
/// derived impl checks every name for UTF-8 first (most of the cost of reading a small chunk).
/// Unknown members are skipped unread; of a repeated member the last counts.
macro_rules! by_member_name {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        by_member_name!(@impl $ty { $($field: stringify!($field)),* });
    };
    (@impl $ty:ident { $($field:ident: $name:expr),* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a JSON object (", stringify!($ty), ")"))
                    }

                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        let mut out = $ty::default();
                        while let Some(name) = map.next_key::<Name<'de>>()? {
                            // By length first: most names are told apart without comparing
                            // their bytes.
                            let n = &*name.0;
                            $(if n.len() == $name.len() && n == $name.as_bytes() {
                                out.$field = map.next_value()?;
                                continue;
                            })*
                            map.next_value::<IgnoredAny>()?;
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

/// A member name as bytes (borrowed from the input unless it had escapes). serde_json's byte
/// strings skip the check for control characters that its text strings make; a name with one
/// is refused here instead (a raw one is not JSON; an escaped one is, but names no member read
/// here: refusing the answer then keeps "read only what is JSON" true at the cost of an answer
/// no provider sends).
struct Name<'a>(Cow<'a, [u8]>);

fn name<'a, E: serde::de::Error>(v: Cow<'a, [u8]>) -> Result<Name<'a>, E> {
    if v.iter().any(|&b| b < 0x20) {
        return Err(E::custom("control character in a member name"));
    }
    Ok(Name(v))
}

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<Name<'de>, E> {
                name(Cow::Borrowed(v))
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Name<'de>, E> {
                name(Cow::Owned(v.to_vec()))
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                name(Cow::Borrowed(v.as_bytes()))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                name(Cow::Owned(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A usage object in any of the APIs' dialects (unknown members ignored).
#[derive(Debug, Default, PartialEq)]
struct RawUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

by_member_name!(RawUsage {
    prompt_tokens,
    completion_tokens,
    input_tokens,
    output_tokens,
    prompt_tokens_details,
    input_tokens_details,
    completion_tokens_details,
    output_tokens_details,
    cache_creation_input_tokens,
    cache_read_input_tokens,
});

/// The details of the input (`cached_tokens`, `cache_write_tokens`) or of the output
/// (`reasoning_tokens`).
#[derive(Debug, Default, PartialEq)]
struct Details {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

by_member_name!(Details { cached_tokens, cache_write_tokens, reasoning_tokens });

impl RawUsage {
    /// The counts, or `None` when the object has neither an input nor an output count.
    fn usage(&self, api: Api) -> Option<Usage> {
        if api == Api::AnthropicMessages {
            if self.input_tokens.is_none() && self.output_tokens.is_none() {
                return None;
            }
            return Some(anthropic_usage(
                self.input_tokens.unwrap_or(0),
                self.cache_creation_input_tokens.unwrap_or(0),
                self.cache_read_input_tokens.unwrap_or(0),
                self.output_tokens.unwrap_or(0),
            ));
        }
        // OpenAI's APIs: chat completions, completions and embeddings say prompt/completion,
        // Responses says input/output; either is taken from any of them.
        let (input, output) = match api {
            Api::Responses => (
                self.input_tokens.or(self.prompt_tokens),
                self.output_tokens.or(self.completion_tokens),
            ),
            _ => (
                self.prompt_tokens.or(self.input_tokens),
                self.completion_tokens.or(self.output_tokens),
            ),
        };
        if input.is_none() && output.is_none() {
            return None;
        }
        let input_details =
            self.prompt_tokens_details.as_ref().or(self.input_tokens_details.as_ref());
        let output_details =
            self.completion_tokens_details.as_ref().or(self.output_tokens_details.as_ref());
        Some(Usage {
            input: input.unwrap_or(0),
            cached_input: input_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_creation_input: input_details.and_then(|d| d.cache_write_tokens).unwrap_or(0),
            output: output.unwrap_or(0),
            reasoning: output_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        })
    }
}

/// A whole answer of any of the APIs.
#[derive(Deserialize)]
struct WholeAnswer<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<RawUsage>,
    /// OpenAI's `{"error": {"type", "code", "message"}}`, Anthropic's `{"type": "error",
    /// "error": {"type", "message"}}`; `null` in a successful Responses answer.
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The error's type or code, safe to log.
fn error_code(error: &serde_json::Value) -> String {
    let code = ["type", "code"]
        .iter()
        .find_map(|k| error.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()))
        .or_else(|| error.as_str())
        .unwrap_or("unknown");
    log_safe(code, MAX_ERROR_CODE_LEN)
}

/// A chunk of a chat completions (or completions) stream: only what metering needs.
#[derive(Debug, Default, PartialEq)]
struct ChatChunk {
    model: Option<String>,
    /// How many choices (absent or `null`: none), counted without reading them.
    choices: ArrayLen,
    usage: Option<RawUsage>,
    error: Option<IgnoredAny>,
}

by_member_name!(ChatChunk { model, choices, usage, error });

/// The length of an array (`None` for `null` or absent), its elements skipped unread.
#[derive(Debug, Default, PartialEq)]
struct ArrayLen(Option<usize>);

impl<'de> Deserialize<'de> for ArrayLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ArrayLen, D::Error> {
        array_len(d).map(ArrayLen)
    }
}

#[derive(Deserialize)]
struct ResponsesEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<ResponseObject<'a>>,
}

#[derive(Deserialize)]
struct ResponseObject<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<AnthropicMessage<'a>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Deserialize)]
struct AnthropicMessage<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// The length of an array (or `None` for `null`), its elements skipped unread.
fn array_len<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct Len;
    impl<'de> Visitor<'de> for Len {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array or null")
        }

        fn visit_unit<E>(self) -> Result<Option<usize>, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Option<usize>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_seq(Len)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<usize>, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(Some(n))
        }
    }
    d.deserialize_option(Len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::sse::{Item, Parser};
    use proptest::prelude::*;

    #[test]
    fn member_names_with_control_characters_are_refused() {
        let ok = br#"{"model":"m","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert!(from_json(Api::Embeddings, ok).is_ok());
        let raw = b"{\"model\":\"m\",\"usage\":{\"prompt_tokens\":8,\"total_token\x0e\":8}}";
        assert!(from_json(Api::Embeddings, raw).is_err(), "a raw control character is not JSON");
        let escaped = br#"{"usage":{"prompt_tokens":8,"x\u000e":1}}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(escaped).is_ok(), "JSON, escaped");
        assert!(from_json(Api::Embeddings, escaped).is_err());
    }

    #[test]
    fn plain_chunks_are_told_by_their_last_bytes() {
        assert!(plain_chunk(br#"{"choices":[{"delta":{"content":"Hi"}}],"usage":null}"#));
        assert!(plain_chunk(br#"{"x":1,"usage":null}"#));
        for other in [
            &br#"{"usage":null}"#[..], // the only member: left to the general check
            br#"{"x":1,"usage": null}"#,
            br#"{"x":1,"usage":null} "#,
            br#"{"x":1,"usage":{"prompt_tokens":1}}"#,
            br#"{"x":"say "usage":null}"#,
            b"",
            b"[DONE]",
        ] {
            assert!(!plain_chunk(other), "{}", String::from_utf8_lossy(other));
        }
        // What the check skips is never a usage chunk or an error under the full reading.
        let mut m = StreamMeter::new(Api::ChatCompletions, true);
        let e = |data: &'static [u8]| Event {
            name: b"",
            data,
            span: crate::usage::sse::Span { start: 0, end: 0 },
        };
        assert_eq!(
            m.on_event(&e(br#"{"model":"m","choices":[{"delta":{}}],"usage":null}"#)),
            Disposition::Forward
        );
        assert_eq!((m.usage(), m.model(), m.error()), (None, None, false));
    }

    #[test]
    fn may_hold_finds_every_member_and_skips_content() {
        let usage = br#"{"choices":[],"usage" :
 {"prompt_tokens":1}}"#;
        assert!(may_hold(usage, b"\"usage\"", b'{'));
        assert!(!may_hold(
            br#"{"choices":[{"delta":{"content":"usage"}}],"usage":null}"#,
            b"\"usage\"",
            b'{'
        ));
        assert!(!may_hold(br#"{"delta":{"content":"say \"usage\": {"}}"#, b"\"usage\"", b'{'));
        assert!(may_hold(br#"{"error":{"message":"x"}}"#, b"\"error\"", 0));
        assert!(!may_hold(br#"{"delta":{"content":"error"}}"#, b"\"error\"", 0));
        assert!(ends_with_null_usage(b"{\"choices\":[],\"usage\" : null }\n"));
        assert!(!ends_with_null_usage(br#"{"choices":[],"usage":{"prompt_tokens":1}}"#));
        assert!(!ends_with_null_usage(br#"{"content":"x\"usage\":null}"#));
    }

    const ANTHROPIC: &[u8] =
        include_bytes!("../../tests/fixtures/usage/anthropic-messages-stream.sse");
    const CHAT: &[u8] = include_bytes!("../../tests/fixtures/usage/openai-chat-stream.sse");
    const RESPONSES: &[u8] =
        include_bytes!("../../tests/fixtures/usage/openai-responses-stream.sse");

    fn u(input: u64, cached: u64, creation: u64, output: u64, reasoning: u64) -> Usage {
        Usage { input, cached_input: cached, cache_creation_input: creation, output, reasoning }
    }

    #[test]
    fn paths() {
        use Api::*;
        for (path, api) in [
            ("/v1/chat/completions", Some(ChatCompletions)),
            ("/chat/completions", Some(ChatCompletions)),
            ("/openai/deployments/gpt-4o-prod/chat/completions", Some(ChatCompletions)),
            ("/openai/v1/chat/completions", Some(ChatCompletions)),
            ("/proxy/openai/v1/chat/completions/", Some(ChatCompletions)),
            ("/V1/Chat/Completions", Some(ChatCompletions)),
            ("/v1/chat/completions?api-version=2024-10-21", Some(ChatCompletions)),
            ("/v1/completions", Some(Completions)),
            ("/openai/deployments/instruct/completions", Some(Completions)),
            ("/v1/responses", Some(Responses)),
            ("/openai/v1/responses", Some(Responses)),
            ("/v1/embeddings", Some(Embeddings)),
            ("/openai/deployments/ada/embeddings", Some(Embeddings)),
            ("/v1/messages", Some(AnthropicMessages)),
            ("/anthropic/v1/messages", Some(AnthropicMessages)),
            ("/messages", Some(AnthropicMessages)),
            // Not metered: other resources, sub-resources, look-alikes.
            ("/v1/threads/thread_abc/messages", None),
            ("/v1/threads/thread_abc/messages/", None),
            ("/v1/messages/count_tokens", None),
            ("/v1/messages/batches", None),
            ("/v1/responses/resp_123", None),
            ("/v1/responses/resp_123/input_items", None),
            ("/v1/chat/completions/chatcmpl-123", None),
            ("/v1/models", None),
            ("/v1/mycompletions", None),
            ("/v1/chatcompletions", None),
            ("", None),
            ("/", None),
        ] {
            assert_eq!(Api::from_path(path.as_bytes()), api, "{path}");
        }
        assert!(ChatCompletions.needs_include_usage() && Completions.needs_include_usage());
        assert!(!Responses.needs_include_usage() && !AnthropicMessages.needs_include_usage());
    }

    #[test]
    fn whole_answers() {
        // The non-streaming examples of OpenAI's OpenAPI description (openai/openai-openapi,
        // openapi.yaml: createChatCompletion "Default", createCompletion "No streaming",
        // createResponse "Text input"; createEmbedding without its elided floats).
        let chat = r#"{
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
            "created": 1741569952, "model": "gpt-5.4",
            "choices": [{"index": 0, "message": {"role": "assistant",
              "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
              "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default"}"#;
        assert_eq!(
            from_json(Api::ChatCompletions, chat.as_bytes()),
            Ok((u(19, 0, 0, 10, 0), Some("gpt-5.4".into())))
        );
        let completion = r#"{"id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7", "object": "text_completion",
            "created": 1589478378, "model": "VAR_completion_model_id",
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"text": "\n\nThis is indeed a test", "index": 0, "logprobs": null,
              "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}"#;
        assert_eq!(from_json(Api::Completions, completion.as_bytes()).unwrap().0, u(5, 0, 0, 7, 0));
        let embedding = r#"{"object": "list", "data": [{"object": "embedding",
            "embedding": [0.0023064255, -0.009327292, -0.0028842222], "index": 0}],
            "model": "text-embedding-ada-002", "usage": {"prompt_tokens": 8, "total_tokens": 8}}"#;
        assert_eq!(
            from_json(Api::Embeddings, embedding.as_bytes()),
            Ok((u(8, 0, 0, 0, 0), Some("text-embedding-ada-002".into())))
        );
        let response = r#"{"id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
            "object": "response", "created_at": 1741476542, "status": "completed",
            "completed_at": 1741476543, "error": null, "incomplete_details": null,
            "instructions": null, "max_output_tokens": null, "model": "gpt-5.4",
            "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
              "status": "completed", "role": "assistant", "content": [{"type": "output_text",
              "text": "In a peaceful grove beneath a silver moon...", "annotations": []}]}],
            "parallel_tool_calls": true, "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled",
            "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0,
              "cache_write_tokens": 0}, "output_tokens": 87,
              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123},
            "user": null, "metadata": {}}"#;
        assert_eq!(
            from_json(Api::Responses, response.as_bytes()),
            Ok((u(36, 0, 0, 87, 0), Some("gpt-5.4".into())))
        );
        // Cached and reasoning tokens are parts of the totals (the shape of the usage objects
        // above, with counts that exercise them).
        let reasoning = r#"{"model":"o3","usage":{"prompt_tokens":2048,"completion_tokens":900,
            "prompt_tokens_details":{"cached_tokens":1024,"cache_write_tokens":512},
            "completion_tokens_details":{"reasoning_tokens":640}}}"#;
        assert_eq!(
            from_json(Api::ChatCompletions, reasoning.as_bytes()).unwrap().0,
            u(2048, 1024, 512, 900, 640)
        );
        let reasoning = r#"{"model":"o3","usage":{"input_tokens":2048,"output_tokens":900,
            "input_tokens_details":{"cached_tokens":1024},
            "output_tokens_details":{"reasoning_tokens":640}}}"#;
        assert_eq!(
            from_json(Api::Responses, reasoning.as_bytes()).unwrap().0,
            u(2048, 1024, 0, 900, 640)
        );
        // Anthropic's Messages API reference example response, and the cache counts of its
        // prompt caching documentation: input_tokens excludes cache reads and writes.
        let message = r#"{"content": [{"text": "Hi! My name is Claude.", "type": "text"}],
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "model": "claude-sonnet-4-5-20250929",
            "role": "assistant", "stop_reason": "end_turn", "stop_sequence": null,
            "type": "message", "usage": {"input_tokens": 2095, "output_tokens": 503}}"#;
        assert_eq!(
            from_json(Api::AnthropicMessages, message.as_bytes()),
            Ok((u(2095, 0, 0, 503, 0), Some("claude-sonnet-4-5-20250929".into())))
        );
        let cached = r#"{"type":"message","model":"claude-opus-4-6","content":[],
            "usage":{"input_tokens":21,"cache_creation_input_tokens":188086,
            "cache_read_input_tokens":1000,"output_tokens":393,
            "cache_creation":{"ephemeral_5m_input_tokens":188086,"ephemeral_1h_input_tokens":0},
            "service_tier":"standard"}}"#;
        assert_eq!(
            from_json(Api::AnthropicMessages, cached.as_bytes()).unwrap().0,
            u(21 + 188_086 + 1000, 1000, 188_086, 393, 0)
        );
    }

    #[test]
    fn answers_without_usage() {
        use UsageError as E;
        let api = Api::ChatCompletions;
        assert_eq!(from_json(api, b"<html><body>502 Bad Gateway</body></html>"), Err(E::Html));
        assert_eq!(from_json(api, b"\x1f\x8b\x08\x00"), Err(E::NotJson), "gzip");
        assert_eq!(from_json(api, b""), Err(E::NotJson));
        assert_eq!(from_json(api, b"[{\"usage\":{}}]"), Err(E::NotJson));
        assert_eq!(from_json(api, b"{\"usage\":{\"prompt_tokens\":1}"), Err(E::NotJson));
        assert_eq!(from_json(api, b"{\"usage\":{\"prompt_tokens\":1}} x"), Err(E::NotJson));
        assert_eq!(from_json(api, b"{\"usage\":{\"prompt_tokens\":\"1\"}}"), Err(E::Malformed));
        assert_eq!(from_json(api, b"{\"usage\":{\"prompt_tokens\":-1}}"), Err(E::Malformed));
        assert_eq!(from_json(api, b"{\"usage\":[]}"), Err(E::Malformed));
        assert_eq!(from_json(api, b"{\"model\":1}"), Err(E::Malformed));
        assert_eq!(from_json(api, b"{\"usage\":{},\"usage\":{}}"), Err(E::Malformed));
        assert_eq!(from_json(api, b"{}"), Err(E::MissingUsage));
        assert_eq!(from_json(api, b"{\"usage\":null}"), Err(E::MissingUsage));
        assert_eq!(from_json(api, b"{\"usage\":{\"total_tokens\":5}}"), Err(E::MissingUsage));
        // Providers' error answers.
        let openai = br#"{"error": {"message": "Incorrect API key provided: sk-abc***.",
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#;
        assert_eq!(from_json(api, openai), Err(E::Provider("invalid_request_error".into())));
        let anthropic = br#"{"type": "error", "error": {"type": "overloaded_error",
            "message": "Overloaded"}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
        assert_eq!(
            from_json(Api::AnthropicMessages, anthropic),
            Err(E::Provider("overloaded_error".into()))
        );
        let failed = br#"{"object":"response","status":"failed","model":"gpt-4o-mini",
            "error":{"code":"server_error","message":"The model failed to generate a response."},
            "usage":null}"#;
        assert_eq!(from_json(Api::Responses, failed), Err(E::Provider("server_error".into())));
        // ... but usage, when reported, is metered even beside an error.
        let failed_with_usage = br#"{"status":"failed","error":{"code":"server_error"},
            "usage":{"input_tokens":10,"output_tokens":2}}"#;
        assert_eq!(from_json(Api::Responses, failed_with_usage).unwrap().0, u(10, 0, 0, 2, 0));
        // Error codes are cut short and printable.
        let evil =
            serde_json::json!({"error": {"type": format!("x\r\nInjected: 1{}", "y".repeat(200))}});
        let msg = from_json(api, evil.to_string().as_bytes()).unwrap_err().to_string();
        assert!(msg.bytes().all(|b| (b' '..=b'~').contains(&b)) && msg.len() < 100, "{msg}");
        assert_eq!(
            from_json(api, br#"{"error":"rate limited"}"#),
            Err(E::Provider("rate limited".into()))
        );
        assert_eq!(from_json(api, br#"{"error":{}}"#), Err(E::Provider("unknown".into())));
    }

    #[test]
    fn estimates() {
        assert_eq!(estimate(0, 0), Usage::default());
        assert_eq!(estimate(1, 4), u(1, 0, 0, 1, 0));
        assert_eq!(estimate(4001, 8), u(1001, 0, 0, 2, 0));
        assert_eq!(estimate(u64::MAX, 5).input, u64::MAX / 4 + 1);
        assert_eq!(u(3, 1, 1, 4, 2).total(), 7);
        assert_eq!(u(u64::MAX, 0, 0, 1, 0).total(), u64::MAX);
    }

    /// Feeds a stream in chunks through the parser and a meter, like the module's body filter:
    /// bytes are sent on as soon as they are released, removed events left out. Returns the
    /// meter, what the client gets and the dispositions of the events.
    fn filter(api: Api, added: bool, chunks: &[&[u8]]) -> (StreamMeter, Vec<u8>, Vec<Disposition>) {
        let mut parser = Parser::new();
        let mut meter = StreamMeter::new(api, added);
        let mut held: Vec<u8> = Vec::new(); // bytes from `sent_up_to` on
        let mut sent_up_to = 0u64;
        let mut out = Vec::new();
        let mut verdicts = Vec::new();
        let mut cuts: Vec<(u64, u64)> = Vec::new();
        let mut release =
            |held: &mut Vec<u8>, sent_up_to: &mut u64, upto: u64, cuts: &mut Vec<(u64, u64)>| {
                let mut at = *sent_up_to;
                for &(s, e) in cuts.iter() {
                    out.extend_from_slice(
                        &held[(at - *sent_up_to) as usize..(s - *sent_up_to) as usize],
                    );
                    at = e;
                }
                cuts.clear();
                out.extend_from_slice(
                    &held[(at - *sent_up_to) as usize..(upto - *sent_up_to) as usize],
                );
                held.drain(..(upto - *sent_up_to) as usize);
                *sent_up_to = upto;
            };
        for chunk in chunks {
            held.extend_from_slice(chunk);
            parser.feed(chunk, |item| {
                if let Item::Event(e) = item {
                    let d = meter.on_event(&e);
                    verdicts.push(d);
                    if d == Disposition::Remove {
                        cuts.push((e.span.start, e.span.end));
                    }
                }
            });
            release(&mut held, &mut sent_up_to, parser.released(), &mut cuts);
        }
        parser.finish(|_| {});
        let end = sent_up_to + held.len() as u64;
        release(&mut held, &mut sent_up_to, end, &mut cuts);
        (meter, out, verdicts)
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).unwrap()
    }

    fn usage_chunk_span() -> (usize, usize) {
        let start = CHAT.windows(14).position(|w| w == b"\"choices\":[],\"").unwrap();
        let start = CHAT[..start].windows(2).rposition(|w| w == b"\n\n").unwrap() + 2;
        let end = start + CHAT[start..].windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        (start, end)
    }

    #[test]
    fn chat_stream() {
        use Disposition::*;
        let (meter, out, verdicts) = filter(Api::ChatCompletions, true, &[CHAT]);
        assert_eq!(meter.usage(), Some(u(19, 0, 0, 10, 0)));
        assert_eq!(meter.model(), Some("gpt-4o-mini"));
        assert!(meter.ended() && !meter.error());
        assert_eq!(meter.unreadable_events(), 0);
        assert_eq!(verdicts, [Forward, Forward, Forward, Remove, Forward]);
        let (s, e) = usage_chunk_span();
        assert_eq!(out, [&CHAT[..s], &CHAT[e..]].concat(), "the usage chunk is cut out");
        assert!(out.ends_with(b"\n\ndata: [DONE]\n\n"));
        // The client asked for it itself: it keeps it.
        let (meter, out, verdicts) = filter(Api::ChatCompletions, false, &[CHAT]);
        assert_eq!(meter.usage(), Some(u(19, 0, 0, 10, 0)));
        assert_eq!(verdicts, [Forward; 5]);
        assert_eq!(out, CHAT);
        // Legacy completions stream the same way; no API but those two has chunks removed.
        assert_eq!(filter(Api::Completions, true, &[CHAT]).2[3], Remove);
        assert!(!filter(Api::Responses, true, &[CHAT]).2.contains(&Remove));
        // Cut off before the usage: none, not ended.
        let (s, _) = usage_chunk_span();
        let (meter, _, _) = filter(Api::ChatCompletions, true, &[&CHAT[..s]]);
        assert_eq!((meter.usage(), meter.ended()), (None, false));
    }

    #[test]
    fn chat_stream_variants() {
        use Disposition::*;
        let stream = concat!(
            // Azure OpenAI's first chunk: no choices yet, no usage: kept.
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",",
            "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"model\":\"gpt-4o-2024-11-20\",\"usage\":null}\n\n",
            ": keep-alive\n\n",
            // A usage chunk with null choices, as some servers send it.
            "data: {\"choices\":null,\"model\":\"gpt-4o-2024-11-20\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
            "data: [DONE]\n\n",
            "data: {\"late\":true}\n\n",
        );
        let (meter, out, verdicts) = filter(Api::ChatCompletions, true, &[stream.as_bytes()]);
        assert_eq!(verdicts, [Forward, Forward, Remove, Forward, Forward]);
        assert_eq!(meter.model(), Some("gpt-4o-2024-11-20"), "the first non-empty model");
        assert_eq!(meter.usage(), Some(u(3, 0, 0, 1, 0)));
        assert!(!String::from_utf8(out).unwrap().contains("prompt_tokens"));
        // Usage in every chunk (cumulative, as some servers do): the last counts, chunks with
        // choices are never removed.
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
            "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
            "data: not json\n\n",
            "data: {\"usage\":{\"prompt_tokens\":\n\n",
            "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n",
        );
        let (meter, _, verdicts) = filter(Api::ChatCompletions, true, &[stream.as_bytes()]);
        assert_eq!(verdicts, [Forward; 5]);
        assert_eq!(meter.usage(), Some(u(3, 0, 0, 2, 0)));
        assert_eq!(meter.unreadable_events(), 1);
        assert!(meter.error() && !meter.ended());
    }

    #[test]
    fn responses_stream() {
        let (meter, out, verdicts) = filter(Api::Responses, false, &[RESPONSES]);
        assert_eq!(meter.usage(), Some(u(37, 0, 0, 11, 0)));
        assert_eq!(meter.model(), Some("gpt-5.4"));
        assert!(meter.ended() && !meter.error());
        assert_eq!(verdicts, [Disposition::Forward; 9]);
        assert_eq!(out, RESPONSES);
        // Without event names (the type in the data decides), incomplete and failed endings.
        for (ending, error) in [("response.incomplete", false), ("response.failed", true)] {
            let stream = format!(
                "data: {{\"type\":\"response.created\",\"response\":{{\"model\":\"o4-mini\",\"usage\":null}}}}\n\n\
                 data: {{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}}\n\n\
                 data: {{\"type\":\"{ending}\",\"response\":{{\"model\":\"o4-mini\",\"status\":\"x\",\
                 \"usage\":{{\"input_tokens\":5,\"input_tokens_details\":{{\"cached_tokens\":2}},\
                 \"output_tokens\":100,\"output_tokens_details\":{{\"reasoning_tokens\":64}}}}}}}}\n\n"
            );
            let (meter, _, _) = filter(Api::Responses, false, &[stream.as_bytes()]);
            assert_eq!(meter.usage(), Some(u(5, 2, 0, 100, 64)), "{ending}");
            assert_eq!((meter.ended(), meter.error()), (true, error), "{ending}");
            assert_eq!(meter.model(), Some("o4-mini"));
        }
        // An error event (the reference's example) and a stream cut off before the end.
        let stream = "event: error\ndata: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"Something went wrong\",\"param\":null,\"sequence_number\":1}\n\n";
        let (meter, _, _) = filter(Api::Responses, false, &[stream.as_bytes()]);
        assert!(meter.error() && !meter.ended() && meter.usage().is_none());
        let cut = find(RESPONSES, b"event: response.completed");
        let (meter, _, _) = filter(Api::Responses, false, &[&RESPONSES[..cut]]);
        assert_eq!((meter.usage(), meter.ended()), (None, false));
    }

    #[test]
    fn anthropic_stream() {
        let (meter, out, _) = filter(Api::AnthropicMessages, false, &[ANTHROPIC]);
        // Input from message_start; output from message_delta (15), not message_start's 1.
        assert_eq!(meter.usage(), Some(u(25, 0, 0, 15, 0)));
        assert_eq!(meter.model(), Some("claude-opus-4-6"));
        assert!(meter.ended() && !meter.error());
        assert_eq!(out, ANTHROPIC);
        // Cut off after message_start: its counts so far, not ended.
        let cut = find(ANTHROPIC, b"event: content_block_start");
        let (meter, _, _) = filter(Api::AnthropicMessages, false, &[&ANTHROPIC[..cut]]);
        assert_eq!((meter.usage(), meter.ended()), (Some(u(25, 0, 0, 1, 0)), false));
        // Cache counts; cumulative counts of several message_delta events (server tools), the
        // last one with input counts as well.
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",",
            "\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":30}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},",
            "\"usage\":{\"input_tokens\":40,\"cache_read_input_tokens\":2000,\"output_tokens\":47}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (meter, _, _) = filter(Api::AnthropicMessages, false, &[stream.as_bytes()]);
        assert_eq!(meter.usage(), Some(u(40 + 100 + 2000, 2000, 100, 47, 0)));
        assert!(meter.ended());
        // An error event (overloaded), without names too.
        let stream = "data: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n";
        let (meter, _, _) = filter(Api::AnthropicMessages, false, &[stream.as_bytes()]);
        assert!(meter.error() && !meter.ended());
    }

    #[test]
    fn every_two_chunk_split_meters_the_same() {
        for (api, f) in [
            (Api::ChatCompletions, CHAT),
            (Api::Responses, RESPONSES),
            (Api::AnthropicMessages, ANTHROPIC),
        ] {
            let (want, want_out, want_verdicts) = filter(api, true, &[f]);
            for at in 0..=f.len() {
                let (meter, out, verdicts) = filter(api, true, &[&f[..at], &f[at..]]);
                assert_eq!((meter.usage(), meter.ended()), (want.usage(), want.ended()), "{at}");
                assert_eq!(meter.model(), want.model());
                assert_eq!((&out, &verdicts), (&want_out, &want_verdicts), "{at}");
            }
        }
    }

    proptest! {
        #[test]
        fn prop_random_chunks_meter_the_same(
            which in 0usize..3,
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..40),
        ) {
            let (api, f) = [
                (Api::ChatCompletions, CHAT),
                (Api::Responses, RESPONSES),
                (Api::AnthropicMessages, ANTHROPIC),
            ][which];
            let text = std::str::from_utf8(f).unwrap();
            let f = if crlf { text.replace('\n', "\r\n").into_bytes() } else { f.to_vec() };
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(f.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in at {
                chunks.push(&f[from..c]);
                from = c;
            }
            chunks.push(&f[from..]);
            let (want, want_out, _) = filter(api, true, &[&f]);
            let (meter, out, _) = filter(api, true, &chunks);
            prop_assert_eq!(meter.usage(), want.usage());
            prop_assert!(meter.usage().is_some() && meter.ended());
            prop_assert_eq!(out, want_out);
        }

        #[test]
        fn prop_meter_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), name in "[a-z_.]{0,24}") {
            for api in [Api::ChatCompletions, Api::Responses, Api::AnthropicMessages, Api::Embeddings] {
                let mut m = StreamMeter::new(api, true);
                let e = Event { name: name.as_bytes(), data: &data, span: crate::usage::sse::Span { start: 0, end: 1 } };
                let _ = m.on_event(&e);
                let _ = from_json(api, &data);
            }
        }
    }
}
