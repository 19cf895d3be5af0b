//! PKCE (RFC 7636): the code verifier kept in the login-state cookie and the S256 challenge
//! sent with the authorization request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The `code_challenge_method` this module uses.
pub const METHOD: &str = "S256";

/// A code verifier from 32 random bytes: their base64url encoding, 43 characters (RFC 7636
/// §4.1 recommends exactly this).
pub fn verifier_from_bytes(random: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The S256 code challenge of a verifier: base64url(SHA-256(verifier)), 43 characters.
pub fn challenge_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let verifier = verifier_from_bytes(&octets);
        assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(challenge_s256(&verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn lengths_and_alphabet() {
        for seed in [0u8, 0xff, 0x5a] {
            let v = verifier_from_bytes(&[seed; 32]);
            assert_eq!(v.len(), 43);
            assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(challenge_s256(&v).len(), 43);
        }
    }
}
