//! The search conformance suite and the reference property against Tantivy, and the
//! index's catch-up with the store after a crash.

mod suite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{ChangeFeed, ChangedMessage, SearchIndex};
use chatsys_core::{ChatNumber, Result, SearchQuery};
use chatsys_search::{TantivyConfig, TantivyIndex};
use proptest::prelude::*;
use tempfile::TempDir;

/// A store with nothing to catch up on.
struct NoChanges;

#[async_trait]
impl ChangeFeed for NoChanges {
    async fn changes_since(
        &self,
        _: u64,
        _: Option<&(u64, ChangedMessage)>,
        _: u32,
    ) -> Result<Vec<(u64, ChangedMessage)>> {
        Ok(Vec::new())
    }

    async fn erasures_since(&self, _: u64) -> Result<Vec<(u64, chatsys_core::ports::Erasure)>> {
        Ok(Vec::new())
    }
}

struct Tantivy {
    index: TantivyIndex,
    _dir: TempDir,
}

#[async_trait]
impl suite::Harness for Tantivy {
    fn index(&self) -> &dyn SearchIndex {
        &self.index
    }

    async fn settle(&self) {
        self.index.flush().await.unwrap();
    }
}

const CONFIG: TantivyConfig =
    TantivyConfig { commit_interval: Duration::from_secs(3600), memory_budget: 20_000_000, search_threads: 2 };

async fn open() -> Tantivy {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(dir.path().join("search"), Arc::new(NoChanges), CONFIG).await.unwrap();
    Tantivy { index, _dir: dir }
}

search_contract!(open);

/// Every change after `rev`, as a store would list them.
struct Feed(Vec<(u64, ChangedMessage)>);

#[async_trait]
impl ChangeFeed for Feed {
    async fn changes_since(
        &self,
        rev: u64,
        after: Option<&(u64, ChangedMessage)>,
        limit: u32,
    ) -> Result<Vec<(u64, ChangedMessage)>> {
        let start = after.map_or(0, |a| self.0.iter().position(|c| c == a).unwrap() + 1);
        Ok(self.0[start..].iter().filter(|(r, _)| *r > rev).take(limit as usize).cloned().collect())
    }

    async fn erasures_since(&self, _: u64) -> Result<Vec<(u64, chatsys_core::ports::Erasure)>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn on_start_the_index_catches_up_with_what_the_store_committed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    let first = vec![(1, suite::doc(suite::APP, 1, 1, "written and indexed"))];
    let index = TantivyIndex::open(path.clone(), Arc::new(Feed(first.clone())), CONFIG).await.unwrap();
    index.close().await;

    // the store committed more (and an edit) while the index never saw it: a crash
    let mut later = first;
    later.push((2, suite::doc(suite::APP, 1, 2, "written, then the process died")));
    later.push((3, suite::doc(suite::APP, 1, 1, "edited while the index was down")));
    let index = TantivyIndex::open(path, Arc::new(Feed(later)), CONFIG).await.unwrap();
    let chat = ChatNumber::new(1).unwrap();
    let search = |q: &str| {
        let query = SearchQuery::parse(q).unwrap();
        let index = &index;
        async move {
            index
                .search(suite::APP, chat, &query, None, 10)
                .await
                .unwrap()
                .iter()
                .map(|h| h.number.get())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("died").await, [2]);
    assert_eq!(search("edited").await, [1]);
    assert!(search("indexed").await.is_empty(), "the edit replaced the old text");
    index.close().await;
}

#[tokio::test]
async fn changes_become_searchable_within_the_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = TantivyConfig { commit_interval: Duration::from_millis(200), ..CONFIG };
    let index = TantivyIndex::open(dir.path().join("search"), Arc::new(NoChanges), config).await.unwrap();
    index.index(&[suite::doc(suite::APP, 1, 1, "soon visible")], &[], 1).await.unwrap();
    let query = SearchQuery::parse("visible").unwrap();
    let chat = ChatNumber::new(1).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while index.search(suite::APP, chat, &query, None, 10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "not searchable after 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    index.close().await;
}

/// Characters that stress case folding, multi-byte text and punctuation.
fn alphabet() -> Vec<char> {
    "aAbBcC .,-_ßẞİıIiÉéΣσς日本🎉ǅ".chars().collect()
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet()), 1..=max).prop_map(|c| c.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The hits are exactly the bodies in which every term is a substring of the lower-cased
    /// body: no false positives, no misses.
    #[test]
    fn hits_are_exactly_the_reference_matches(
        bodies in proptest::collection::vec(text(24), 1..40),
        queries in proptest::collection::vec(text(6), 1..25),
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let harness = open().await;
            let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
            suite::put(&harness, 1, &refs).await;
            for q in &queries {
                let Ok(query) = SearchQuery::parse(q) else { continue };
                let mut got = suite::hits(&harness, 1, q).await;
                got.sort_unstable();
                let want: Vec<u64> = bodies
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| query.matches(b))
                    .map(|(i, _)| i as u64 + 1)
                    .collect();
                assert_eq!(got, want, "q = {q:?}, bodies = {bodies:?}");
            }
            harness.index.close().await;
        });
    }
}

/// Merges read the segments' postings and positions through the writer's windowed reads
/// (`windowed.rs`), not memory maps: what they write must find exactly what was indexed.
#[tokio::test]
async fn merged_segments_find_exactly_what_their_segments_did() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    let index = TantivyIndex::open(path.clone(), Arc::new(NoChanges), CONFIG).await.unwrap();
    let body = |n: u64| format!("message {n} of commit {} with words", (n - 1) / 400);
    // twelve commits, twelve segments: more than the merge policy leaves alone (eight)
    for commit in 0..12u64 {
        let docs: Vec<_> = (commit * 400 + 1..=commit * 400 + 400)
            .map(|n| ChangedMessage { first_write: true, ..suite::doc(suite::APP, 1, n, &body(n)) })
            .collect();
        index.index(&docs, &[], commit + 1).await.unwrap();
        index.flush().await.unwrap();
    }
    let segments = || {
        std::fs::read_dir(&path)
            .unwrap()
            .filter(|f| f.as_ref().unwrap().path().extension() == Some("idx".as_ref()))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while segments() >= 12 {
        assert!(tokio::time::Instant::now() < deadline, "no merge within 20 s: {} segments", segments());
        tokio::time::sleep(Duration::from_millis(50)).await;
        index.flush().await.unwrap();
    }
    let chat = ChatNumber::new(1).unwrap();
    for q in ["commit 7", "message 1234 ", "ssage 47", "ords", "e 4", "t 11 w"] {
        let query = SearchQuery::parse(q).unwrap();
        let mut got: Vec<u64> =
            index.search(suite::APP, chat, &query, None, 1000).await.unwrap().iter().map(|h| h.number.get()).collect();
        got.sort_unstable();
        let want: Vec<u64> = (1..=4800).filter(|&n| query.matches(&body(n))).collect();
        assert_eq!(got.len(), want.len().min(1000), "q = {q:?}");
        if want.len() <= 1000 {
            assert_eq!(got, want, "q = {q:?}");
        }
    }
    index.close().await;
}
