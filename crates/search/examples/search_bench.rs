//! Search benchmark (issue targets in docs/benchmarks.md): indexes N messages of ~60 bytes
//! spread over 1,000 chats plus one chat of 100k messages, then reports the indexing rate,
//! the index size against the raw text, and search latency by term length in the big chat.
//!
//!   cargo run --release -p chatsys-search --example search_bench -- [MESSAGES] [HOT_CHAT_MESSAGES] [SETTLE_SECONDS]
//!   (defaults: 1000000 100000 0; SETTLE_SECONDS waits for background merges before searching)

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chatsys_core::ports::{ChangeFeed, ChangedMessage, SearchIndex};
use chatsys_core::{AppId, ChatNumber, MessageNumber, Result, SearchQuery};
use chatsys_search::{TantivyConfig, TantivyIndex};

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

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn vocabulary(rng: &mut Rng) -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "da", "el", "fo", "gu", "ha", "in", "jo", "ke", "ma", "no",
        "or", "pe", "qu", "ri", "st", "un",
    ];
    (0..5000)
        .map(|_| (0..2 + rng.below(3)).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect::<String>())
        .collect()
}

fn body(rng: &mut Rng, words: &[String]) -> String {
    let mut text = String::new();
    while text.len() < 55 {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&words[rng.below(words.len())]);
    }
    if rng.below(4) == 0 { text[..1].to_uppercase() + &text[1..] } else { text }
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let total = args.first().copied().unwrap_or(1_000_000);
    let hot = args.get(1).copied().unwrap_or(100_000).min(total);
    let settle = args.get(2).copied().unwrap_or(0) as u64;
    let dir = tempfile::tempdir().unwrap();
    let config = TantivyConfig::new(Duration::from_secs(1), 2);
    let index = TantivyIndex::open(dir.path().join("search"), Arc::new(NoChanges), config).await.unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let words = vocabulary(&mut rng);
    let app = AppId(1);
    let hot_chat = ChatNumber::new(1001).unwrap();

    let mut raw = 0u64;
    let mut hot_bodies = Vec::with_capacity(hot);
    let mut next_in_chat = vec![0u64; 1002];
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..total {
        let chat =
            if i % (total / hot.max(1)).max(1) == 0 && hot_bodies.len() < hot { 1001 } else { 1 + rng.below(1000) };
        next_in_chat[chat] += 1;
        let text = body(&mut rng, &words);
        raw += text.len() as u64;
        if chat == 1001 {
            hot_bodies.push(text.clone());
        }
        batch.push(ChangedMessage {
            app,
            chat: ChatNumber::new(chat as u64).unwrap(),
            number: MessageNumber::new(next_in_chat[chat]).unwrap(),
            body: Some(text),
            position: chatsys_core::Position(next_in_chat[chat]),
            first_write: true,
        });
        if batch.len() == 1000 {
            index.index(&batch, &[], (i / 1000) as u64 + 1).await.unwrap();
            batch.clear();
        }
    }
    index.index(&batch, &[], u64::MAX / 2).await.unwrap();
    index.flush().await.unwrap();
    let took = started.elapsed();
    let size = dir_size(&dir.path().join("search"));
    println!(
        "indexed {total} messages ({} in the big chat) in {:.1} s: {:.0} messages/s",
        hot_bodies.len(),
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    println!(
        "raw text {:.1} MiB, index {:.1} MiB: {:.2}x the raw text",
        raw as f64 / 1048576.0,
        size as f64 / 1048576.0,
        size as f64 / raw as f64
    );

    if settle > 0 {
        // background merges run on after the last commit; searches compete with them
        println!("waiting {settle} s for background merges before searching");
        tokio::time::sleep(Duration::from_secs(settle)).await;
    }
    println!("\n| term length | queries | p50 ms | p99 ms | mean hits |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for len in [1usize, 2, 3, 8] {
        let mut times = Vec::new();
        let mut hits = 0usize;
        while times.len() < 200 {
            // a term is cut from a body where it holds no whitespace (a query term never does)
            let source: Vec<char> = hot_bodies[rng.below(hot_bodies.len())].chars().collect();
            let start = rng.below(source.len().saturating_sub(len).max(1));
            let term: String = source[start..(start + len).min(source.len())].iter().collect();
            if term.chars().count() != len || term.contains(char::is_whitespace) {
                continue;
            }
            let query = SearchQuery::parse(&term).unwrap();
            let t = Instant::now();
            let found = index.search(app, hot_chat, &query, None, 50).await.unwrap();
            times.push(t.elapsed());
            hits += found.len();
        }
        times.sort();
        println!(
            "| {len} | {} | {:.2} | {:.2} | {:.0} |",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            hits as f64 / times.len() as f64
        );
    }
    index.close().await;
}
