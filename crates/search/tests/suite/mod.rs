//! The search conformance suite: API.md's search rules, written once and run against every
//! backend through a [`Harness`] (`search_contract!(open)` in the backend's test file).

use std::collections::BTreeSet;

use async_trait::async_trait;
use chatsys_core::ports::{ChangedMessage, SearchIndex, SearchPosition};
use chatsys_core::{AppId, ChatNumber, MessageNumber, SearchQuery};

#[async_trait]
pub trait Harness: Send + Sync {
    fn index(&self) -> &dyn SearchIndex;
    /// Makes everything indexed so far searchable.
    async fn settle(&self);
}

/// The one list of the suite's cases: `every_search_case!(then!(args))` expands to
/// `then!(args; case, case, …)`, so every backend runs every case.
#[macro_export]
macro_rules! every_search_case {
    ($then:ident!($($args:tt)*)) => {
        $then! {$($args)*;
            terms_are_case_insensitive_substrings_anded,
            punctuation_and_symbols_are_literal,
            terms_of_one_and_two_characters_and_non_ascii_text,
            only_the_asked_chat_is_ever_searched,
            an_edit_replaces_the_searchable_text,
            relevance_first_then_higher_numbers_first,
            pages_after_a_position_visit_every_hit_once,
        }
    };
}

#[macro_export]
macro_rules! search_contract {
    ($open:path) => {
        $crate::every_search_case!(search_contract!($open));
    };
    ($open:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $open().await;
                suite::$name(&harness).await;
            }
        )+
    };
}

pub const APP: AppId = AppId(1);

static NEXT_POSITION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn doc(app: AppId, chat: u64, number: u64, body: &str) -> ChangedMessage {
    ChangedMessage {
        app,
        chat: ChatNumber::new(chat).unwrap(),
        number: MessageNumber::new(number).unwrap(),
        body: Some(body.to_owned()),
        // every change a higher position than the one before, as the store gives them
        position: chatsys_core::Position(NEXT_POSITION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        first_write: false,
    }
}

/// Indexes `bodies` as messages 1..=n of chat `chat`, as the batch that creates them does.
pub async fn put(h: &dyn Harness, chat: u64, bodies: &[&str]) {
    let docs: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| ChangedMessage { first_write: true, ..doc(APP, chat, i as u64 + 1, b) })
        .collect();
    h.index().index(&docs, &[], 1).await.unwrap();
    h.settle().await;
}

pub async fn hits(h: &dyn Harness, chat: u64, q: &str) -> Vec<u64> {
    let query = SearchQuery::parse(q).unwrap();
    let found = h.index().search(APP, ChatNumber::new(chat).unwrap(), &query, None, 1000).await.unwrap();
    found.iter().map(|hit| hit.number.get()).collect()
}

async fn hit_set(h: &dyn Harness, chat: u64, q: &str) -> BTreeSet<u64> {
    hits(h, chat, q).await.into_iter().collect()
}

fn set(numbers: &[u64]) -> BTreeSet<u64> {
    numbers.iter().copied().collect()
}

pub async fn terms_are_case_insensitive_substrings_anded(h: &dyn Harness) {
    put(h, 1, &["Hello World", "hello there", "The WORLD is big", "nothing to see", "Ünïcode Straße"]).await;
    for (q, want) in [
        ("world", &[1, 3][..]),
        ("WoRlD", &[1, 3]),
        ("ell wor", &[1]),
        ("wor ell", &[1]),
        ("llo", &[1, 2]),
        ("hello world there", &[]),
        ("straße", &[5]),
        ("STRASSE", &[]),
        ("strasse", &[]),
        ("ÜNÏCODE", &[5]),
        ("nïc", &[5]),
        ("nic", &[]),
        ("lo wo", &[1]),
    ] {
        assert_eq!(hit_set(h, 1, q).await, set(want), "q = {q:?}");
    }
}

pub async fn punctuation_and_symbols_are_literal(h: &dyn Harness) {
    put(h, 1, &["see a.b here", "axb", "foo_bar", "foo-bar", "foo bar", "<script>alert(1)</script>", "50% & more"])
        .await;
    for (q, want) in [
        ("a.b", &[1][..]),
        ("foo_bar", &[3]),
        ("foo-bar", &[4]),
        ("o_b", &[3]),
        ("-", &[4]),
        ("foo", &[3, 4, 5]),
        ("<script>", &[6]),
        ("(1)", &[6]),
        ("%", &[7]),
        ("& more", &[7]),
        ("a.", &[1]),
    ] {
        assert_eq!(hit_set(h, 1, q).await, set(want), "q = {q:?}");
    }
}

pub async fn terms_of_one_and_two_characters_and_non_ascii_text(h: &dyn Harness) {
    put(h, 1, &["日本語のテキスト", "naïve café", "party 🎉 time", "x", "ab", "İstanbul"]).await;
    for (q, want) in [
        ("本語", &[1][..]),
        ("本", &[1]),
        ("日本語のテキスト", &[1]),
        ("ï", &[2]),
        ("é", &[2]),
        ("naïve", &[2]),
        ("naive", &[]),
        ("🎉", &[3]),
        ("y 🎉", &[3]),
        ("x", &[4]),
        ("ab", &[5]),
        ("a", &[2, 3, 5, 6]),
        ("İ", &[6]),
        ("i̇stanbul", &[6]),
        ("stan", &[6]),
    ] {
        assert_eq!(hit_set(h, 1, q).await, set(want), "q = {q:?}");
    }
}

pub async fn only_the_asked_chat_is_ever_searched(h: &dyn Harness) {
    let other_app = AppId(2);
    let docs = vec![
        doc(APP, 1, 1, "shared words"),
        doc(APP, 2, 1, "shared words"),
        doc(APP, 12, 1, "shared words"),
        doc(other_app, 1, 2, "shared words"),
    ];
    h.index().index(&docs, &[], 1).await.unwrap();
    h.settle().await;
    assert_eq!(hits(h, 1, "shared").await, [1]);
    assert_eq!(hits(h, 2, "s").await, [1]);
    assert!(hits(h, 3, "shared").await.is_empty());
    let query = SearchQuery::parse("shared").unwrap();
    let found = h.index().search(other_app, ChatNumber::new(1).unwrap(), &query, None, 10).await.unwrap();
    assert_eq!(found.iter().map(|f| f.number.get()).collect::<Vec<_>>(), [2]);
}

pub async fn an_edit_replaces_the_searchable_text(h: &dyn Harness) {
    put(h, 1, &["nothing to see", "keep me"]).await;
    assert_eq!(hits(h, 1, "nothing").await, [1]);
    h.index().index(&[doc(APP, 1, 1, "now something else")], &[], 2).await.unwrap();
    h.settle().await;
    assert!(hits(h, 1, "nothing").await.is_empty());
    assert_eq!(hits(h, 1, "something else").await, [1]);
    assert_eq!(hits(h, 1, "e").await, [2, 1], "one document per message");
}

pub async fn relevance_first_then_higher_numbers_first(h: &dyn Harness) {
    put(h, 1, &["same words", "cat cat cat", "same words", "a cat among many many other words here", "same words"])
        .await;
    assert_eq!(hits(h, 1, "same").await, [5, 3, 1], "identical bodies tie; ties by descending number");
    assert_eq!(hits(h, 1, "cat").await, [2, 4], "more and denser occurrences rank first");
}

pub async fn pages_after_a_position_visit_every_hit_once(h: &dyn Harness) {
    let bodies: Vec<String> = (1..=23).map(|i| format!("page item {}", "x".repeat(i % 4))).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    put(h, 1, &refs).await;
    let query = SearchQuery::parse("item").unwrap();
    let chat = ChatNumber::new(1).unwrap();
    let all = h.index().search(APP, chat, &query, None, 100).await.unwrap();
    let mut paged = Vec::new();
    let mut after: Option<SearchPosition> = None;
    loop {
        let page = h.index().search(APP, chat, &query, after, 5).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 5);
        after = page.last().copied();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(all.len(), 23);
}
