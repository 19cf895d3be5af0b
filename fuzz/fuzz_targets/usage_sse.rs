//! The server-sent events parser (`usage::sse::Parser`): the module runs it on every streamed
//! answer it meters, in whatever chunks the upstream's bytes arrive. Chunking changes nothing:
//! the same events, spans, oversized events and cut-off tail as the stream fed whole. Events
//! are those of a plain reading of the HTML standard's algorithm (a reference parser here, on
//! the whole stream), their spans tile the stream in order, each span parsed alone gives the
//! same event again, buffers stay within the cap, and `released` only grows, never past what
//! was fed and never before the end of the last event reported. Chunks a filter skips
//! (`skip_events`) leave the parser where feeding them would.
//!
//! Input: `cap chunking stream`: the first byte picks the event size cap (64 + 4 x byte, or
//! none for 255), the second how the stream is cut (0: whole; see `gpt_auth_fuzz::chunks`).
#![no_main]

use gpt_auth_core::usage::sse::{Item, Parser, Span};
use gpt_auth_fuzz::chunks;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Event { name: Vec<u8>, data: Vec<u8>, span: Span },
    Oversized(Span),
}

fn span(o: &Owned) -> Span {
    match o {
        Owned::Event { span, .. } | Owned::Oversized(span) => *span,
    }
}

fn run(cap: usize, parts: &[&[u8]]) -> (Vec<Owned>, Option<Span>) {
    let mut p = Parser::with_max_event_len(cap);
    let mut items = Vec::new();
    let mut released = 0;
    let mut fed = 0u64;
    for part in parts {
        p.feed(part, |i| {
            items.push(match i {
                Item::Event(e) => {
                    assert!(e.data.len() < cap && e.name.len() < cap);
                    Owned::Event { name: e.name.to_vec(), data: e.data.to_vec(), span: e.span }
                }
                Item::Oversized(s) => Owned::Oversized(s),
            })
        });
        fed += part.len() as u64;
        assert_eq!(p.offset(), fed);
        assert!(p.released() >= released && p.released() <= fed);
        if let Some(last) = items.last() {
            assert!(p.released() >= span(last).end);
        }
        released = p.released();
    }
    let tail = p.finish(|i| {
        items.push(match i {
            Item::Event(e) => {
                Owned::Event { name: e.name.to_vec(), data: e.data.to_vec(), span: e.span }
            }
            Item::Oversized(s) => Owned::Oversized(s),
        })
    });
    (items, tail)
}

/// The parts fed as a filter does that skips unremarkable events (`Parser::skip_events`, here
/// events whose data has no `}`), else feeds them: the parser's offsets stay those of plain
/// feeding, and the items are those of plain feeding less skipped unremarkable events.
fn check_skipping(cap: usize, parts: &[&[u8]], all: &[Owned]) {
    let unremarkable = |d: &[u8]| !d.contains(&b'}');
    let (mut fed, mut skipping) = (Parser::with_max_event_len(cap), Parser::with_max_event_len(cap));
    let mut read = Vec::new();
    let own = |i: Item<'_>| match i {
        Item::Event(e) => Owned::Event { name: e.name.to_vec(), data: e.data.to_vec(), span: e.span },
        Item::Oversized(s) => Owned::Oversized(s),
    };
    for part in parts {
        fed.feed(part, |_| {});
        if !skipping.skip_events(part, unremarkable) {
            skipping.feed(part, |i| read.push(own(i)));
        }
        assert_eq!((fed.offset(), fed.released()), (skipping.offset(), skipping.released()));
    }
    skipping.finish(|i| read.push(own(i)));
    let mut rest = all.iter();
    for item in &read {
        loop {
            let next = rest.next().expect("an item plain feeding did not give");
            if next == item {
                break;
            }
            assert!(
                matches!(next, Owned::Event { name, data, .. } if name.is_empty() && unremarkable(data)),
                "left out: {next:?}"
            );
        }
    }
}

/// The standard's algorithm, read plainly: split the whole stream into lines, then fields.
fn reference(stream: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\r' => {
                lines.push(&stream[start..i]);
                i += if stream.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                start = i;
            }
            b'\n' => {
                lines.push(&stream[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    // What follows the last line end is an incomplete line: never dispatched.
    let (mut data, mut name, mut events) = (Vec::new(), Vec::new(), Vec::new());
    let mut has_data = false;
    for line in lines {
        if line.is_empty() {
            if has_data {
                data.pop();
                events.push((name.clone(), data.clone()));
            }
            data.clear();
            name.clear();
            has_data = false;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => (&line[..c], line[c + 1..].strip_prefix(b" ").unwrap_or(&line[c + 1..])),
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
                has_data = true;
            }
            b"event" => name = value.to_vec(),
            _ => {}
        }
    }
    events
}

fuzz_target!(|data: &[u8]| {
    let [cap, seed, stream @ ..] = data else { return };
    let cap = if *cap == 255 { usize::MAX } else { 64 + 4 * usize::from(*cap) };
    let whole = run(cap, &[stream]);
    let parts = chunks(stream, *seed);
    assert_eq!(run(cap, &parts), whole, "chunking changed the items");
    check_skipping(cap, &parts, &whole.0);
    let (items, tail) = &whole;

    let mut at = 0;
    for item in items {
        let s = span(item);
        assert!(s.start >= at && s.end > s.start && s.end as usize <= stream.len());
        let alone = &stream[s.start as usize..s.end as usize];
        assert_eq!(matches!(item, Owned::Oversized(_)), alone.len() > cap);
        if s.start == 0 || !alone.starts_with(b"\xEF\xBB\xBF") {
            let (again, rest) = run(cap, &[alone]);
            assert_eq!(rest, None);
            assert_eq!(again.len(), 1);
            match (&again[0], item) {
                (
                    Owned::Event { name: n1, data: d1, .. },
                    Owned::Event { name: n2, data: d2, .. },
                ) => {
                    assert_eq!((n1, d1), (n2, d2))
                }
                (Owned::Oversized(_), Owned::Oversized(_)) => {}
                other => panic!("alone: {other:?}"),
            }
        }
        at = s.end;
    }
    if let Some(t) = tail {
        assert!(t.start >= at && t.end as usize == stream.len() && t.end > t.start);
    }
    if cap == usize::MAX {
        let got: Vec<(Vec<u8>, Vec<u8>)> = items
            .iter()
            .map(|i| match i {
                Owned::Event { name, data, .. } => (name.clone(), data.clone()),
                Owned::Oversized(s) => panic!("oversized without a cap: {s:?}"),
            })
            .collect();
        assert_eq!(got, reference(stream));
    }
});
