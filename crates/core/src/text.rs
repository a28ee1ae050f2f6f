use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

/// Whitespace as JSON Schema's `\s` (ECMAScript) knows it, so that "blank" here means what the
/// published schema's `pattern: "\S"` says: a name or body must hold another character.
pub fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// An application's name: 1–255 Unicode code points, not only whitespace; stored without the
/// whitespace around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let chars = s.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(InvalidInput(format!("name must be at most {} characters, got {chars}", Self::MAX_CHARS)));
        }
        let trimmed = s.trim_matches(is_space);
        if trimmed.is_empty() {
            return Err(InvalidInput("name must not be empty or blank".into()));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AppName {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse(&s)
    }
}

impl From<AppName> for String {
    fn from(n: AppName) -> String {
        n.0
    }
}

/// A message's text: 1–10,000 Unicode code points, not only whitespace. Kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 10_000;

    pub fn parse(s: String) -> Result<Self, InvalidInput> {
        if s.chars().all(is_space) {
            return Err(InvalidInput("body must not be empty or blank".into()));
        }
        let chars = s.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(InvalidInput(format!("body must be at most {} characters, got {chars}", Self::MAX_CHARS)));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<String> for MessageBody {
    type Error = InvalidInput;
    fn try_from(s: String) -> Result<Self, InvalidInput> {
        Self::parse(s)
    }
}

impl From<MessageBody> for String {
    fn from(b: MessageBody) -> String {
        b.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_limited_in_code_points() {
        assert_eq!(AppName::parse("  My app ").unwrap().as_str(), "My app");
        assert!(AppName::parse("").is_err());
        assert!(AppName::parse(" \t\n").is_err());
        assert!(AppName::parse(&"é".repeat(255)).is_ok(), "255 code points of 2 bytes each fit");
        assert!(AppName::parse(&"x".repeat(256)).is_err());
        assert!(AppName::parse(&format!("{} ", "x".repeat(255))).is_err(), "counted as sent");
        assert!(AppName::parse("\u{feff}\u{3000}").is_err());
        assert_eq!(AppName::parse("\u{85}").unwrap().as_str(), "\u{85}", "not whitespace to JSON Schema");
    }

    #[test]
    fn bodies_are_kept_verbatim_and_limited_in_code_points() {
        assert_eq!(MessageBody::parse(" hi ".into()).unwrap().as_str(), " hi ");
        assert!(MessageBody::parse(String::new()).is_err());
        assert!(MessageBody::parse("   ".into()).is_err());
        assert!(MessageBody::parse("ü".repeat(10_000)).is_ok());
        assert!(MessageBody::parse("x".repeat(10_001)).is_err());
    }
}
