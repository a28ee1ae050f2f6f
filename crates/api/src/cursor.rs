//! Opaque pagination cursors. A cursor names the position after the last item of a page;
//! it carries a MAC keyed with the server's secret, so text the server did not issue
//! (forged or tampered) is refused with a 400. Every server of a deployment shares the key
//! (see [`set_key`]), so a cursor from one is good at any other.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::error::ApiError;

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Sets the process's cursor key (once, at start); false if one was set already. Without
/// one, a random key is made at first use (cursors then hold for this process only).
pub fn set_key(key: [u8; 32]) -> bool {
    KEY.set(key).is_ok()
}

fn key() -> &'static [u8; 32] {
    KEY.get_or_init(rand::random)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    /// After the application created at this time with this token.
    Application { created_at: i64, token: String },
    /// After this chat or message number.
    Number(u64),
    /// After the search hit of this rank (body length) and message number.
    Search { length: u64, number: u64 },
}

const VERSION: u8 = 2;
const APPLICATION: u8 = b'a';
const NUMBER: u8 = b'n';
const SEARCH: u8 = b's';
/// Bytes of the MAC a cursor carries (128 bits).
const CHECKSUM_LEN: usize = 16;

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key()).expect("HMAC takes any key length");
    mac.update(b"chatsys cursor");
    mac.update(bytes);
    let tag = mac.finalize().into_bytes();
    tag[..CHECKSUM_LEN].try_into().expect("a SHA-256 tag is 32 bytes")
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = vec![VERSION];
        match self {
            Cursor::Application { created_at, token } => {
                bytes.push(APPLICATION);
                bytes.extend_from_slice(&created_at.to_be_bytes());
                bytes.extend_from_slice(token.as_bytes());
            }
            Cursor::Number(n) => {
                bytes.push(NUMBER);
                bytes.extend_from_slice(&n.to_be_bytes());
            }
            Cursor::Search { length, number } => {
                bytes.push(SEARCH);
                bytes.extend_from_slice(&number.to_be_bytes());
                bytes.extend_from_slice(&length.to_be_bytes());
            }
        }
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::bad_request("after is not a cursor this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        if bytes.len() < 2 + 8 + CHECKSUM_LEN {
            return Err(invalid());
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        // compared in full (not byte by byte with an early exit): no timing side channel
        let expected = checksum(body);
        let differs = expected.iter().zip(sum).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if body[0] != VERSION || differs != 0 {
            return Err(invalid());
        }
        let value = i64::from_be_bytes(body[2..10].try_into().expect("length checked"));
        match (body[1], &body[10..]) {
            (APPLICATION, token) => Ok(Cursor::Application {
                created_at: value,
                token: String::from_utf8(token.to_vec()).map_err(|_| invalid())?,
            }),
            (NUMBER, []) => Ok(Cursor::Number(value as u64)),
            (SEARCH, length) if length.len() == 8 => Ok(Cursor::Search {
                length: u64::from_be_bytes(length.try_into().expect("length checked")),
                number: value as u64,
            }),
            _ => Err(invalid()),
        }
    }
}

pub fn wrong_list() -> ApiError {
    ApiError::bad_request("after is a cursor of another list")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for c in [Cursor::Number(7), Cursor::Application { created_at: 1_700_000_000_000_000, token: "abc_-1".into() }]
        {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn a_cursor_made_with_another_key_is_refused() {
        use hmac::Mac as _;
        let mut body = vec![VERSION, NUMBER];
        body.extend_from_slice(&7u64.to_be_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"not the server's key").unwrap();
        mac.update(b"chatsys cursor");
        mac.update(&body);
        body.extend_from_slice(&mac.finalize().into_bytes()[..CHECKSUM_LEN]);
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(body)).is_err());
    }

    #[test]
    fn cursors_the_server_did_not_issue_are_refused() {
        let good = Cursor::Number(7).encode();
        let mut tampered = good.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        for bad in ["", "abc", "!!!", &String::from_utf8(tampered).unwrap()] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?}");
        }
    }
}
