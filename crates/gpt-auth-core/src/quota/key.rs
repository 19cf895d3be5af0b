//! What counters are kept under in a zone: a user (the lower-cased address, as before), a group
//! (a shared budget: a team, or everyone together — the account's own limit), or one user's use
//! of one model (for the report). Encoded as bytes that cannot collide: addresses never start
//! with a control character.

use crate::session::valid_email;

/// Longest model name kept (longer ones are cut; they only label report rows).
pub const MAX_MODEL_LEN: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    User(String),
    Group(String),
    Model { email: String, model: String },
}

const GROUP: u8 = 0x01;
const MODEL: u8 = 0x02;

impl Key {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Key::User(e) => e.to_ascii_lowercase().into_bytes(),
            Key::Group(g) => [&[GROUP][..], g.as_bytes()].concat(),
            Key::Model { email, model } => {
                [&[MODEL][..], email.to_ascii_lowercase().as_bytes(), &[0], model.as_bytes()]
                    .concat()
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Key> {
        let text = |b: &[u8]| core::str::from_utf8(b).ok().map(str::to_owned);
        match *bytes.first()? {
            GROUP => Some(Key::Group(text(&bytes[1..])?)),
            MODEL => {
                let rest = &bytes[1..];
                let nul = rest.iter().position(|&b| b == 0)?;
                Some(Key::Model { email: text(&rest[..nul])?, model: text(&rest[nul + 1..])? })
            }
            _ => {
                let e = text(bytes)?;
                valid_email(&e).then_some(Key::User(e))
            }
        }
    }

    /// The model key of a user, into `buf` (no allocation on the request path): the address
    /// (already lower case) and the model name as a report label (control characters and
    /// spaces replaced, at most [`MAX_MODEL_LEN`] bytes).
    pub fn model_key_into<'b>(buf: &'b mut Vec<u8>, email_lower: &[u8], model: &str) -> &'b [u8] {
        buf.clear();
        buf.push(MODEL);
        buf.extend_from_slice(email_lower);
        buf.push(0);
        for c in model.chars() {
            if buf.len() + c.len_utf8() > 2 + email_lower.len() + MAX_MODEL_LEN {
                break;
            }
            if c.is_control() || c == ' ' {
                buf.push(b'_');
            } else {
                let mut b = [0; 4];
                buf.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
        buf
    }

    pub fn group_key(name: &str) -> Vec<u8> {
        Key::Group(name.to_owned()).encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_no_collisions() {
        for k in [
            Key::User("alice@example.com".into()),
            Key::Group("research".into()),
            Key::Model { email: "alice@example.com".into(), model: "gpt-4o".into() },
        ] {
            assert_eq!(Key::decode(&k.encode()), Some(k));
        }
        assert_eq!(Key::User("Alice@Example.com".into()).encode(), b"alice@example.com");
        assert_eq!(Key::decode(b"not an address"), None);
        let mut buf = Vec::new();
        let k = Key::model_key_into(&mut buf, b"a@b.c", "gpt 4\n").to_vec();
        assert_eq!(
            Key::decode(&k),
            Some(Key::Model { email: "a@b.c".into(), model: "gpt_4_".into() })
        );
        let long = "m".repeat(500);
        assert_eq!(Key::model_key_into(&mut buf, b"a@b.c", &long).len(), 1 + 5 + 1 + MAX_MODEL_LEN);
    }
}
