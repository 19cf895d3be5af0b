//! Filtering a model list (`GET /v1/models`) to the models a user may use, so that a chat UI's
//! model picker offers only those. OpenAI and Anthropic send the list as
//! `{"data": [{"id": "...", ...}, ...], ...}`; Anthropic also names its first and last entry.

/// The list with only the entries whose `id` `keep` accepts; `None` if the body is not a list
/// of that shape. Other members are kept.
pub fn filter_list(body: &[u8], keep: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let data = doc.get_mut("data")?.as_array_mut()?;
    data.retain(|m| m.get("id").and_then(|id| id.as_str()).is_some_and(&keep));
    let kept: Vec<String> =
        data.iter().filter_map(|m| m.get("id")?.as_str().map(str::to_owned)).collect();
    if doc.get("first_id").is_some() {
        doc["first_id"] = kept.first().map_or(serde_json::Value::Null, |s| s.as_str().into());
        doc["last_id"] = kept.last().map_or(serde_json::Value::Null, |s| s.as_str().into());
    }
    let mut out = serde_json::to_vec(&doc).ok()?;
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let openai = br#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"gpt-4o-mini","object":"model"},{"id":"o1"}]}"#;
        let out = filter_list(openai, |id| id.ends_with("mini")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["id"], "gpt-4o-mini");
        assert_eq!(v["object"], "list");
        let anthropic = br#"{"data":[{"id":"a","type":"model"},{"id":"b"},{"id":"c"}],"has_more":false,"first_id":"a","last_id":"c"}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&filter_list(anthropic, |id| id != "a").unwrap()).unwrap();
        assert_eq!((v["first_id"].as_str(), v["last_id"].as_str()), (Some("b"), Some("c")));
        assert!(filter_list(b"not json", |_| true).is_none());
        assert!(filter_list(br#"{"data":{}}"#, |_| true).is_none());
    }
}
