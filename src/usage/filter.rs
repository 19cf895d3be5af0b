//! Reading the provider's answer as it passes to the client, without holding it back:
//!
//! - a JSON answer is copied (up to [`MAX_JSON`]) and its usage read at the end;
//! - an event stream is parsed incrementally and passed on buffer by buffer, unchanged; when
//!   the module asked for the usage chunk on the client's behalf, that one event is cut out
//!   (only then are the bytes of an event still incomplete at the end of a buffer held until
//!   it is complete: a buffer that ends on an event boundary, as streams are written, passes
//!   as it is);
//! - a model list to filter is held until complete (it is small), then rewritten.
//!
//! Anything else (compressed, in a temporary file, too large) is passed on unread; the log
//! phase then charges the documented fallback.

use nginx_sys::{ngx_int_t, NGX_ERROR, NGX_OK};
use ngx::http::Request;

use super::exchange::{self, Exchange, Reading, State, StreamReading};
use super::models;
use crate::ngx::filter::{
    clear_content_length, content_encoding, content_type, next_body_filter, Chain,
};

/// Largest JSON answer (or model list) read.
pub const MAX_JSON: usize = 4 * 1024 * 1024;

/// Pieces of held bytes sent at once without a heap allocation.
const MAX_PIECES: usize = 4;

/// What the bytes held back of a stream get at first (an event cut by a buffer's end).
const HELD_CAPACITY: usize = 16 * 1024;

/// The response header of a followed exchange: decides how its body is read.
pub fn on_header(r: &mut Request) {
    // A location without an AI API (most requests) is left at once.
    if !r.is_main() || super::access::location(r).is_none() {
        return;
    }
    let Some(x) = exchange::get(r) else { return };
    let status = r.as_ref().headers_out.status;
    let reading = reading_for(r, x);
    let changes_length = match &reading {
        Reading::Stream(s) => s.strip,
        Reading::Models(_) => true,
        _ => false,
    };
    let Ok(mut st) = x.state.try_borrow_mut() else { return };
    st.status = status;
    st.reading = reading;
    drop(st);
    if changes_length {
        clear_content_length(r);
    }
}

fn reading_for(r: &Request, x: &Exchange) -> Reading {
    if content_encoding(r).is_some_and(|e| !e.eq_ignore_ascii_case(b"identity")) {
        return Reading::Skipped("compressed answer");
    }
    let ct = content_type(r);
    if x.filter_models {
        let ok = r.as_ref().headers_out.status == 200;
        return if ok {
            Reading::Models(Vec::new())
        } else {
            Reading::Skipped("model list not 200")
        };
    }
    let Some(api) = x.api else { return Reading::Skipped("not a metered API") };
    if ct.starts_with(b"text/event-stream") {
        let strip = x.strip && api.needs_include_usage();
        return Reading::Stream(StreamReading::new(api, strip));
    }
    if ct.starts_with(b"application/json") || ct.is_empty() {
        return Reading::Json(Vec::new());
    }
    Reading::Skipped("answer neither JSON nor an event stream")
}

/// The response body of a followed exchange.
pub fn on_body(r: &Request, chain: Chain) -> ngx_int_t {
    if chain.is_null() || !r.is_main() || super::access::location(r).is_none() {
        return next_body_filter(r, chain);
    }
    let Some(x) = exchange::get(r) else { return next_body_filter(r, chain) };
    // One borrow for the whole call, released before the next filter runs (so that a filter
    // after ours could even call back into it).
    let out = match x.state.try_borrow_mut() {
        Ok(mut st) => {
            if skip_plain(&mut st, &chain) {
                drop(st);
                return next_body_filter(r, chain);
            }
            read(r, &mut st, &chain)
        }
        Err(_) => Out::Pass,
    };
    match out {
        Out::Pass => next_body_filter(r, chain),
        Out::Send(c) => next_body_filter(r, c),
        Out::Held => NGX_OK as ngx_int_t,
        Out::Models(body) => filtered_models(r, x, &body),
        Out::Error => NGX_ERROR as ngx_int_t,
    }
}

/// What the filter hands on after reading a chain.
enum Out {
    /// The chain as it came.
    Pass,
    /// Another chain in its place (the bytes of the chain were taken).
    Send(Chain),
    /// Nothing yet: the bytes are held.
    Held,
    /// The whole model list, to filter and send.
    Models(Vec<u8>),
    Error,
}

/// The fast path of a stream, taken by nearly every buffer of one: a buffer of events that
/// need no reading passes as it is, with nothing held before it.
#[inline]
fn skip_plain(st: &mut State, chain: &Chain) -> bool {
    let Reading::Stream(s) = &mut st.reading else { return false };
    let Some(bytes) = chain.single() else { return false };
    let start = s.parser.offset();
    // With the usage chunk to cut out: only where nothing is held or waits to be cut.
    if s.strip && !(s.held.is_empty() && s.held_from == start && s.cut.is_empty()) {
        return false;
    }
    if !s.meter.skip_plain(&mut s.parser, bytes) {
        return false;
    }
    s.held_from = s.parser.offset();
    st.response_bytes += bytes.len() as u64;
    true
}

fn read(r: &Request, st: &mut State, chain: &Chain) -> Out {
    if let Reading::Stream(s) = &mut st.reading {
        if let Some(out) = read_stream(r, s, &mut st.response_bytes, chain) {
            return out;
        }
        // A stream buffered to a temporary file by the upstream module (`proxy_buffering on`
        // with a slow client) cannot be read here: from now on it is passed on unread, after
        // any bytes held back (the log phase charges the fallback).
        let held = core::mem::take(&mut s.held);
        st.reading = Reading::Skipped("answer buffered to a temporary file");
        if !held.is_empty() {
            st.response_bytes +=
                chain.bufs().filter_map(|b| b.bytes).map(|b| b.len() as u64).sum::<u64>();
            return match Chain::of(r, &[&held], false) {
                Some(c) => Out::Send(c.then(*chain)),
                None => Out::Error,
            };
        }
    }
    read_whole(st, chain)
}

/// A JSON answer or a model list (once per answer or so: kept out of the stream's path).
#[inline(never)]
fn read_whole(st: &mut State, chain: &Chain) -> Out {
    let (mut seen, mut in_file, mut last) = (0u64, false, false);
    for b in chain.bufs() {
        seen += b.bytes.map_or(0, |b| b.len() as u64);
        in_file |= b.bytes.is_none();
        last |= b.last_buf;
    }
    st.response_bytes += seen;
    if in_file && !matches!(st.reading, Reading::Skipped(_)) {
        st.reading = Reading::Skipped("answer buffered to a temporary file");
    }
    match &mut st.reading {
        Reading::Json(copy) => {
            for b in chain.bufs().filter_map(|b| b.bytes) {
                if copy.len() + b.len() > MAX_JSON {
                    st.reading = Reading::Skipped("answer too large to read");
                    break;
                }
                copy.extend_from_slice(b);
            }
            Out::Pass
        }
        Reading::Models(held) => {
            let body = take_models(held, chain, last);
            chain.consume();
            body.map_or(Out::Held, Out::Models)
        }
        _ => Out::Pass,
    }
}

/// A stream: its buffers fed to the parser in one walk of the chain (this runs for every
/// buffer of a streamed answer). `None` for a chain with a buffer in a file.
fn read_stream(r: &Request, s: &mut StreamReading, bytes: &mut u64, chain: &Chain) -> Option<Out> {
    let start = s.parser.offset();
    let (mut seen, mut last) = (0, false);
    for b in chain.bufs() {
        let data = b.bytes?;
        seen += data.len() as u64;
        s.feed(data);
        last |= b.last_buf;
    }
    *bytes += seen;
    if last {
        s.finish();
    }
    if !s.strip {
        return Some(Out::Pass);
    }
    let end = s.parser.offset();
    let release = if last { end } else { s.parser.released() };
    // As it came: nothing held before, nothing to cut, all of it finished events.
    if s.held.is_empty()
        && s.held_from == start
        && release == end
        && s.cut.iter().all(|c| c.1 <= start)
    {
        s.held_from = end;
        return Some(Out::Pass);
    }
    Some(strip_usage_chunk(r, s, chain, release, last))
}

/// A stream whose usage chunk the module asked for, when a buffer ends inside an event or
/// holds the usage chunk: the bytes of finished events are sent without the cut spans, those of
/// the event in progress held.
#[inline(never)]
fn strip_usage_chunk(
    r: &Request,
    s: &mut StreamReading,
    chain: &Chain,
    release: u64,
    last: bool,
) -> Out {
    if s.held.capacity() == 0 {
        s.held.reserve(HELD_CAPACITY); // once per answer: then it rarely grows
    }
    for b in chain.bufs().filter_map(|b| b.bytes) {
        s.held.extend_from_slice(b);
    }
    chain.consume();
    let base = s.held_from;
    let out = held_out(r, &s.held, base, release, &s.cut, last);
    let done = (release - base) as usize;
    s.held.drain(..done.min(s.held.len()));
    s.held_from = release;
    s.cut.retain(|c| c.1 > release);
    out.map_or(Out::Error, Out::Send)
}

/// A chain of the held bytes `[base, release)` (stream offsets; `held` starts at `base`)
/// without the cut spans.
fn held_out(
    r: &Request,
    held: &[u8],
    base: u64,
    release: u64,
    cut: &[(u64, u64)],
    last: bool,
) -> Option<Chain> {
    // The pieces to send, on the stack: a pass cuts at most the one usage chunk (more spans
    // than this go the slow way).
    let mut ranges = [(0usize, 0usize); MAX_PIECES];
    let mut n = 0;
    let mut spill = Vec::new();
    let mut pos = base;
    let mut push = |a: u64, b: u64| {
        let piece = ((a - base) as usize, (b - base) as usize);
        if n < MAX_PIECES {
            ranges[n] = piece;
            n += 1;
        } else {
            spill.push(piece);
        }
    };
    for &(s, e) in cut.iter().filter(|c| c.1 > base && c.0 < release) {
        if s > pos {
            push(pos, s);
        }
        pos = pos.max(e);
    }
    if release > pos {
        push(pos, release);
    }
    let mut slices: [&[u8]; MAX_PIECES] = [&[]; MAX_PIECES];
    for (slot, &(a, b)) in slices.iter_mut().zip(&ranges[..n]) {
        *slot = &held[a..b];
    }
    if spill.is_empty() {
        Chain::of(r, &slices[..n], last)
    } else {
        let all: Vec<&[u8]> = ranges[..n].iter().chain(&spill).map(|&(a, b)| &held[a..b]).collect();
        Chain::of(r, &all, last)
    }
}

/// A model list's bytes so far; the whole list once it is complete (or too large to hold).
fn take_models(held: &mut Vec<u8>, chain: &Chain, last: bool) -> Option<Vec<u8>> {
    for b in chain.bufs().filter_map(|b| b.bytes) {
        held.extend_from_slice(b);
    }
    (last || held.len() > MAX_JSON).then(|| core::mem::take(held))
}

/// Sends the model list with only the models the user may use.
fn filtered_models(r: &Request, x: &Exchange, body: &[u8]) -> ngx_int_t {
    let Some(lcf) = super::access::location(r) else { return NGX_ERROR as ngx_int_t };
    let rules = lcf.usage.rules();
    let filtered = gpt_auth_core::usage::models::filter_list(body, |id| {
        models::allows(r, rules, x.user.as_bytes(), id)
    });
    let out = match &filtered {
        Some(f) => f.as_slice(),
        None => {
            // Not a list of the documented shape: nothing can be shown safely.
            error!(r, "AI model list: the answer is not a JSON list of models; sent empty");
            b"{\"object\":\"list\",\"data\":[]}\n".as_slice()
        }
    };
    match Chain::of(r, &[out], true) {
        Some(c) => next_body_filter(r, c),
        None => NGX_ERROR as ngx_int_t,
    }
}
