//! Standard Webhooks signing: secrets are `whsec_` + base64 of 32 random bytes; a message is
//! signed as `v1,` + base64(HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")), one entry per
//! secret in force, separated by spaces (the specification's form, which its libraries verify).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret.
pub const PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` + base64 of 32 bytes from the system's random source.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a secret (`whsec_` + base64).
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(PREFIX).unwrap_or(secret))
        .ok()
        .filter(|k| !k.is_empty())
}

/// One `v1,` signature of a message under one key.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one entry per key, space-separated.
pub fn header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and of its reference libraries'
    /// tests): this secret, id, timestamp and body give this signature.
    #[test]
    fn the_specifications_example_vector() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_long_enough_and_distinct() {
        let a = new_secret();
        assert!(a.starts_with(PREFIX));
        assert_eq!(key_of(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret());
        let two = header(&[vec![1], vec![2]], "m", 1, b"x");
        assert_eq!(two.split(' ').count(), 2);
        assert!(two.split(' ').all(|s| s.starts_with("v1,")));
    }
}
