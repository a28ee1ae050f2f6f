//! The two tokenizers that make substring search exact.
//!
//! `trigrams`: every run of three characters of the lower-cased text, at the position of its
//! first character. A term of three or more characters occurs in a body exactly when its
//! own trigrams occur at consecutive positions, which a phrase query checks. (Tantivy's
//! `NgramTokenizer` puts every gram at position 0, so it cannot.)
//!
//! `short_grams`: every single character and every pair, for terms of one or two characters.
//!
//! Grams that contain whitespace are left out: a query term never does.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use chatsys_core::search::lowercase;

pub const TRIGRAMS: &str = "chatsys_trigrams";
pub const SHORT_GRAMS: &str = "chatsys_short_grams";

/// The trigrams of a lower-cased term, in order (empty for terms under three characters).
pub fn trigrams_of(term: &str) -> Vec<String> {
    let chars: Vec<char> = term.chars().collect();
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

#[derive(Clone, Copy, Default)]
pub struct Trigrams;

#[derive(Clone, Copy, Default)]
pub struct ShortGrams;

/// A stream over tokens computed up front (bodies are short; this keeps the code plain).
pub struct Grams {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for Grams {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

fn grams(text: &str, sizes: &[usize]) -> Grams {
    let chars: Vec<char> = lowercase(text).chars().collect();
    let mut tokens = Vec::with_capacity(chars.len() * sizes.len());
    for (position, start) in (0..chars.len()).enumerate() {
        for &n in sizes {
            let Some(gram) = chars.get(start..start + n) else { continue };
            if gram.iter().any(|c| c.is_whitespace()) {
                continue;
            }
            tokens.push(Token {
                // offsets are not used (highlights are computed from the body)
                offset_from: start,
                offset_to: start + n,
                position,
                text: gram.iter().collect(),
                position_length: 1,
            });
        }
    }
    Grams { tokens, next: 0 }
}

impl Tokenizer for Trigrams {
    type TokenStream<'a> = Grams;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> Grams {
        grams(text, &[3])
    }
}

impl Tokenizer for ShortGrams {
    type TokenStream<'a> = Grams;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> Grams {
        grams(text, &[1, 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(mut stream: Grams) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().position, stream.token().text.clone()));
        }
        out
    }

    #[test]
    fn trigrams_sit_at_their_character_position_and_skip_whitespace() {
        let got = texts(Trigrams.token_stream("Héllo wo"));
        let want: Vec<(usize, String)> =
            [(0, "hél"), (1, "éll"), (2, "llo"), (6, "wo")].iter().map(|(p, t)| (*p, t.to_string())).collect();
        assert_eq!(&got[..3], &want[..3]);
        assert!(got.iter().all(|(_, t)| !t.contains(' ')));
        assert_eq!(got.len(), 3, "'lo ', 'o w', ' wo' hold a space; 'wo' is too short");
    }

    #[test]
    fn short_grams_cover_every_character_and_pair() {
        let got = texts(ShortGrams.token_stream("Ab c"));
        let grams: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(grams, ["a", "ab", "b", "c"]);
    }

    #[test]
    fn a_terms_trigrams_are_its_windows() {
        assert_eq!(trigrams_of("abcd"), ["abc", "bcd"]);
        assert!(trigrams_of("ab").is_empty());
    }
}
