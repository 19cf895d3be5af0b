//! Server-sent events (`text/event-stream`), parsed incrementally as an upstream's answer
//! arrives, by the algorithm of the HTML standard (WHATWG HTML, "Server-sent events", "Parsing
//! an event stream" and "Interpreting an event stream"):
//!
//! - lines end with CRLF, LF or CR; a leading byte order mark is ignored;
//! - `data:` lines append their value and a LF to the data buffer, `event:` sets the event
//!   name, a space after the colon is dropped, `id:` and `retry:` are read but not needed here,
//!   unknown fields and comments (lines starting with `:`) are ignored;
//! - a blank line dispatches the event: its data without the last LF, or nothing when no `data`
//!   line came (the event name is reset either way);
//! - an event still open when the stream ends is not dispatched.
//!
//! Chunks may split the stream anywhere (inside a line, a CRLF pair, a UTF-8 sequence): the
//! parser keeps the one event in progress in buffers that it reuses, so once they have grown to
//! the largest event seen, feeding allocates nothing. Events over a size cap are dropped and
//! reported instead of buffered without bound.
//!
//! For a filter that forwards the stream, every event comes with its [`Span`] in the whole
//! stream (from its first byte to the end of the blank line that ends it), so that one event can
//! be cut out, and [`Parser::released`] says up to where the stream is made of finished events.

/// Default cap on one event's size, blank line included ([`Parser::with_max_event_len`]).
pub const DEFAULT_MAX_EVENT_LEN: usize = 1 << 20;

/// Smallest cap accepted (a smaller one is raised to this).
pub const MIN_MAX_EVENT_LEN: usize = 64;

/// A byte range of the whole stream: offsets counted from the stream's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u64,
    /// Exclusive: the offset just after the blank line that ended the event.
    pub end: u64,
}

impl Span {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// A dispatched event. Borrowed from the parser: valid until the next call into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field's value; empty when there was none (a browser would call it
    /// `message`).
    pub name: &'a [u8],
    /// The `data:` lines' values joined by LF. Bytes as sent (UTF-8 for every API metered).
    pub data: &'a [u8],
    /// Where the event is in the stream, its blank line included (and any comment or other
    /// line inside it).
    pub span: Span,
}

/// What the parser reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    Event(Event<'a>),
    /// An event longer than the cap (its span, blank line included), dropped unread. Such an
    /// event was never buffered; its bytes were released as soon as it passed the cap.
    Oversized(Span),
}

/// Finds the first LF or CR: memchr's AVX2 searcher called directly where the CPU has it (the
/// crate's `memchr2` picks its implementation anew through a function pointer on every call,
/// which costs a third of a search of a typical event here). Made once per process: its
/// vectors want a 32-byte alignment, which a static has and the parser, kept in an nginx pool,
/// has not.
#[derive(Clone, Copy)]
struct LineEnds {
    #[cfg(target_arch = "x86_64")]
    avx2: Option<&'static memchr::arch::x86_64::avx2::memchr::Two>,
}

#[cfg(target_arch = "x86_64")]
static AVX2_LINE_ENDS: std::sync::LazyLock<Option<memchr::arch::x86_64::avx2::memchr::Two>> =
    std::sync::LazyLock::new(|| memchr::arch::x86_64::avx2::memchr::Two::new(b'\n', b'\r'));

impl LineEnds {
    #[inline]
    fn new() -> LineEnds {
        LineEnds {
            #[cfg(target_arch = "x86_64")]
            avx2: AVX2_LINE_ENDS.as_ref(),
        }
    }

    #[inline]
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(two) = self.avx2 {
            return two.find(haystack);
        }
        memchr::memchr2(b'\n', b'\r', haystack)
    }
}

/// An incremental event stream parser. One per stream.
#[derive(Debug, Clone)]
pub struct Parser {
    max_event_len: usize,
    /// Bytes fed so far.
    offset: u64,
    /// Where the event in progress began (just after the last blank line).
    event_start: u64,
    /// The line in progress, when a chunk ended inside it (empty while the event is oversized).
    line: Vec<u8>,
    /// A line is in progress (`line` may still be empty while oversized).
    in_line: bool,
    data: Vec<u8>,
    name: Vec<u8>,
    /// A `data` field was seen: the event will be dispatched.
    has_data: bool,
    /// The last byte fed was a CR ending a line: a LF right after it belongs to it.
    after_cr: bool,
    /// ... and that line was blank: the event is dispatched when the next byte shows whether
    /// the LF is part of its span.
    dispatch_after_cr: bool,
    /// The event in progress passed the cap: nothing of it is kept.
    oversized: bool,
    /// No line has ended yet (a byte order mark may start it).
    first_line: bool,
    /// [`Parser::at_plain_boundary`] as the last chunk fed left it (skipping keeps it): the
    /// one test [`Parser::skip_events`] makes of the state.
    boundary: bool,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new()
    }
}

impl Parser {
    /// A parser with the default cap ([`DEFAULT_MAX_EVENT_LEN`]).
    pub fn new() -> Parser {
        Parser::with_max_event_len(DEFAULT_MAX_EVENT_LEN)
    }

    /// A parser that drops events longer than `max` bytes (blank line included; at least
    /// [`MIN_MAX_EVENT_LEN`]). The buffers never hold more than `max` bytes.
    pub fn with_max_event_len(max: usize) -> Parser {
        let max = max.max(MIN_MAX_EVENT_LEN);
        Parser {
            max_event_len: max,
            offset: 0,
            event_start: 0,
            // Allocated when first needed: a stream of one-line events never needs them.
            line: Vec::new(),
            in_line: false,
            data: Vec::new(),
            name: Vec::new(),
            has_data: false,
            after_cr: false,
            dispatch_after_cr: false,
            oversized: false,
            first_line: true,
            boundary: false,
        }
    }

    /// Bytes fed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The stream offset up to which every byte belongs to a finished event (dispatched, empty,
    /// or oversized and dropped): a filter that holds back the event in progress may send
    /// everything before it. Never more than [`Parser::offset`]; never decreases. Holding an
    /// event back until its blank line costs a client nothing: it acts on an event only then.
    pub fn released(&self) -> u64 {
        if self.oversized {
            self.offset
        } else {
            self.event_start
        }
    }

    /// Parses the next chunk of the stream, calling `on_item` for each event it completes, in
    /// order.
    #[inline]
    pub fn feed(&mut self, chunk: &[u8], mut on_item: impl FnMut(Item<'_>)) {
        self.see_start(chunk);
        let done =
            if self.at_plain_boundary() { self.whole_events(chunk, &mut on_item) } else { 0 };
        if done < chunk.len() {
            self.feed_lines(&chunk[done..], &mut on_item);
        }
        self.boundary = self.at_plain_boundary();
    }

    /// Takes a chunk made only of whole one-line events `data: VALUE\n\n` (from an event
    /// boundary with nothing pending) for each of which `unremarkable(VALUE)` holds, without
    /// dispatching them: the parser only moves past it. The fast way for a filter through
    /// which most events pass unread. Returns false, and takes nothing, for any other chunk,
    /// and for any chunk before the first one fed (it may begin with a byte order mark): then
    /// [`Parser::feed`] reads it.
    #[inline]
    pub fn skip_events(
        &mut self,
        chunk: &[u8],
        mut unremarkable: impl FnMut(&[u8]) -> bool,
    ) -> bool {
        debug_assert_eq!(self.boundary, self.at_plain_boundary());
        if !self.boundary || chunk.len() > self.max_event_len {
            return false;
        }
        let line_ends = LineEnds::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            let Some(value) = rest.strip_prefix(b"data:") else { return false };
            let Some(k) = line_ends.find(value) else { return false };
            if value[k] != b'\n' || value.get(k + 1) != Some(&b'\n') {
                return false;
            }
            let data = &value[..k];
            if !unremarkable(data.strip_prefix(b" ").unwrap_or(data)) {
                return false;
            }
            rest = &value[k + 2..];
        }
        self.offset += chunk.len() as u64;
        self.event_start = self.offset;
        true
    }

    /// At the stream's start: a first byte that cannot begin a byte order mark makes the first
    /// line one like any other (so that the first event can be read in place too).
    #[inline]
    fn see_start(&mut self, chunk: &[u8]) {
        if self.first_line && self.offset == 0 && chunk.first().is_some_and(|&b| b != 0xEF) {
            self.first_line = false;
        }
    }

    /// Between events (`offset` up to date), with nothing pending: where
    /// [`Parser::whole_events`] may read.
    #[inline]
    fn at_plain_boundary(&self) -> bool {
        !(self.in_line || self.has_data || self.first_line || self.oversized || self.after_cr)
            && self.offset == self.event_start
    }

    /// The common case, read in place: at the start of `chunk` (an event boundary with nothing
    /// pending), whole one-line events `data: VALUE\n\n`, the way providers write their
    /// streams. Each is dispatched from the chunk without being copied; returns how many bytes
    /// they took. Stops at anything else (other fields, CR, a line cut by the chunk's end, an
    /// event over the cap), which the general way then reads from there.
    #[inline]
    fn whole_events(&mut self, chunk: &[u8], on_item: &mut impl FnMut(Item<'_>)) -> usize {
        let (mut i, line_ends) = (0, LineEnds::new());
        while let Some(value) = chunk.get(i..).and_then(|rest| rest.strip_prefix(b"data:")) {
            let Some(k) = line_ends.find(value) else { break };
            if value[k] != b'\n' || value.get(k + 1) != Some(&b'\n') {
                break;
            }
            let len = 5 + k + 2;
            if len > self.max_event_len {
                break;
            }
            let data = &value[..k];
            let data = data.strip_prefix(b" ").unwrap_or(data);
            let span = Span { start: self.offset, end: self.offset + len as u64 };
            self.offset = span.end;
            self.event_start = span.end;
            // At the start of an event no `event:` field has come: the name is empty.
            on_item(Item::Event(Event { name: b"", data, span }));
            i += len;
        }
        i
    }

    /// The general way: line by line, fields gathered into the parser's buffers.
    fn feed_lines(&mut self, chunk: &[u8], on_item: &mut impl FnMut(Item<'_>)) {
        let (base, line_ends) = (self.offset, LineEnds::new());
        let mut i = 0;
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                i = 1;
            }
            if self.dispatch_after_cr {
                self.dispatch_after_cr = false;
                self.dispatch(base + i as u64, on_item);
            }
        }
        while i < chunk.len() {
            let rest = &chunk[i..];
            self.offset = base + i as u64;
            if self.at_plain_boundary() {
                let n = self.whole_events(rest, on_item);
                if n > 0 {
                    i += n;
                    continue;
                }
            }
            let Some(k) = line_ends.find(rest) else {
                self.offset = base + i as u64;
                self.keep_partial_line(rest);
                break;
            };
            let mut end = i + k + 1;
            let cr = rest[k] == b'\r';
            let mut lf_unknown = false;
            if cr {
                match chunk.get(end) {
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                    None => lf_unknown = true,
                }
            }
            self.offset = base + end as u64;
            if !self.oversized && self.offset - self.event_start > self.max_event_len as u64 {
                self.become_oversized();
            }
            let blank = self.end_line(&rest[..k]);
            i = end;
            if lf_unknown {
                self.after_cr = true;
                self.dispatch_after_cr = blank;
            } else if blank {
                self.dispatch(self.offset, on_item);
            }
        }
        self.offset = base + chunk.len() as u64;
    }

    /// Ends the stream: an event whose blank line was already seen is dispatched, one without
    /// it is not (the HTML standard's rule). Returns the span of that undispatched tail, if any:
    /// the stream was cut off inside an event. The parser is then ready for a new stream (its
    /// buffers kept).
    pub fn finish(&mut self, mut on_item: impl FnMut(Item<'_>)) -> Option<Span> {
        if self.dispatch_after_cr {
            self.dispatch_after_cr = false;
            self.dispatch(self.offset, &mut on_item);
        }
        let tail = (self.event_start < self.offset)
            .then_some(Span { start: self.event_start, end: self.offset });
        self.line.clear();
        self.data.clear();
        self.name.clear();
        let (line, data, name) = (
            core::mem::take(&mut self.line),
            core::mem::take(&mut self.data),
            core::mem::take(&mut self.name),
        );
        *self = Parser { line, data, name, ..Parser::with_max_event_len(self.max_event_len) };
        tail
    }

    fn become_oversized(&mut self) {
        self.oversized = true;
        self.line.clear();
        self.data.clear();
        self.name.clear();
    }

    /// The chunk ended inside a line: keep what there is of it (`self.offset` is at its start).
    fn keep_partial_line(&mut self, part: &[u8]) {
        self.in_line = true;
        if !self.oversized {
            let end = self.offset + part.len() as u64;
            if end - self.event_start > self.max_event_len as u64 {
                self.become_oversized();
            } else {
                self.line.extend_from_slice(part);
            }
        }
    }

    /// A line ended; `tail` is its part in the current chunk. Returns whether it was blank.
    fn end_line(&mut self, tail: &[u8]) -> bool {
        let in_line = core::mem::replace(&mut self.in_line, false);
        let first = core::mem::replace(&mut self.first_line, false);
        if self.oversized {
            return !in_line && tail.is_empty();
        }
        let mut line = core::mem::take(&mut self.line);
        let content: &[u8] = if in_line {
            line.extend_from_slice(tail);
            &line
        } else {
            tail
        };
        let content = match content.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) if first => rest,
            _ => content,
        };
        let blank = content.is_empty();
        if !blank {
            self.field(content);
        }
        line.clear();
        self.line = line;
        blank
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match memchr::memchr(b':', line) {
            Some(0) => return,
            Some(c) => {
                let value = &line[c + 1..];
                (&line[..c], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            // `id` sets the last event id and `retry` the reconnection time, both for a client
            // that reconnects; other fields are ignored.
            _ => {}
        }
    }

    /// A blank line ended at `end`: the event in progress is complete.
    fn dispatch(&mut self, end: u64, on_item: &mut impl FnMut(Item<'_>)) {
        let span = Span { start: self.event_start, end };
        if self.oversized || span.len() > self.max_event_len as u64 {
            on_item(Item::Oversized(span));
        } else if self.has_data {
            let data = &self.data[..self.data.len() - 1];
            on_item(Item::Event(Event { name: &self.name, data, span }));
        }
        self.event_start = end;
        self.oversized = false;
        self.has_data = false;
        self.data.clear();
        self.name.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An item with its bytes copied out.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Event { name: Vec<u8>, data: Vec<u8>, span: Span },
        Oversized(Span),
    }

    impl Owned {
        fn of(item: Item<'_>) -> Owned {
            match item {
                Item::Event(e) => {
                    Owned::Event { name: e.name.into(), data: e.data.into(), span: e.span }
                }
                Item::Oversized(s) => Owned::Oversized(s),
            }
        }
    }

    /// The items of `stream` fed in the given chunks, and the tail `finish` reports. Checks
    /// `released` on the way.
    fn run(parser: &mut Parser, chunks: &[&[u8]]) -> (Vec<Owned>, Option<Span>) {
        let mut items = Vec::new();
        let mut released = 0;
        for chunk in chunks {
            parser.feed(chunk, |i| items.push(Owned::of(i)));
            assert!(parser.released() >= released && parser.released() <= parser.offset());
            released = parser.released();
            // Whatever was released is made of whole events.
            if let Some(Owned::Event { span, .. } | Owned::Oversized(span)) = items.last() {
                assert!(span.end <= parser.offset());
            }
        }
        let tail = parser.finish(|i| items.push(Owned::of(i)));
        (items, tail)
    }

    fn whole(stream: &[u8]) -> (Vec<Owned>, Option<Span>) {
        run(&mut Parser::new(), &[stream])
    }

    fn events(stream: &str) -> Vec<(String, String)> {
        whole(stream.as_bytes())
            .0
            .into_iter()
            .map(|i| match i {
                Owned::Event { name, data, .. } => {
                    (String::from_utf8(name).unwrap(), String::from_utf8(data).unwrap())
                }
                Owned::Oversized(s) => panic!("oversized {s:?}"),
            })
            .collect()
    }

    #[test]
    fn skipping_takes_only_whole_plain_events() {
        let plain = |d: &[u8]| d.ends_with(b"null}");
        let mut p = Parser::new();
        // The stream's first chunk is fed (it may start with a byte order mark); then whole
        // plain events are skipped.
        assert!(!p.skip_events(b"data: {\"a\":null}\n\n", plain));
        p.feed(b"data: {\"a\":null}\n\n", |_| {});
        assert!(p.skip_events(b"data: {\"a\":null}\n\ndata:{\"b\":null}\n\n", plain));
        assert_eq!((p.offset(), p.released()), (18 + 35, 18 + 35));
        for refused in [
            &b"data: {\"a\":1}\n\n"[..],         // a remarkable event
            b"data: {\"a\":null}\n",             // no blank line yet
            b"data: {\"a\":null}\r\n\r\n",       // CR line ends: the general way
            b"event: x\ndata: {\"a\":null}\n\n", // another field
            b": comment\n\n",
        ] {
            assert!(!p.skip_events(refused, plain), "{:?}", String::from_utf8_lossy(refused));
            assert_eq!(p.offset(), 18 + 35, "nothing taken");
        }
        // Not at an event boundary: never.
        p.feed(b"data: {", |_| {});
        assert!(!p.skip_events(b"\"a\":null}\n\n", plain));
        let mut bom = Parser::new();
        assert!(!bom.skip_events(b"\xEF\xBB\xBFdata: {\"a\":null}\n\n", plain));
    }

    fn ev(name: &str, data: &str) -> (String, String) {
        (name.into(), data.into())
    }

    const ANTHROPIC: &[u8] =
        include_bytes!("../../tests/fixtures/usage/anthropic-messages-stream.sse");
    const CHAT: &[u8] = include_bytes!("../../tests/fixtures/usage/openai-chat-stream.sse");
    const RESPONSES: &[u8] =
        include_bytes!("../../tests/fixtures/usage/openai-responses-stream.sse");

    /// The fixtures, and the same streams with CRLF and with CR line ends.
    fn fixtures() -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for f in [ANTHROPIC, CHAT, RESPONSES] {
            let text = std::str::from_utf8(f).unwrap();
            all.push(f.to_vec());
            all.push(text.replace('\n', "\r\n").into_bytes());
            all.push(text.replace('\n', "\r").into_bytes());
        }
        all
    }

    #[test]
    fn whatwg_examples() {
        // The examples of the HTML standard's "Server-sent events" section (9.2.6).
        assert_eq!(
            events("data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n"),
            [
                ev("", "This is the first message."),
                ev("", "This is the second message, it\nhas two lines."),
                ev("", "This is the third message."),
            ]
        );
        assert_eq!(
            events("event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"),
            [ev("add", "73857293"), ev("remove", "2153"), ev("add", "113411")]
        );
        // "The following stream fires two events": empty data, then a single LF; the last
        // block is discarded (no blank line after it).
        assert_eq!(events("data\n\ndata\ndata\n\ndata:"), [ev("", ""), ev("", "\n")]);
        // "The following stream fires two identical events": one space after the colon is
        // dropped, no more.
        assert_eq!(events("data:test\n\ndata: test\n\n"), [ev("", "test"), ev("", "test")]);
        assert_eq!(events("data:  two spaces\n\n"), [ev("", " two spaces")]);
        assert_eq!(events(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"),
            [ev("", "first event"), ev("", "second event"), ev("", " third event")]);
    }

    #[test]
    fn field_parsing() {
        assert_eq!(events(":comment\ndata: a\n:another\n\n"), [ev("", "a")]);
        assert_eq!(
            events("event: x\n\ndata: y\n\n"),
            [ev("", "y")],
            "the name is reset by an empty event"
        );
        assert_eq!(events("event: a\nevent: b\ndata\n\n"), [ev("b", "")]);
        assert_eq!(
            events("Data: x\ndata : y\nunknown: z\nretry: 10\nid: 7\ndata: ok\n\n"),
            [ev("", "ok")]
        );
        assert_eq!(events("data:a:b: c\n\n"), [ev("", "a:b: c")]);
        assert_eq!(events("data: \u{e9}\u{1F600}\r\n\r\n"), [ev("", "\u{e9}\u{1F600}")]);
        // Line ends of every kind, mixed.
        assert_eq!(
            events("data: a\rdata: b\r\ndata: c\n\r\n\rdata: d\r\r"),
            [ev("", "a\nb\nc"), ev("", "d")]
        );
        // A byte order mark is ignored at the start of the stream only.
        assert_eq!(events("\u{feff}data: a\n\n"), [ev("", "a")]);
        assert_eq!(events("\u{feff}\ndata: a\n\n"), [ev("", "a")]);
        assert_eq!(events("data: a\n\n\u{feff}data: b\n\n"), [ev("", "a")]);
        // Nothing dispatched without a blank line.
        assert_eq!(whole(b"data: a\n").1, Some(Span { start: 0, end: 8 }));
        assert_eq!(whole(b"data: a\n\ndata: b").1, Some(Span { start: 9, end: 16 }));
        assert_eq!(whole(b"data: a\n\n").1, None);
        assert_eq!(whole(b"").1, None);
        // A CR at the very end still ends the blank line.
        assert_eq!(events("data: a\r\r"), [ev("", "a")]);
    }

    #[test]
    fn spans() {
        let s = b": hi\n\ndata: a\n\n\n\nevent: e\r\ndata: b\r\n\r\ndata: c\r\r\n";
        let (items, tail) = whole(s);
        let spans: Vec<Span> = items
            .iter()
            .map(|i| match i {
                Owned::Event { span, .. } | Owned::Oversized(span) => *span,
            })
            .collect();
        assert_eq!(
            spans,
            [Span { start: 6, end: 15 }, Span { start: 17, end: 38 }, Span { start: 38, end: 48 }]
        );
        assert_eq!(&s[17..38], b"event: e\r\ndata: b\r\n\r\n");
        assert_eq!(&s[38..], b"data: c\r\r\n", "the LF after the blank line's CR is part of it");
        assert_eq!(tail, None);
        // Cutting an event out leaves a stream with the other events.
        let cut: Vec<u8> = [&s[..17], &s[38..]].concat();
        assert_eq!(whole(&cut).0.len(), 2);
    }

    #[test]
    fn fixtures_parse() {
        let names: Vec<String> =
            events(std::str::from_utf8(ANTHROPIC).unwrap()).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let chat = events(std::str::from_utf8(CHAT).unwrap());
        assert_eq!(chat.len(), 5);
        assert_eq!(chat[4], ev("", "[DONE]"));
        // The reference's Responses stream has a "..." line standing for more events: a field
        // of that name, ignored; its block dispatches nothing.
        let responses = events(std::str::from_utf8(RESPONSES).unwrap());
        assert_eq!(responses.len(), 9);
        assert_eq!(responses[8].0, "response.completed");
        for f in fixtures() {
            let (items, tail) = whole(&f);
            assert_eq!(tail, None);
            let Some(Owned::Event { span, .. }) = items.last() else { panic!() };
            assert_eq!(span.end, f.len() as u64);
            for item in &items {
                let Owned::Event { data, .. } = item else { panic!() };
                assert!(
                    data == b"[DONE]" || serde_json::from_slice::<serde_json::Value>(data).is_ok()
                );
            }
        }
    }

    #[test]
    fn every_two_chunk_split_gives_the_same_items() {
        for f in fixtures() {
            let want = whole(&f);
            for at in 0..=f.len() {
                let got = run(&mut Parser::new(), &[&f[..at], &f[at..]]);
                assert_eq!(got, want, "split at {at}");
            }
            // And byte by byte.
            let bytes: Vec<&[u8]> = f.chunks(1).collect();
            assert_eq!(run(&mut Parser::new(), &bytes), want);
        }
    }

    #[test]
    fn released_holds_back_only_the_event_in_progress() {
        let mut p = Parser::new();
        p.feed(b"data: a\n\ndata: b", |_| {});
        assert_eq!((p.released(), p.offset()), (9, 16));
        p.feed(b"\n", |_| {});
        assert_eq!(p.released(), 9);
        p.feed(b"\r", |_| {});
        assert_eq!(p.released(), 9, "the CR's LF may still come");
        let mut n = 0;
        p.feed(b"\n: c", |_| n += 1);
        assert_eq!((n, p.released(), p.offset()), (1, 19, 22));
        p.feed(b"\n\n", |_| {});
        assert_eq!(p.released(), 24, "a comment-only block is finished too");
    }

    #[test]
    fn oversized_events_are_dropped_and_released() {
        let mut p = Parser::with_max_event_len(100);
        let big = format!("data: {}\n\n", "x".repeat(200));
        let stream = format!("data: small\n\n{big}data: after\n\n");
        let mut items = Vec::new();
        p.feed(&stream.as_bytes()[..13 + 150], |i| items.push(Owned::of(i)));
        assert_eq!(p.released(), 13 + 150, "an oversized event is not held back");
        assert!(p.line.capacity() <= 100 && p.data.capacity() <= 100);
        p.feed(&stream.as_bytes()[13 + 150..], |i| items.push(Owned::of(i)));
        assert_eq!(
            items,
            [
                Owned::Event {
                    name: vec![],
                    data: b"small".to_vec(),
                    span: Span { start: 0, end: 13 }
                },
                Owned::Oversized(Span { start: 13, end: 13 + big.len() as u64 }),
                Owned::Event {
                    name: vec![],
                    data: b"after".to_vec(),
                    span: Span { start: 13 + big.len() as u64, end: stream.len() as u64 }
                },
            ]
        );
        // Exactly at the cap is fine, one byte more is not, wherever the chunks end.
        for len in [99usize, 100, 101] {
            let e = format!("data: {}\n\n", "y".repeat(len - 8));
            assert_eq!(e.len(), len);
            let want = whole_capped(e.as_bytes(), &[e.len()]);
            for at in 0..=len {
                assert_eq!(whole_capped(e.as_bytes(), &[at, len]), want);
            }
            assert_eq!(matches!(want[0], Owned::Oversized(_)), len > 100, "{len}");
        }
        assert_eq!(Parser::with_max_event_len(0).max_event_len, MIN_MAX_EVENT_LEN);
    }

    fn whole_capped(s: &[u8], cuts: &[usize]) -> Vec<Owned> {
        let mut p = Parser::with_max_event_len(100);
        let mut items = Vec::new();
        let mut from = 0;
        for &c in cuts {
            p.feed(&s[from..c], |i| items.push(Owned::of(i)));
            from = c;
        }
        p.finish(|i| items.push(Owned::of(i)));
        items
    }

    #[test]
    fn buffers_are_reused() {
        let mut p = Parser::new();
        let stream = CHAT.repeat(20);
        let feed = |p: &mut Parser| {
            for chunk in stream.chunks(1400) {
                p.feed(chunk, |_| {});
            }
        };
        feed(&mut p);
        let caps = (p.line.capacity(), p.data.capacity(), p.name.capacity());
        feed(&mut p);
        assert_eq!((p.line.capacity(), p.data.capacity(), p.name.capacity()), caps);
        p.finish(|_| {});
        assert_eq!(p.offset(), 0);
        assert_eq!(p.data.capacity(), caps.1, "finish keeps the buffers");
    }

    /// Any stream, cut into chunks: the same items as fed whole.
    fn chunked(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Owned>, Option<Span>) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for c in cuts {
            chunks.push(&stream[from..c]);
            from = c;
        }
        chunks.push(&stream[from..]);
        run(&mut Parser::with_max_event_len(max), &chunks)
    }

    fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b":".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just("\u{e9}".as_bytes().to_vec()),
            "[a-z {}\":]{0,12}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn prop_chunking_does_not_matter(
            stream in sse_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 64usize..200,
        ) {
            prop_assert_eq!(chunked(&stream, &cuts, max), chunked(&stream, &[], max));
        }

        #[test]
        fn prop_fixtures_in_random_chunks(
            which in 0usize..9,
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let f = &fixtures()[which];
            prop_assert_eq!(chunked(f, &cuts, DEFAULT_MAX_EVENT_LEN), whole(f));
        }

        /// Chunks taken by `skip_events` leave the parser as feeding them would have: the same
        /// items otherwise (only unremarkable events are missing) and the same offsets.
        #[test]
        fn prop_skipped_chunks_change_nothing_else(
            stream in sse_bytes(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            max in 64usize..400,
        ) {
            let unremarkable = |d: &[u8]| !d.contains(&b'}');
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([stream.len()]) {
                chunks.push(&stream[from..c]);
                from = c;
            }
            let (mut fed, mut skipping) =
                (Parser::with_max_event_len(max), Parser::with_max_event_len(max));
            let (mut all, mut read) = (Vec::new(), Vec::new());
            for chunk in &chunks {
                fed.feed(chunk, |i| all.push(Owned::of(i)));
                if !skipping.skip_events(chunk, unremarkable) {
                    skipping.feed(chunk, |i| read.push(Owned::of(i)));
                }
                prop_assert_eq!(fed.offset(), skipping.offset());
                prop_assert_eq!(fed.released(), skipping.released());
            }
            fed.finish(|i| all.push(Owned::of(i)));
            skipping.finish(|i| read.push(Owned::of(i)));
            let mut rest = all.iter();
            for item in &read {
                // In order, and every event left out is an unremarkable one.
                loop {
                    let next = rest.next();
                    prop_assert!(next.is_some());
                    if next == Some(item) {
                        break;
                    }
                    let is_unremarkable = matches!(next, Some(Owned::Event { name, data, .. })
                        if name.is_empty() && unremarkable(data));
                    prop_assert!(is_unremarkable, "{:?} left out", next);
                }
            }
        }

        #[test]
        fn prop_spans_tile_the_stream(stream in sse_bytes(), max in 64usize..200) {
            let (items, tail) = chunked(&stream, &[], max);
            let mut at = 0;
            for item in &items {
                let (Owned::Event { span, .. } | Owned::Oversized(span)) = item;
                prop_assert!(span.start >= at && span.end > span.start);
                // Each event's bytes alone give that event again.
                let alone = &stream[span.start as usize..span.end as usize];
                let (again, rest) = chunked(alone, &[], max);
                // (Except for a byte order mark that was not at the stream's start.)
                if span.start == 0 || !alone.starts_with(b"\xEF\xBB\xBF") {
                    let shifted: Vec<Owned> = again.into_iter().map(|i| match i {
                        Owned::Event { name, data, span: s } => Owned::Event {
                            name, data, span: Span { start: s.start + span.start, end: s.end + span.start },
                        },
                        Owned::Oversized(s) => Owned::Oversized(Span { start: s.start + span.start, end: s.end + span.start }),
                    }).collect();
                    prop_assert_eq!(shifted, vec![item.clone()]);
                }
                prop_assert_eq!(rest, None);
                at = span.end;
            }
            if let Some(t) = tail {
                prop_assert!(t.start >= at && t.end == stream.len() as u64);
            }
        }
    }
}
