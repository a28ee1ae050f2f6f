use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

/// The store's internal key of an application. It never leaves the server: responses,
/// headers and error texts name an application by its [`AppToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AppId(pub i64);

/// The public, server-made name of an application: 24 random bytes (192 bits) written as
/// 32 URL-safe base64 characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppToken(String);

impl AppToken {
    const RANDOM_BYTES: usize = 24;
    const MAX_LEN: usize = 64;

    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::RANDOM_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts anything shaped like a token. Whether it names an application is for the
    /// store to say; a malformed token is simply one that names nothing.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let shaped = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if shaped { Ok(Self(s.to_owned())) } else { Err(InvalidInput("not an application token".into())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AppToken {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse(&s)
    }
}

impl From<AppToken> for String {
    fn from(t: AppToken) -> String {
        t.0
    }
}

impl fmt::Display for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Tokens are credentials: keep them out of debug output and logs.
impl fmt::Debug for AppToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppToken({}…)", &self.0[..self.0.len().min(4)])
    }
}

macro_rules! number_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(u64);

        impl $name {
            /// The largest number a store column (signed 64-bit) can hold.
            pub const MAX: u64 = i64::MAX as u64;

            pub fn new(n: u64) -> Result<Self, InvalidInput> {
                if (1..=Self::MAX).contains(&n) {
                    Ok(Self(n))
                } else {
                    Err(InvalidInput(format!(
                        "{} must be a positive integer no larger than {}",
                        $what,
                        Self::MAX
                    )))
                }
            }

            /// Parses a path segment: ASCII digits only, at least 1, at most [`Self::MAX`].
            pub fn parse(s: &str) -> Result<Self, InvalidInput> {
                let err = || {
                    InvalidInput(format!(
                        "{} must be a positive integer no larger than {}, not '{}'",
                        $what,
                        Self::MAX,
                        s.chars().take(40).collect::<String>()
                    ))
                };
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                let n: u64 = s.parse().map_err(|_| err())?;
                Self::new(n).map_err(|_| err())
            }

            pub fn get(self) -> u64 {
                self.0
            }

            /// The value as stored in signed 64-bit columns (always fits, see [`Self::MAX`]).
            pub fn as_i64(self) -> i64 {
                self.0 as i64
            }
        }

        impl TryFrom<u64> for $name {
            type Error = InvalidInput;
            fn try_from(n: u64) -> Result<Self, InvalidInput> {
                Self::new(n)
            }
        }

        impl From<$name> for u64 {
            fn from(n: $name) -> u64 {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

number_type!(
    /// A chat's number inside its application, from 1.
    ChatNumber,
    "chat number"
);
number_type!(
    /// A message's number inside its chat, from 1.
    MessageNumber,
    "message number"
);

macro_rules! counter_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub fn get(self) -> u64 {
                self.0
            }

            /// The value as stored in signed 64-bit columns.
            pub fn as_i64(self) -> i64 {
                self.0 as i64
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

counter_type!(
    /// The order of the accepted changes (edits, deletes) of one chat's messages, handed out
    /// by the numbering service when a change is accepted: the store keeps, per message, the
    /// change with the highest version. A create is version 0; a wall clock plays no part.
    Version
);
counter_type!(
    /// A chat's place in its own history of committed changes: every commit that changes a
    /// message of the chat (or the chat itself) gives it the chat's next position, under the
    /// chat row's lock, so everything committed is at or below the chat's current position
    /// and nothing is committed below one already visible. Live events resume from one.
    Position
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_accept_only_positive_integers_that_fit_a_store_column() {
        assert_eq!(ChatNumber::parse("1").unwrap().get(), 1);
        assert_eq!(ChatNumber::parse("9223372036854775807").unwrap().get(), i64::MAX as u64);
        for bad in ["", "0", "-1", "+1", "1.5", "abc", " 1", "9223372036854775808", "99999999999999999999999"] {
            assert!(ChatNumber::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn generated_tokens_are_url_safe_unique_and_parse_back() {
        let a = AppToken::generate();
        let b = AppToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(AppToken::parse(a.as_str()).unwrap(), a);
        assert!(AppToken::parse("has space").is_err());
        assert!(AppToken::parse("").is_err());
    }

    #[test]
    fn token_debug_output_does_not_reveal_the_token() {
        let t = AppToken::generate();
        assert!(!format!("{t:?}").contains(t.as_str()));
    }
}
