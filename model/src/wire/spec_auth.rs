//! Authenticated device spec messages: the edge agent seals every retained spec message it
//! publishes with an HMAC-SHA-256 under the node's spec key, and an SDK mapper applies a spec only
//! when the seal verifies.
//!
//! The broker's access control already keeps other clients off the spec topics; the seal is the
//! second line: a spec that reached the mapper some other way (a broker without access control,
//! a message retained before it was configured, a mis-written ACL) is never applied, so nobody
//! but the agent can change how a mapper drives its hardware (e.g. remove an interlock).
//!
//! **Format.** The sealed payload is the spec message's JSON object with one more member, last:
//! `"hmacSha256":"<64 lower-case hex digits>"`. The MAC covers the topic, a zero byte and the
//! payload *without* that member (the bytes before its leading comma, then `}`), so the JSON is
//! authenticated byte for byte, with no canonical form to agree on, and a sealed message cannot be
//! moved to another device's topic. Readers that do not verify (KubeEdge tools, `mosquitto_sub`)
//! see one unknown member and ignore it. An empty payload (the device left the node) is not
//! sealed: it only removes a device, which releases its hardware.

use std::fmt;

use crate::mac::{equal_macs, from_hex, hmac_sha256, to_hex};

/// The name of the member that carries the MAC.
pub const MAC_MEMBER: &str = "hmacSha256";
/// `,"hmacSha256":"`
const PREFIX: &str = ",\"hmacSha256\":\"";
/// Hex digits of the MAC.
const MAC_HEX: usize = 64;
/// `"}`
const SUFFIX: &str = "\"}";
/// The sealed message's last bytes: the MAC member and the closing brace.
const TRAILER: usize = PREFIX.len() + MAC_HEX + SUFFIX.len();
/// Bytes the seal adds to a message (the trailer replaces the message's closing brace).
pub const SEAL_BYTES: usize = TRAILER - 1;

/// A node's spec key: 32 random bytes the agent keeps in its data dir and gives the node's
/// mappers in their credentials files.
#[derive(Clone, PartialEq, Eq)]
pub struct SpecKey([u8; 32]);

impl fmt::Debug for SpecKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpecKey(…)")
    }
}

/// Why a key does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a spec key is 64 hex digits (32 bytes)")]
pub struct BadSpecKey;

impl SpecKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> SpecKey {
        SpecKey(bytes)
    }

    /// A key from 64 hex digits.
    pub fn from_hex(text: &str) -> Result<SpecKey, BadSpecKey> {
        let bytes = from_hex(text.trim()).ok_or(BadSpecKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| BadSpecKey)?;
        Ok(SpecKey(bytes))
    }

    /// The key as 64 hex digits (for the credentials file).
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// The key's bytes, e.g. to derive another secret from it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, topic: &str, body_without_brace: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, &[topic.as_bytes(), &[0], body_without_brace, b"}"])
    }
}

impl serde::Serialize for SpecKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for SpecKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SpecKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A client's credentials for an edge node's MQTT bus, as the agent writes them into a file
/// (JSON, mode 0600) and a mapper reads them (`--credentials FILE`): the MQTT login and the
/// node's spec key.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BusCredentials {
    /// The MQTT username: the client's name in the agent's `bus.clients`.
    pub username: String,
    /// The MQTT password.
    pub password: String,
    /// The key that seals the node's spec messages.
    pub spec_key: SpecKey,
}

impl fmt::Debug for BusCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl BusCredentials {
    /// Parses a credentials file's text; the error says what is wrong, never the secrets.
    pub fn from_json(text: &str) -> Result<BusCredentials, String> {
        serde_json::from_str(text).map_err(|e| format!("not an edgetwin credentials file: {e}"))
    }

    /// The file's text (pretty JSON, with a final newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Why a spec message is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The message does not end with the MAC member (unsealed, or not from an edgetwin agent).
    #[error("the spec message is not sealed (no trailing \"{MAC_MEMBER}\" member)")]
    Unsealed,
    /// The MAC does not match: written by someone without the node's spec key, or changed.
    #[error(
        "the spec message's {MAC_MEMBER} does not match: not from this node's agent, or altered"
    )]
    Mismatch,
    /// What was given to seal is not a non-empty JSON object's text.
    #[error("only a non-empty JSON object can be sealed")]
    NotAnObject,
}

/// Seals `body` (a spec message: a non-empty JSON object) for `topic`.
pub fn seal(key: &SpecKey, topic: &str, body: &[u8]) -> Result<Vec<u8>, SealError> {
    let open = body
        .strip_suffix(b"}")
        .filter(|open| open.starts_with(b"{") && open[1..].iter().any(|b| !b.is_ascii_whitespace()))
        .ok_or(SealError::NotAnObject)?;
    let mac = key.mac(topic, open);
    let mut sealed = Vec::with_capacity(body.len() + SEAL_BYTES);
    sealed.extend_from_slice(open);
    sealed.extend_from_slice(PREFIX.as_bytes());
    sealed.extend_from_slice(to_hex(&mac).as_bytes());
    sealed.extend_from_slice(SUFFIX.as_bytes());
    Ok(sealed)
}

/// Checks that `payload` on `topic` was sealed with `key`.
pub fn verify(key: &SpecKey, topic: &str, payload: &[u8]) -> Result<(), SealError> {
    let split = payload
        .len()
        .checked_sub(TRAILER)
        .ok_or(SealError::Unsealed)?;
    let (open, seal) = payload.split_at(split);
    let hex = seal
        .strip_prefix(PREFIX.as_bytes())
        .and_then(|rest| rest.strip_suffix(SUFFIX.as_bytes()))
        .and_then(|hex| std::str::from_utf8(hex).ok())
        .and_then(from_hex)
        .ok_or(SealError::Unsealed)?;
    if equal_macs(&hex, &key.mac(topic, open)) {
        Ok(())
    } else {
        Err(SealError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "edgetwin/v1/node/n1/device/default/lamp/spec";

    fn key(byte: u8) -> SpecKey {
        SpecKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_sealed_message_verifies_and_stays_json_with_one_more_member() {
        let body = br#"{"device":{"kind":"Device"},"model":null}"#;
        let sealed = seal(&key(1), TOPIC, body).expect("seals");
        assert_eq!(sealed.len(), body.len() + SEAL_BYTES);
        verify(&key(1), TOPIC, &sealed).expect("verifies");
        let json: serde_json::Value = serde_json::from_slice(&sealed).expect("JSON");
        assert_eq!(json["device"]["kind"], "Device");
        assert_eq!(json[MAC_MEMBER].as_str().map(str::len), Some(64));
    }

    #[test]
    fn another_key_topic_or_byte_is_refused() {
        let body = br#"{"device":{"kind":"Device"}}"#;
        let sealed = seal(&key(1), TOPIC, body).expect("seals");
        assert_eq!(verify(&key(2), TOPIC, &sealed), Err(SealError::Mismatch));
        let other = "edgetwin/v1/node/n1/device/default/other/spec";
        assert_eq!(verify(&key(1), other, &sealed), Err(SealError::Mismatch));
        let mut altered = sealed.clone();
        altered[3] ^= 1;
        assert_eq!(verify(&key(1), TOPIC, &altered), Err(SealError::Mismatch));
    }

    #[test]
    fn unsealed_and_malformed_messages_are_refused() {
        let body = br#"{"device":{"kind":"Device"},"model":{"spec":{"protocolConfigData":null}}}"#;
        assert_eq!(verify(&key(1), TOPIC, body), Err(SealError::Unsealed));
        assert_eq!(verify(&key(1), TOPIC, b""), Err(SealError::Unsealed));
        let fake = format!(r#"{{"device":{{}}{PREFIX}{}{SUFFIX}"#, "z".repeat(MAC_HEX));
        assert_eq!(
            verify(&key(1), TOPIC, fake.as_bytes()),
            Err(SealError::Unsealed)
        );
        assert_eq!(seal(&key(1), TOPIC, b"{}"), Err(SealError::NotAnObject));
        assert_eq!(seal(&key(1), TOPIC, b"[1]"), Err(SealError::NotAnObject));
    }

    #[test]
    fn credentials_round_trip_and_never_print_their_secrets() {
        let credentials = BusCredentials {
            username: "gpio".into(),
            password: "s3cret-password".into(),
            spec_key: key(0xcd),
        };
        let text = credentials.to_json();
        assert_eq!(BusCredentials::from_json(&text), Ok(credentials.clone()));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("gpio") && !shown.contains("s3cret") && !shown.contains("cdcd"));
        let bad = BusCredentials::from_json(r#"{"username":"a","password":"b","specKey":"12"}"#)
            .expect_err("a short key");
        assert!(bad.contains("64 hex digits"), "{bad}");
    }

    #[test]
    fn keys_are_64_hex_digits_and_never_printed() {
        let k = key(0xab);
        assert_eq!(SpecKey::from_hex(&k.to_hex()), Ok(k.clone()));
        assert_eq!(SpecKey::from_hex("abcd"), Err(BadSpecKey));
        assert!(!format!("{k:?}").contains("ab"));
    }
}
