//! Message authentication over SHA-2: HMAC (RFC 2104) and PBKDF2 (RFC 8018).
//!
//! The edge agent authenticates the device spec messages it hands its mappers with
//! HMAC-SHA-256 ([`crate::wire::spec_auth`]), and writes mosquitto password files whose hashes
//! are PBKDF2-HMAC-SHA-512. Both are a few lines over the `sha2` crate, written once here.

use sha2::digest::Digest;
use sha2::{Sha256, Sha512};

/// HMAC-SHA-256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    hmac::<Sha256, 64>(key, parts).into()
}

/// HMAC-SHA-512 of the concatenation of `parts` under `key`.
pub fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    hmac::<Sha512, 128>(key, parts).into()
}

/// PBKDF2-HMAC-SHA-512 with one 64-byte output block (what mosquitto's `$7$` hashes use).
pub fn pbkdf2_hmac_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut u = hmac_sha512(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha512(password, &[&u]);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

/// Compares two MACs in time that does not depend on where they differ.
pub fn equal_macs(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// HMAC over `D`, whose block is `BLOCK` bytes.
fn hmac<D: Digest, const BLOCK: usize>(key: &[u8], parts: &[&[u8]]) -> sha2::digest::Output<D> {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        let hashed = D::digest(key);
        block[..hashed.len()].copy_from_slice(&hashed);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let mut inner = D::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let inner = inner.finalize();
    let mut outer = D::new();
    outer.update(pad(0x5c));
    outer.update(inner);
    outer.finalize()
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes of a hex string (either case); `None` when it is not hex of whole bytes.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: key "Jefe", data "what do ya want for nothing?".
        let data: &[u8] = b"what do ya want for nothing?";
        assert_eq!(
            to_hex(&hmac_sha256(b"Jefe", &[&data[..10], &data[10..]])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            to_hex(&hmac_sha512(b"Jefe", &[data])),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        // Test case 6: a key longer than the block is hashed first.
        let key = [0xaa; 131];
        assert_eq!(
            to_hex(&hmac_sha256(
                &key,
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn pbkdf2_matches_known_vectors() {
        // Python: hashlib.pbkdf2_hmac("sha512", b"password", b"salt", n).hex()
        assert_eq!(
            to_hex(&pbkdf2_hmac_sha512(b"password", b"salt", 1)),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
             c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
        assert_eq!(
            to_hex(&pbkdf2_hmac_sha512(b"password", b"salt", 2)),
            "e1d9c16aa681708a45f5c7c4e215ceb66e011a2e9f0040713f18aefdb866d53c\
             f76cab2868a39b9f7840edce4fef5a82be67335c77a6068e04112754f27ccf4e"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(to_hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(from_hex("00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert!(equal_macs(b"abc", b"abc"));
        assert!(!equal_macs(b"abc", b"abd"));
        assert!(!equal_macs(b"abc", b"ab"));
    }
}
