//! What a search means, independent of any engine: the query's terms, the reference match
//! ("every term is a substring of the lower-cased body") and the highlighter. Every search
//! backend is held to [`SearchQuery::matches`] and renders hits with [`highlight`].

use crate::error::InvalidInput;

/// A parsed `q`: its whitespace-separated terms, each lower-cased character by character
/// (Rust's `char::to_lowercase`, the Unicode default mapping), without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<String>,
}

/// Lower-cases each character on its own; no folding beyond that (`ß` stays `ß`).
pub fn lowercase(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

impl SearchQuery {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(q: &str) -> Result<Self, InvalidInput> {
        let chars = q.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(InvalidInput(format!("q must be at most {} characters, got {chars}", Self::MAX_CHARS)));
        }
        let mut terms: Vec<String> = Vec::new();
        for term in q.split_whitespace().map(lowercase) {
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        if terms.is_empty() {
            return Err(InvalidInput("q must hold at least one search term".into()));
        }
        Ok(Self { terms })
    }

    /// The lower-cased terms, in the order given.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// The reference semantics: every term occurs in the lower-cased body.
    pub fn matches(&self, body: &str) -> bool {
        let body = lowercase(body);
        self.terms.iter().all(|t| body.contains(t.as_str()))
    }
}

/// The body, HTML-escaped, with every occurrence of every term wrapped in `<mark>…</mark>`;
/// overlapping or touching occurrences share one mark.
pub fn highlight(body: &str, query: &SearchQuery) -> String {
    Highlighter::new(query).highlight(body)
}

/// [`highlight`] for many bodies of one query: the terms are compiled once, and each body
/// is marked in time linear in its length (one pass finds every occurrence of every term,
/// overlapping ones included; a second marks them).
pub struct Highlighter {
    terms: aho_corasick::AhoCorasick,
}

impl Highlighter {
    pub fn new(query: &SearchQuery) -> Self {
        let terms = aho_corasick::AhoCorasick::new(query.terms()).expect("search terms are at most 256 characters");
        Self { terms }
    }

    pub fn highlight(&self, body: &str) -> String {
        // The lower-cased text, and for each of its bytes the index of the body character it
        // comes from (lower-casing may turn one character into several).
        let mut lower = String::with_capacity(body.len());
        let mut source_char: Vec<usize> = Vec::with_capacity(body.len());
        let mut chars = 0;
        for (i, c) in body.chars().enumerate() {
            for l in c.to_lowercase() {
                lower.push(l);
                source_char.extend(std::iter::repeat_n(i, l.len_utf8()));
            }
            chars = i + 1;
        }
        // for each character where an occurrence starts, the furthest one ends
        let mut reach = vec![0usize; chars];
        for found in self.terms.find_overlapping_iter(&lower) {
            let (start, end) = (source_char[found.start()], source_char[found.end() - 1] + 1);
            reach[start] = reach[start].max(end);
        }
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (start, &end) in reach.iter().enumerate().filter(|(_, end)| **end > 0) {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        mark(body, &merged)
    }
}

/// The body, HTML-escaped, with `<mark>` around each of the (sorted, disjoint) spans.
fn mark(body: &str, merged: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(body.len() + merged.len() * 13);
    let mut next = merged.iter().peekable();
    let mut open_until = None;
    for (i, c) in body.chars().enumerate() {
        if open_until == Some(i) {
            out.push_str("</mark>");
            open_until = None;
        }
        if let Some(&&(start, end)) = next.peek()
            && start == i
        {
            out.push_str("<mark>");
            open_until = Some(end);
            next.next();
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    if open_until.is_some() {
        out.push_str("</mark>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> SearchQuery {
        SearchQuery::parse(text).unwrap()
    }

    #[test]
    fn terms_are_lowercased_per_character_and_deduplicated() {
        assert_eq!(q("  Ell  WOR ell ").terms(), ["ell", "wor"]);
        assert_eq!(q("ÜNÏCODE").terms(), ["ünïcode"]);
        assert_eq!(q("STRASSE").terms(), ["strasse"], "no ß folding");
    }

    #[test]
    fn empty_blank_and_long_queries_are_refused() {
        assert!(SearchQuery::parse("").is_err());
        assert!(SearchQuery::parse(" \t\n").is_err());
        assert!(SearchQuery::parse(&"x".repeat(257)).is_err());
        assert!(SearchQuery::parse(&"é".repeat(256)).is_ok(), "characters, not bytes");
    }

    #[test]
    fn matching_is_case_insensitive_substring_of_every_term() {
        assert!(q("ell wor").matches("Hello World"));
        assert!(!q("ell xyz").matches("Hello World"));
        assert!(q("straße").matches("Ünïcode Straße"));
        assert!(!q("strasse").matches("Ünïcode Straße"));
        assert!(q("a.b").matches("xa.by") && !q("a.b").matches("axb"));
    }

    #[test]
    fn highlights_merge_overlaps_and_escape_everything_else() {
        assert_eq!(highlight("Hello World", &q("world")), "Hello <mark>World</mark>");
        assert_eq!(highlight("aaa", &q("aa")), "<mark>aaa</mark>", "overlapping occurrences");
        assert_eq!(highlight("abcd", &q("ab cd")), "<mark>abcd</mark>", "touching occurrences");
        assert_eq!(highlight("ab cd", &q("ab cd")), "<mark>ab</mark> <mark>cd</mark>");
        assert_eq!(highlight("Ünïcode Straße", &q("straße")), "Ünïcode <mark>Straße</mark>");
        assert_eq!(
            highlight(r#"<i>zq</i> & "co" 'x'"#, &q("zq")),
            "&lt;i&gt;<mark>zq</mark>&lt;/i&gt; &amp; &quot;co&quot; &#39;x&#39;"
        );
        assert_eq!(highlight("a<b", &q("<")), "a<mark>&lt;</mark>b");
    }

    #[test]
    fn highlights_follow_characters_whose_lowercase_is_longer() {
        // 'İ' lower-cases to "i̇" (two characters): a match on either part marks the whole 'İ'
        assert_eq!(highlight("xİy", &q("i")), "x<mark>İ</mark>y");
        assert_eq!(highlight("İİ", &q("i̇i̇")), "<mark>İİ</mark>");
    }
}
