//! AI API request bodies (`usage::request::parse`, `with_include_usage`): every metered request
//! runs them on the client's body. Whenever serde_json reads the body as an object, the scan
//! agrees with its document: the same model, stream flag, include_usage and limits, or a refusal
//! that the document bears out (a member we read given twice, or of the wrong type). When the
//! scan accepts a body serde_json refuses, it is only for serde_json's own limits (numbers out
//! of f64 range, nesting past 128). A rewrite changes only `stream_options.include_usage`, and
//! every byte outside the inserted piece stays as it was.
//!
//! Input: a request body.
#![no_main]

use std::fmt;

use gpt_auth_core::usage::request::{self, IncludeUsage, RequestError, RequestInfo};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON value with its object members in document order, duplicates kept.
#[derive(Debug, Clone)]
enum J {
    Object(Vec<(String, J)>),
    Array,
    Leaf(Value),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<J, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, J>()? {
                    members.push((k, v));
                }
                Ok(J::Object(members))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<J, A::Error> {
                while s.next_element::<J>()?.is_some() {}
                Ok(J::Array)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Leaf(Value::Bool(b)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Leaf(n.into()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Leaf(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(J::Leaf(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Leaf(Value::String(s.into())))
            }
            fn visit_string<E>(self, s: String) -> Result<J, E> {
                Ok(J::Leaf(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Leaf(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

const READ: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
];

fn null(j: &J) -> bool {
    matches!(j, J::Leaf(Value::Null))
}

/// Whether `v` is an acceptable value of the member `name` (as RequestInfo documents it; a
/// limit must be what serde_json reads as an unsigned integer: not `1.0`, `1e3`, `-0` nor a
/// number past `u64::MAX`, all of which it reads as floats).
fn acceptable(name: &str, v: &J) -> bool {
    if null(v) {
        return true;
    }
    match name {
        "model" => matches!(v, J::Leaf(Value::String(_))),
        "stream" | "stream_options.include_usage" => matches!(v, J::Leaf(Value::Bool(_))),
        "stream_options" => match v {
            J::Object(members) => members
                .iter()
                .filter(|(k, _)| k == "include_usage")
                .all(|(_, v)| acceptable("stream_options.include_usage", v)),
            _ => false,
        },
        _ => matches!(v, J::Leaf(Value::Number(n)) if n.is_u64()),
    }
}

/// What serde_json's document says of a member we read: every occurrence.
fn occurrences<'a>(top: &'a [(String, J)], name: &str) -> Vec<&'a J> {
    top.iter().filter(|(k, _)| k == name).map(|(_, v)| v).collect()
}

fn include_usage_values(top: &[(String, J)]) -> Vec<&J> {
    occurrences(top, "stream_options")
        .into_iter()
        .flat_map(|o| match o {
            J::Object(m) => {
                m.iter().filter(|(k, _)| k == "include_usage").map(|(_, v)| v).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

/// The scan accepted a body serde_json reads as an object: they say the same.
fn check_agreement(info: &RequestInfo, top: &[(String, J)]) {
    for name in READ {
        assert!(occurrences(top, name).len() <= 1, "{name} twice, accepted");
    }
    assert!(include_usage_values(top).len() <= 1, "include_usage twice, accepted");
    let one = |name: &str| occurrences(top, name).first().copied().filter(|v| !null(v));
    let model = one("model").map(|v| match v {
        J::Leaf(Value::String(s)) => s.clone(),
        other => panic!("model {other:?} accepted"),
    });
    assert_eq!(info.model, model);
    let stream = one("stream").map(|v| matches!(v, J::Leaf(Value::Bool(true))));
    assert_eq!(info.stream, stream.unwrap_or(false));
    let include = include_usage_values(top)
        .first()
        .copied()
        .filter(|v| !null(v))
        .map(|v| matches!(v, J::Leaf(Value::Bool(true))));
    assert_eq!(info.include_usage, include);
    for (name, got) in [
        ("max_tokens", info.max_tokens),
        ("max_completion_tokens", info.max_completion_tokens),
        ("max_output_tokens", info.max_output_tokens),
    ] {
        let want = one(name).map(|v| match v {
            J::Leaf(Value::Number(n)) => n.as_u64().expect("accepted limit is an integer"),
            other => panic!("{name} {other:?} accepted"),
        });
        assert_eq!(got, want, "{name}");
    }
}

/// The scan's refusal of a body serde_json reads as an object is borne out by the document.
fn check_refusal(e: RequestError, top: &[(String, J)]) {
    match e {
        RequestError::Duplicate("stream_options.include_usage") => {
            assert!(
                include_usage_values(top).len() >= 2
                    || occurrences(top, "stream_options").len() >= 2
            )
        }
        RequestError::Duplicate(name) => assert!(occurrences(top, name).len() >= 2, "{name}"),
        RequestError::BadField("stream_options.include_usage") => {
            assert!(include_usage_values(top)
                .iter()
                .any(|v| !acceptable("stream_options.include_usage", v)))
        }
        RequestError::BadField(name) => {
            assert!(occurrences(top, name).iter().any(|v| !acceptable(name, v)), "{name} refused")
        }
        other => panic!("{other:?} for a body serde_json reads as an object"),
    }
}

fuzz_target!(|data: &[u8]| {
    let got = request::parse(data);
    if let Err(e) = &got {
        let msg = e.to_string();
        assert!(msg.len() < 80 && msg.bytes().all(|b| (b' '..=b'~').contains(&b)), "{msg:?}");
    }
    let doc = serde_json::from_slice::<J>(data);
    match (&got, &doc) {
        (Ok(info), Ok(J::Object(top))) => check_agreement(info, top),
        (Ok(_), Ok(other)) => panic!("accepted a body that is not an object: {other:?}"),
        (Ok(_), Err(e)) => {
            let e = e.to_string();
            assert!(
                e.contains("number out of range") || e.contains("recursion limit exceeded"),
                "accepted what serde_json refuses: {e}"
            );
        }
        (Err(e), Ok(J::Object(top))) => check_refusal(*e, top),
        (Err(e), Ok(_)) => assert_eq!(*e, RequestError::NotObject),
        (Err(_), Err(_)) => {}
    }

    let Ok(info) = got else { return };
    let rewrite = info.with_include_usage(data).expect("the same body parses");
    assert_eq!(request::with_include_usage(data), Ok(rewrite.clone()));
    let out = match rewrite {
        IncludeUsage::Added(out) => out,
        IncludeUsage::NotStreaming => return assert!(!info.stream),
        IncludeUsage::AlreadyRequested => return assert_eq!(info.include_usage, Some(true)),
        IncludeUsage::Declined => return assert_eq!(info.include_usage, Some(false)),
    };
    assert!(info.stream && info.include_usage.is_none());
    let again = request::parse(&out).expect("the rewrite parses");
    assert_eq!(again.include_usage, Some(true));
    assert_eq!(
        (&again.model, again.stream, again.output_limit()),
        (&info.model, info.stream, info.output_limit())
    );
    // One piece inserted (or `null` replaced), the rest byte for byte.
    let p = data.iter().zip(&out).take_while(|(a, b)| a == b).count();
    let room = data.len().min(out.len()) - p;
    let s = data.iter().rev().zip(out.iter().rev()).take(room).take_while(|(a, b)| a == b).count();
    assert!(data.len() - p - s <= 4, "more than a null replaced");
    assert!([40, 39, 21, 20, 18, 0].contains(&(out.len() - data.len())));
    // serde_json sees the same document, with include_usage true.
    if let (Ok(before), Ok(after)) =
        (serde_json::from_slice::<Value>(data), serde_json::from_slice::<Value>(&out))
    {
        let (mut before, mut after) = (before, after);
        let was = before.as_object_mut().unwrap().remove("stream_options");
        let mut now = after.as_object_mut().unwrap().remove("stream_options").unwrap();
        assert_eq!(now["include_usage"], Value::Bool(true));
        now.as_object_mut().unwrap().remove("include_usage");
        let mut was = match was {
            Some(Value::Object(o)) => Value::Object(o),
            _ => serde_json::json!({}),
        };
        was.as_object_mut().unwrap().remove("include_usage");
        assert_eq!(now, was);
        assert_eq!(after, before);
    }
});
