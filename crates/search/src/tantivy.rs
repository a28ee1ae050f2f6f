//! Tantivy on local disk, for embedded mode.
//!
//! Writes go to one indexer thread through a channel, so a batch's 201s never wait for the
//! index; the thread commits at most every `commit_interval` (a commit costs tens of ms).
//! Each commit records the store's batch number (`rev`) it covers; on start the index
//! catches up from the store's [`ChangeFeed`], so a crash between a store commit and an
//! index commit loses nothing.
//!
//! Over 300 lines on purpose: the schema, the indexer thread (commit, backoff, catch-up)
//! and the searcher share the field handles and one commit protocol; the tokenizer is in
//! `ngram.rs`.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::tantivy::collector::TopDocs;
use ::tantivy::directory::MmapDirectory;
use ::tantivy::indexer::IndexWriterOptions;
use ::tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use ::tantivy::schema::{FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions};
use ::tantivy::tokenizer::TextAnalyzer;
use ::tantivy::{DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument, Term};
use async_trait::async_trait;
use chatsys_core::ports::{ChangeFeed, ChangedMessage, Erasure, SearchHit, SearchIndex, SearchPosition};
use chatsys_core::{AppId, ChatNumber, Error, MessageNumber, Result, SearchQuery};

use crate::merges::{self, BoundedMerges, MAX_MERGED_DOCS};
use crate::ngram::{GRAMS, Grams, prefix_range, trigrams_of};
use crate::windowed::WindowedDirectory;

#[derive(Debug, Clone, Copy)]
pub struct TantivyConfig {
    /// The longest a change waits before it becomes searchable.
    pub commit_interval: Duration,
    /// The indexer's memory before it writes a segment.
    pub memory_budget: usize,
    /// Searches run at once (each on a blocking thread); more wait their turn, so that
    /// searches never take every core from the request threads.
    pub search_threads: usize,
}

impl TantivyConfig {
    /// The indexer's memory before it writes a segment, unless told otherwise.
    pub const MEMORY_BUDGET: usize = 15_000_000;

    pub fn new(commit_interval: Duration, search_threads: usize) -> Self {
        Self { commit_interval, memory_budget: Self::MEMORY_BUDGET, search_threads: search_threads.max(1) }
    }
}

/// Bumped whenever the schema or the tokenizers change: an index of another version is
/// rebuilt from the store on start.
const SCHEMA_VERSION: u32 = 3;
const CATCH_UP_PAGE: u32 = 5_000;

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    chat: Field,
    number: Field,
    /// The body's length in characters: the rank of a hit (see `SearchPosition`).
    length: Field,
    grams: Field,
}

enum Job {
    Index { docs: Vec<ChangedMessage>, erased: Vec<Erasure>, rev: u64 },
    Flush(tokio::sync::oneshot::Sender<Result<()>>),
}

pub struct TantivyIndex {
    reader: IndexReader,
    fields: Fields,
    jobs: Mutex<Option<SyncSender<Job>>>,
    healthy: Arc<AtomicBool>,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// One permit per search thread.
    searches: Arc<tokio::sync::Semaphore>,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let grams = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(GRAMS).set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        key: builder.add_text_field("key", STRING),
        chat: builder.add_text_field("chat", STRING),
        number: builder.add_u64_field("number", FAST),
        length: builder.add_u64_field("length", FAST),
        grams: builder.add_text_field("grams", grams),
    };
    (builder.build(), fields)
}

fn chat_key(app: AppId, chat: ChatNumber) -> String {
    format!("{}/{chat}", app.0)
}

fn message_key(app: AppId, chat: ChatNumber, number: MessageNumber) -> String {
    format!("{}/{chat}/{number}", app.0)
}

fn payload(rev: u64) -> String {
    format!("{SCHEMA_VERSION}:{rev}")
}

/// The store batch the index covers, or `None` when the index must be rebuilt.
fn covered_rev(index: &Index) -> Result<Option<u64>> {
    let metas = index.load_metas().map_err(index_error("reading the index metadata"))?;
    let Some(payload) = metas.payload else { return Ok(Some(0)) };
    let parsed = payload.split_once(':').and_then(|(v, rev)| Some((v.parse::<u32>().ok()?, rev.parse::<u64>().ok()?)));
    Ok(match parsed {
        Some((SCHEMA_VERSION, rev)) => Some(rev),
        _ => None,
    })
}

fn index_error(context: &'static str) -> impl Fn(::tantivy::TantivyError) -> Error {
    move |e| Error::unavailable(format!("the search index failed while {context}")).with_source(e)
}

/// The index in `dir` as its writer sees it (postings and positions read through a window,
/// see [`WindowedDirectory`]), and the directory memory-mapped for searches.
fn open_dir(dir: &Path, fields_schema: Schema) -> Result<(Index, MmapDirectory)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::unavailable(format!("cannot create {}", dir.display())).with_source(e))?;
    let mapped = MmapDirectory::open(dir)
        .map_err(|e| Error::unavailable(format!("cannot open {}", dir.display())).with_source(e))?;
    let directory = WindowedDirectory::new(dir.to_owned(), mapped.clone());
    let index = Index::open_or_create(directory, fields_schema).map_err(index_error("opening the index"))?;
    index.tokenizers().register(GRAMS, TextAnalyzer::from(Grams));
    Ok((index, mapped))
}

impl TantivyIndex {
    /// Opens the index in `dir` (creating or rebuilding it as needed), brings it up to date
    /// with the store, and starts the indexer thread.
    pub async fn open(dir: PathBuf, feed: Arc<dyn ChangeFeed>, config: TantivyConfig) -> Result<Self> {
        let (schema, fields) = schema();
        let (mut index, mut mapped) = open_dir(&dir, schema.clone())?;
        let covered = match covered_rev(&index)? {
            Some(rev) if index.schema() == schema => rev,
            _ => {
                tracing::warn!(dir = %dir.display(), "search index is of another version: rebuilding it from the store");
                drop((index, mapped));
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| Error::unavailable("cannot remove the outdated search index").with_source(e))?;
                (index, mapped) = open_dir(&dir, schema)?;
                0
            }
        };
        // one indexing thread, and one merge at a time, none larger than MAX_MERGED_DOCS: a
        // merge's memory grows with the documents it writes (merges.rs)
        let options = IndexWriterOptions::builder()
            .num_worker_threads(1)
            .num_merge_threads(1)
            .memory_budget_per_thread(config.memory_budget)
            .build();
        let mut writer: IndexWriter = index
            .writer_with_options(options)
            .map_err(index_error("opening the writer (is another chatsys using this data directory?)"))?;
        writer.set_merge_policy(Box::new(BoundedMerges::default()));
        let rev = catch_up(&mut writer, fields, feed.as_ref(), covered).await?;
        let mut searched = Index::open(mapped).map_err(index_error("opening the index for searches"))?;
        searched.set_tokenizers(index.tokenizers().clone());
        let reader = searched
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_error("opening the reader"))?;
        let (jobs, receiver) = sync_channel(256);
        let healthy = Arc::new(AtomicBool::new(true));
        let thread = {
            let (reader, healthy) = (reader.clone(), healthy.clone());
            let runtime = tokio::runtime::Handle::current();
            std::thread::Builder::new()
                .name("search-indexer".into())
                .spawn(move || {
                    let ix = Indexer {
                        writer,
                        reader,
                        fields,
                        feed,
                        runtime,
                        committed: rev,
                        rev,
                        dirty: false,
                        erasing: false,
                        last_commit: Instant::now(),
                        failing: None,
                        healthy: &healthy,
                    };
                    ix.run(receiver, config)
                })
                .map_err(|e| Error::internal("cannot start the indexer thread").with_source(e))?
        };
        Ok(Self {
            reader,
            fields,
            jobs: Mutex::new(Some(jobs)),
            healthy,
            indexer: Mutex::new(Some(thread)),
            searches: Arc::new(tokio::sync::Semaphore::new(config.search_threads)),
        })
    }

    /// Commits what has been indexed so far and makes it searchable.
    pub async fn flush(&self) -> Result<()> {
        let (done, finished) = tokio::sync::oneshot::channel();
        self.send(Job::Flush(done)).await?;
        finished.await.map_err(|_| Error::unavailable("the search indexer has stopped"))?
    }

    /// Commits the rest and stops the indexer thread (on shutdown).
    pub async fn close(&self) {
        let sender = self.jobs.lock().expect("poisoned").take();
        drop(sender);
        let thread = self.indexer.lock().expect("poisoned").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn send(&self, job: Job) -> Result<()> {
        let sender = self.jobs.lock().expect("poisoned").clone();
        let Some(sender) = sender else { return Err(Error::unavailable("the search index is closed")) };
        match sender.try_send(job) {
            Ok(()) => Ok(()),
            // the indexer is behind: wait for room without blocking the runtime
            Err(TrySendError::Full(job)) => tokio::task::spawn_blocking(move || sender.send(job))
                .await
                .map_err(|e| Error::internal("indexer hand-off failed").with_source(e))?
                .map_err(|_| Error::unavailable("the search indexer has stopped")),
            Err(TrySendError::Disconnected(_)) => Err(Error::unavailable("the search indexer has stopped")),
        }
    }
}

fn write_doc(writer: &IndexWriter, fields: Fields, change: &ChangedMessage) -> Result<()> {
    let key = message_key(change.app, change.chat, change.number);
    // a delete is kept until the commit and then looked up in every segment: only pay for it
    // when an older copy can exist (an edit, a catch-up or a rebuild)
    if !change.first_write {
        writer.delete_term(Term::from_field_text(fields.key, &key));
    }
    // a deleted message keeps no document
    let Some(body) = &change.body else { return Ok(()) };
    let mut doc = TantivyDocument::default();
    doc.add_text(fields.key, &key);
    doc.add_text(fields.chat, chat_key(change.app, change.chat));
    doc.add_u64(fields.number, change.number.get());
    doc.add_u64(fields.length, body.chars().count() as u64);
    doc.add_text(fields.grams, body);
    writer.add_document(doc).map_err(index_error("adding a document"))?;
    Ok(())
}

/// Removes every document of a deleted chat or an erased application.
fn erase(writer: &IndexWriter, fields: Fields, erasure: Erasure) -> Result<()> {
    match erasure {
        Erasure::Chat(app, chat) => {
            writer.delete_term(Term::from_field_text(fields.chat, &chat_key(app, chat)));
        }
        Erasure::Application(app) => {
            // every chat key of the application: "<app>/…"
            let (first, last) = (format!("{}/", app.0), format!("{}/{}", app.0, char::MAX));
            let bound = |key: &str| Bound::Included(Term::from_field_text(fields.chat, key));
            writer
                .delete_query(Box::new(RangeQuery::new(bound(&first), bound(&last))))
                .map_err(index_error("erasing an application"))?;
        }
    }
    Ok(())
}

/// Rewrites the segments that hold deleted documents, so that no file keeps deleted text
/// (a delete alone only marks a document as gone), in merges of at most [`MAX_MERGED_DOCS`]
/// documents (a larger segment on its own).
fn merge_away_deletes(writer: &mut IndexWriter) -> Result<()> {
    let metas = writer.index().searchable_segment_metas().map_err(index_error("listing segments"))?;
    let groups = merges::within(metas.iter().filter(|m| m.has_deletes()).collect(), MAX_MERGED_DOCS);
    if !groups.is_empty() {
        tracing::debug!(merges = groups.len(), "merging away deleted documents");
    }
    for group in groups {
        drop(writer.merge(&group));
    }
    Ok(())
}

fn commit(writer: &mut IndexWriter, rev: u64) -> Result<()> {
    let mut prepared = writer.prepare_commit().map_err(index_error("preparing a commit"))?;
    prepared.set_payload(&payload(rev));
    prepared.commit().map_err(index_error("committing"))?;
    Ok(())
}

/// Indexes every change the store made after batch `since` and commits; the batch the
/// index covers now.
async fn catch_up(writer: &mut IndexWriter, fields: Fields, feed: &dyn ChangeFeed, since: u64) -> Result<u64> {
    let erasures = feed.erasures_since(since).await?;
    for (_, erasure) in &erasures {
        erase(writer, fields, *erasure)?;
    }
    let erased_up_to = erasures.last().map(|(rev, _)| *rev);
    let mut last: Option<(u64, ChangedMessage)> = None;
    let mut caught_up = 0usize;
    loop {
        let page = feed.changes_since(since, last.as_ref(), CATCH_UP_PAGE).await?;
        let Some(end) = page.last().cloned() else { break };
        for (_, change) in &page {
            write_doc(writer, fields, change)?;
        }
        caught_up += page.len();
        last = Some(end);
    }
    let rev = last.map(|(rev, _)| rev).max(erased_up_to);
    let Some(rev) = rev else { return Ok(since) };
    commit(writer, rev)?;
    if erased_up_to.is_some() {
        merge_away_deletes(writer)?;
    }
    tracing::info!(messages = caught_up, erasures = erasures.len(), rev, "search index caught up with the store");
    Ok(rev)
}

/// Retrying a failed commit: when to try next, and how long to wait after that.
struct Backoff {
    next_try: Instant,
    delay: Duration,
    failures: u32,
    last_logged: Instant,
}

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(10);
/// While failing, one log line per this long at most.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// The indexer thread's state: everything added since the last commit is `dirty`. When a
/// write or a commit fails (a full disk), what the writer holds is rolled back and dropped;
/// the thread then retries with a growing delay (0.5 s up to 10 s), re-reading from the store every change
/// after the last commit, and ignores new documents meanwhile (the store has them too).
struct Indexer<'a> {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    feed: Arc<dyn ChangeFeed>,
    runtime: tokio::runtime::Handle,
    /// The store batch the last successful commit covers.
    committed: u64,
    /// The newest store batch handed to the indexer.
    rev: u64,
    dirty: bool,
    /// Something was deleted since the last commit: its segments are merged after it.
    erasing: bool,
    last_commit: Instant,
    failing: Option<Backoff>,
    healthy: &'a AtomicBool,
}

impl Indexer<'_> {
    fn run(mut self, jobs: Receiver<Job>, config: TantivyConfig) {
        loop {
            let wait = match &self.failing {
                Some(backoff) => backoff.next_try.saturating_duration_since(Instant::now()),
                None if self.dirty => {
                    (self.last_commit + config.commit_interval).saturating_duration_since(Instant::now())
                }
                None => Duration::from_secs(3600),
            };
            match jobs.recv_timeout(wait) {
                Ok(Job::Index { docs, erased, rev }) => {
                    self.rev = self.rev.max(rev);
                    if self.failing.is_none() {
                        self.erasing |= !erased.is_empty() || docs.iter().any(|d| d.body.is_none());
                        let added = erased
                            .iter()
                            .try_for_each(|e| erase(&self.writer, self.fields, *e))
                            .and_then(|()| docs.iter().try_for_each(|d| write_doc(&self.writer, self.fields, d)));
                        self.dirty = true;
                        if let Err(e) = added {
                            self.fail(e);
                        }
                    }
                }
                Ok(Job::Flush(done)) => {
                    let result = match self.failing {
                        Some(_) => Err(Error::unavailable("the search index cannot commit (see the log)")),
                        None => self.commit(),
                    };
                    let _ = done.send(result);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if self.failing.is_none()
                        && self.dirty
                        && let Err(e) = self.commit()
                    {
                        self.fail(e);
                    }
                    break;
                }
            }
            match &self.failing {
                Some(backoff) if Instant::now() >= backoff.next_try => self.recover(),
                None if self.dirty && self.last_commit.elapsed() >= config.commit_interval => {
                    if let Err(e) = self.commit() {
                        self.fail(e);
                    }
                }
                _ => {}
            }
        }
        if let Err(e) = self.writer.wait_merging_threads() {
            tracing::warn!(error = %e, "search index merges did not finish");
        }
    }

    fn commit(&mut self) -> Result<()> {
        commit(&mut self.writer, self.rev)?;
        self.committed = self.rev;
        self.reader.reload().map_err(index_error("reloading the reader"))?;
        self.last_commit = Instant::now();
        self.dirty = false;
        if std::mem::take(&mut self.erasing) {
            merge_away_deletes(&mut self.writer)?;
        }
        Ok(())
    }

    /// Drops what the writer holds and starts retrying (or goes on retrying, later).
    fn fail(&mut self, e: Error) {
        if let Err(rollback) = self.writer.rollback() {
            tracing::warn!(error = %rollback, "search index rollback failed");
        }
        self.dirty = false;
        self.healthy.store(false, Ordering::Relaxed);
        metrics::gauge!("chatsys_search_index_failing").set(1.0);
        let now = Instant::now();
        let backoff = self.failing.get_or_insert(Backoff {
            next_try: now,
            delay: FIRST_RETRY,
            failures: 0,
            last_logged: now - LOG_EVERY,
        });
        backoff.failures += 1;
        backoff.next_try = now + backoff.delay;
        backoff.delay = (backoff.delay * 2).min(LONGEST_RETRY);
        if now.duration_since(backoff.last_logged) >= LOG_EVERY {
            backoff.last_logged = now;
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            tracing::error!(error = %e, cause, failures = backoff.failures, retry_in_ms = backoff.delay.as_millis() as u64,
                "search indexing failed; new messages are searchable again once it recovers");
        }
    }

    /// Re-reads from the store every change after the last commit, and commits.
    fn recover(&mut self) {
        let (feed, fields, since) = (self.feed.clone(), self.fields, self.committed);
        let caught_up = self.runtime.block_on(catch_up(&mut self.writer, fields, feed.as_ref(), since));
        match caught_up.and_then(|rev| {
            self.committed = rev;
            self.rev = self.rev.max(rev);
            self.reader.reload().map_err(index_error("reloading the reader"))
        }) {
            Ok(()) => {
                let failures = self.failing.take().map_or(0, |b| b.failures);
                tracing::info!(failures, rev = self.committed, "search indexing recovered");
                self.healthy.store(true, Ordering::Relaxed);
                metrics::gauge!("chatsys_search_index_failing").set(0.0);
                self.last_commit = Instant::now();
                self.dirty = false;
            }
            Err(e) => self.fail(e),
        }
    }
}

fn term_query(field: Field, text: &str, option: IndexRecordOption) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), option))
}

/// One clause per term: its trigrams as a phrase (adjacent, in order), or, for one or two
/// characters, every gram that starts with it (all such matches score alike).
fn build_query(fields: Fields, app: AppId, chat: ChatNumber, query: &SearchQuery) -> BooleanQuery {
    let in_chat = term_query(fields.chat, &chat_key(app, chat), IndexRecordOption::Basic);
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, Box::new(ConstScoreQuery::new(in_chat, 0.0)))];
    for term in query.terms() {
        let grams = trigrams_of(term);
        let clause = match grams.len() {
            0 => {
                let (first, last) = prefix_range(term);
                let bound = |gram: &str| Bound::Included(Term::from_field_text(fields.grams, gram));
                Box::new(RangeQuery::new(bound(&first), bound(&last)))
            }
            1 => term_query(fields.grams, &grams[0], IndexRecordOption::WithFreqs),
            _ => Box::new(PhraseQuery::new(grams.iter().map(|g| Term::from_field_text(fields.grams, g)).collect())),
        };
        clauses.push((Occur::Must, clause));
    }
    BooleanQuery::new(clauses)
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn ping(&self) -> Result<()> {
        let running = self.jobs.lock().expect("poisoned").is_some();
        if running && self.healthy.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(Error::unavailable("the search indexer is failing (see the log)"))
        }
    }

    async fn index(&self, changed: &[ChangedMessage], erased: &[Erasure], rev: u64) -> Result<()> {
        if changed.is_empty() && erased.is_empty() {
            return Ok(());
        }
        self.send(Job::Index { docs: changed.to_vec(), erased: erased.to_vec(), rev }).await
    }

    async fn search(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: &SearchQuery,
        after: Option<SearchPosition>,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        let query = build_query(self.fields, app, chat, query);
        let searcher = self.reader.searcher();
        let after = after.map(|a| a.key());
        // the permit goes with the work: a search given up by its caller still holds its
        // thread until it ends, and so its turn
        let permit = self.searches.clone().acquire_owned().await.map_err(|_| Error::unavailable("search is closed"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Ranked by (shorter body, higher number): the engine's own score (which depends
            // on every other document) is ignored. Hits at or before `after` sink below every
            // eligible one and are dropped.
            let collector = TopDocs::with_limit(limit as usize).tweak_score(move |segment: &SegmentReader| {
                let column = |name| segment.fast_fields().u64(name).map(|c| c.first_or_default_col(0));
                let (numbers, lengths) = (column("number"), column("length"));
                move |doc: DocId, _: Score| {
                    let number = numbers.as_ref().map_or(0, |n| n.get_val(doc));
                    let length = lengths.as_ref().map_or(0, |l| l.get_val(doc));
                    let key = (u64::MAX - length, number);
                    match after {
                        Some(a) if key >= a => (0, 0),
                        _ => key,
                    }
                }
            });
            let top = searcher.search(&query, &collector).map_err(index_error("searching"))?;
            Ok(top
                .into_iter()
                .filter(|((_, number), _)| *number > 0)
                .filter_map(|((rank, number), _)| {
                    Some(SearchHit { length: u64::MAX - rank, number: MessageNumber::new(number).ok()? })
                })
                .collect())
        })
        .await
        .map_err(|e| Error::internal("search task failed").with_source(e))?
    }
}
