//! Usage from upstream answers (`usage::response::from_json`, `StreamMeter`): the module runs
//! them on every metered answer. A whole answer's usage is what its `usage` object says (read
//! here again with serde_json's document), errors are printable and bounded. Streamed, the
//! meter's verdicts, usage, model and ending do not depend on how the stream is cut; only
//! the usage chunk of (chat) completions is ever removed, only when the request rewrite asked
//! for it, and only a chunk that has usage and no choices. The quick reader of chat chunks
//! reads a body as serde_json does, or leaves it to serde_json.
//!
//! Input: `selector body`: the low 3 bits of the selector pick the API, bit 3 says whether
//! the usage chunk was added by the rewrite, the high nibble how the body is cut when fed as
//! an event stream.
#![no_main]

use gpt_auth_core::usage::response::{from_json, readers_agree, Disposition, StreamMeter};
use gpt_auth_core::usage::sse::{Item, Parser};
use gpt_auth_core::usage::{Api, Usage};
use gpt_auth_fuzz::chunks;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const APIS: [Api; 5] = [
    Api::ChatCompletions,
    Api::Completions,
    Api::Responses,
    Api::Embeddings,
    Api::AnthropicMessages,
];

/// What the usage object says, read from serde_json's document.
fn expected(api: Api, usage: &Value) -> Option<Usage> {
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    if api == Api::AnthropicMessages {
        let (i, o) = (n(usage, "input_tokens"), n(usage, "output_tokens"));
        if i.is_none() && o.is_none() {
            return None;
        }
        let (w, r) = (n(usage, "cache_creation_input_tokens"), n(usage, "cache_read_input_tokens"));
        let (w, r) = (w.unwrap_or(0), r.unwrap_or(0));
        return Some(Usage {
            input: i.unwrap_or(0).saturating_add(w).saturating_add(r),
            cached_input: r,
            cache_creation_input: w,
            output: o.unwrap_or(0),
            reasoning: 0,
        });
    }
    let pick = |a: &str, b: &str| n(usage, a).or(n(usage, b));
    let (input, output) = if api == Api::Responses {
        (pick("input_tokens", "prompt_tokens"), pick("output_tokens", "completion_tokens"))
    } else {
        (pick("prompt_tokens", "input_tokens"), pick("completion_tokens", "output_tokens"))
    };
    if input.is_none() && output.is_none() {
        return None;
    }
    let details = |a: &str, b: &str| {
        usage.get(a).filter(|v| !v.is_null()).or(usage.get(b).filter(|v| !v.is_null())).cloned()
    };
    let inp = details("prompt_tokens_details", "input_tokens_details").unwrap_or(Value::Null);
    let out = details("completion_tokens_details", "output_tokens_details").unwrap_or(Value::Null);
    Some(Usage {
        input: input.unwrap_or(0),
        cached_input: n(&inp, "cached_tokens").unwrap_or(0),
        cache_creation_input: n(&inp, "cache_write_tokens").unwrap_or(0),
        output: output.unwrap_or(0),
        reasoning: n(&out, "reasoning_tokens").unwrap_or(0),
    })
}

/// The meter's view of a stream fed in `parts`: verdicts (with the removed events' data).
fn meter(api: Api, added: bool, parts: &[&[u8]]) -> (Vec<(Disposition, Vec<u8>)>, StreamMeter) {
    let mut parser = Parser::new();
    let mut m = StreamMeter::new(api, added);
    let mut verdicts = Vec::new();
    for part in parts {
        parser.feed(part, |i| {
            if let Item::Event(e) = i {
                verdicts.push((m.on_event(&e), e.data.to_vec()));
            }
        });
    }
    parser.finish(|i| {
        if let Item::Event(e) = i {
            verdicts.push((m.on_event(&e), e.data.to_vec()));
        }
    });
    (verdicts, m)
}

fuzz_target!(|data: &[u8]| {
    let [selector, body @ ..] = data else { return };
    let api = APIS[usize::from(selector & 7) % APIS.len()];
    let added = selector & 8 != 0;
    // The quick reader of chat chunks declines or reads as serde_json does.
    assert!(readers_agree(body), "the quick reader disagrees with serde_json");

    match from_json(api, body) {
        Ok((usage, model)) => {
            // Content strings are skipped unchecked: invalid UTF-8 in them is no refusal.
            let text = String::from_utf8_lossy(body);
            let doc: Value = serde_json::from_str(&text).expect("accepted answers are JSON");
            assert_eq!(Some(usage), expected(api, &doc["usage"]));
            let want = doc.get("model").and_then(Value::as_str).filter(|m| !m.is_empty());
            assert_eq!(model.as_deref(), want);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.len() < 120 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
        }
    }

    let (verdicts, m) = meter(api, added, &[body]);
    let (verdicts2, m2) = meter(api, added, &chunks(body, selector >> 4));
    assert_eq!(verdicts, verdicts2, "chunking changed the verdicts");
    assert_eq!(
        (m.usage(), m.model(), m.ended(), m.error()),
        (m2.usage(), m2.model(), m2.ended(), m2.error())
    );
    assert_eq!(m.unreadable_events(), m2.unreadable_events());
    for (d, event) in &verdicts {
        if *d == Disposition::Remove {
            assert!(added && api.needs_include_usage());
            let text = String::from_utf8_lossy(event);
            let v: Value = serde_json::from_str(&text).expect("a removed chunk is JSON");
            let choices = v.get("choices").unwrap_or(&Value::Null);
            assert!(choices.is_null() || choices.as_array().is_some_and(Vec::is_empty), "{v}");
            assert!(expected(api, &v["usage"]).is_some(), "{v}");
        }
    }
});
