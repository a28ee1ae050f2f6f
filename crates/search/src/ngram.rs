//! The tokenizer that makes substring search exact with one gram per character.
//!
//! At every character that is not whitespace, the lower-cased text yields one gram: the
//! next three characters, cut at the first whitespace or at the end of the text and padded
//! with spaces to three characters, at the position of its first character. Then:
//!
//! * a term of three or more characters occurs in a body exactly when its own trigrams
//!   occur at consecutive positions, which a phrase query checks (a padded gram holds a
//!   space, which no term does, so it never takes part). Tantivy's `NgramTokenizer` puts
//!   every gram at position 0, so it cannot;
//! * a term of one or two characters occurs exactly when some gram starts with it, which a
//!   range over the sorted term dictionary finds ([`prefix_range`]).
//!
//! Separate 1- and 2-gram tokens would triple the tokens per body, and indexing time with
//! them.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use chatsys_core::search::lowercase;

pub const GRAMS: &str = "chatsys_grams";

/// Every gram is this many characters long.
const GRAM: usize = 3;
const PAD: char = ' ';

/// The trigrams of a lower-cased term, in order (empty for terms under three characters).
pub fn trigrams_of(term: &str) -> Vec<String> {
    let chars: Vec<char> = term.chars().collect();
    chars.windows(GRAM).map(|w| w.iter().collect()).collect()
}

/// For a lower-cased term of one or two characters, the smallest and the largest gram that
/// start with it: every gram in between starts with it too (UTF-8 sorts like code points).
pub fn prefix_range(term: &str) -> (String, String) {
    let missing = GRAM.saturating_sub(term.chars().count());
    let mut last = term.to_owned();
    last.extend(std::iter::repeat_n(char::MAX, missing));
    (term.to_owned(), last)
}

#[derive(Clone, Copy, Default)]
pub struct Grams;

/// Walks the lower-cased text once, filling one reused token (no allocation per gram).
pub struct GramStream {
    chars: Vec<char>,
    next: usize,
    token: Token,
}

impl TokenStream for GramStream {
    fn advance(&mut self) -> bool {
        let Some(position) = (self.next..self.chars.len()).find(|&i| !self.chars[i].is_whitespace()) else {
            self.next = self.chars.len();
            return false;
        };
        self.next = position + 1;
        let gram = self.chars[position..].iter().take(GRAM).take_while(|c| !c.is_whitespace());
        let token = &mut self.token;
        token.text.clear();
        token.text.extend(gram);
        let len = token.text.chars().count();
        token.text.extend(std::iter::repeat_n(PAD, GRAM - len));
        token.position = position;
        // offsets are not used (highlights are computed from the body)
        token.offset_from = position;
        token.offset_to = position + len;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

impl Tokenizer for Grams {
    type TokenStream<'a> = GramStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> GramStream {
        GramStream { chars: lowercase(text).chars().collect(), next: 0, token: Token::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(usize, String)> {
        let mut stream = Grams.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push((stream.token().position, stream.token().text.clone()));
        }
        out
    }

    #[test]
    fn one_gram_per_character_at_its_position_cut_at_whitespace_and_padded() {
        let want: Vec<(usize, String)> =
            [(0, "hél"), (1, "éll"), (2, "llo"), (3, "lo "), (4, "o  "), (6, "wo "), (7, "o  ")]
                .iter()
                .map(|(p, t)| (*p, t.to_string()))
                .collect();
        assert_eq!(texts("Héllo wo"), want);
    }

    #[test]
    fn whitespace_of_any_kind_cuts_grams() {
        let grams = texts("a\tb\u{3000}c");
        assert_eq!(grams, [(0, "a  ".to_string()), (2, "b  ".to_string()), (4, "c  ".to_string())]);
    }

    #[test]
    fn a_terms_trigrams_are_its_windows() {
        assert_eq!(trigrams_of("abcd"), ["abc", "bcd"]);
        assert!(trigrams_of("ab").is_empty());
    }

    #[test]
    fn a_prefix_range_holds_exactly_the_grams_that_start_with_the_term() {
        let (low, high) = prefix_range("ab");
        let inside = ["ab ", "aba", "abz", "ab\u{10FFFF}", "ab😀"];
        let outside = ["a  ", "aa\u{10FFFF}", "ac ", "b  ", "ä  "];
        for gram in inside {
            assert!(low.as_str() <= gram && gram <= high.as_str(), "{gram:?} is inside");
        }
        for gram in outside {
            assert!(!(low.as_str() <= gram && gram <= high.as_str()), "{gram:?} is outside");
        }
        let (low, high) = prefix_range("ä");
        assert!(low.as_str() <= "äb " && "ä\u{10FFFF}\u{10FFFF}" <= high.as_str() && "å  " > high.as_str());
    }
}
