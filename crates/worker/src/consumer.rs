//! One step of the pipeline: take a batch, write it, settle its deliveries.
//!
//! Over 300 lines on purpose: taking a batch, isolating a refused command by halving and
//! settling deliveries are one failure story.

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::{
    BatchOutcome, Bulletin, ChangedMessage, CommandSource, Delivery, Holds, News, Refused, SearchIndex, Store,
};
use chatsys_core::{Error, ErrorKind, Queued, Result};

use chatsys_queue::batcher::{BatchConfig, Deliveries, next_batch};
use chatsys_queue::hold::Hold;

pub struct Consumer {
    source: Box<dyn CommandSource>,
    store: Arc<dyn Store>,
    search: Option<Arc<dyn SearchIndex>>,
    bulletin: Option<Arc<dyn Bulletin>>,
    config: BatchConfig,
    patience: Patience,
    hold: Option<Hold>,
}

/// What the consumer does while the store is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Give up after a few quick attempts: the producers are clients waiting for an answer
    /// (embedded mode), who get a 503.
    Brief,
    /// Keep the deliveries and retry until the store is back: a durable queue holds the
    /// commands meanwhile, and returning them would spend their delivery attempts.
    UntilAvailable,
}

/// What one call of [`Consumer::process_next_batch`] did.
#[derive(Debug)]
pub enum Outcome {
    /// The batch was written and acknowledged.
    Written { commands: usize, outcome: BatchOutcome },
    /// Some or all deliveries could not be written and were failed back to their producer.
    Failed { commands: usize, failed: usize },
    /// The source is closed and drained: nothing more will come.
    Closed,
}

/// Attempts at writing a batch before giving up on it (transient store trouble, embedded).
const WRITE_ATTEMPTS: u32 = 3;
/// Attempts at a whole batch the store refuses before it is searched for refused commands.
const DETERMINISTIC_ATTEMPTS: u32 = 3;

impl Consumer {
    pub fn new(source: Box<dyn CommandSource>, store: Arc<dyn Store>, config: BatchConfig) -> Self {
        Self { source, store, search: None, bulletin: None, config, patience: Patience::Brief, hold: None }
    }

    pub fn with_patience(mut self, patience: Patience) -> Self {
        self.patience = patience;
        self
    }

    /// Announces the chats each written batch moved (live events).
    pub fn with_bulletin(mut self, bulletin: Arc<dyn Bulletin>) -> Self {
        self.bulletin = Some(bulletin);
        self
    }

    /// Holds (distributed mode) while it has commands in hand that are not settled, so that
    /// the numbering service counts them as on their way to the store.
    pub fn with_holds(mut self, holds: Arc<dyn Holds>) -> Self {
        self.hold = Some(Hold::new(holds));
        self
    }

    /// Indexes each written batch for search before acknowledging it.
    pub fn with_search(mut self, search: Arc<dyn SearchIndex>) -> Self {
        self.search = Some(search);
        self
    }

    /// Runs until the source is closed and drained.
    pub async fn run(mut self) {
        loop {
            match self.process_next_batch().await {
                Outcome::Closed => break,
                Outcome::Written { commands, outcome } => {
                    tracing::debug!(commands, created = outcome.messages_created, "batch written");
                }
                Outcome::Failed { commands, failed } => {
                    tracing::warn!(commands, failed, "batch not written");
                }
            }
        }
        tracing::info!("create pipeline drained");
    }

    pub async fn process_next_batch(&mut self) -> Outcome {
        let Some(batch) = self.next_batch().await else {
            return Outcome::Closed;
        };
        // held until settled, announcing and indexing included: while this batch waits (for
        // Elasticsearch, say), the broker keeps filling this worker's prefetch with commands
        // that are not written either
        let mut hold = self.hold.take();
        let outcome = match &mut hold {
            Some(hold) => hold.during(self.settle(batch)).await,
            None => self.settle(batch).await,
        };
        self.hold = hold;
        outcome
    }

    /// The next batch. A hold is released once nothing has come for a moment: everything
    /// taken before is settled by then (a batch is settled before the next is taken), and
    /// the prefetch is empty. (A first delivery that came just before the release lingers
    /// a few milliseconds unheld: far inside the recovery's settle time.)
    async fn next_batch(&mut self) -> Option<Vec<Delivery>> {
        let mut feed = Deliveries(self.source.as_mut());
        let next = next_batch(&mut feed, self.config);
        let Some(hold) = self.hold.as_mut().filter(|hold| hold.is_held()) else { return next.await };
        tokio::pin!(next);
        tokio::select! {
            batch = &mut next => return batch,
            () = hold.release_when_idle() => {}
        }
        next.await
    }

    /// Writes a batch and settles its deliveries.
    async fn settle(&self, batch: Vec<Delivery>) -> Outcome {
        let commands: Vec<Queued> = batch.iter().flat_map(|d| d.commands.iter().cloned()).collect();
        let started = std::time::Instant::now();
        match write(self.store.as_ref(), &commands, self.patience, DETERMINISTIC_ATTEMPTS).await {
            Ok(outcome) => {
                let written = started.elapsed();
                record_written(&commands, written);
                record_dropped(&outcome);
                self.announce(&outcome).await;
                self.index(&outcome).await;
                settle_all(batch, None).await;
                tracing::trace!(
                    commands = commands.len(),
                    write_us = written.as_micros() as u64,
                    total_us = started.elapsed().as_micros() as u64,
                    "batch settled"
                );
                Outcome::Written { commands: commands.len(), outcome }
            }
            // The store refuses something in the batch for good. That must not take the rest
            // of the batch down with it: write it in halves until the refused commands stand
            // alone, and set aside only those.
            Err(e) if e.kind() != ErrorKind::Unavailable => {
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tracing::error!(error = %e, cause, commands = commands.len(), "batch refused by the store: finding the refused commands");
                let verdicts = self.isolate(&commands).await;
                let failed = verdicts.iter().filter(|v| !matches!(v, Verdict::Written)).count();
                settle_each(batch, verdicts).await;
                Outcome::Failed { commands: commands.len(), failed }
            }
            Err(e) => {
                metrics::counter!("chatsys_batches_total", "outcome" => "failed").increment(1);
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), commands = commands.len(), "batch not written");
                settle_all(batch, Some(&e)).await;
                Outcome::Failed { commands: commands.len(), failed: commands.len() }
            }
        }
    }

    /// Writes `commands` in ever smaller parts (each part is one transaction, left to right,
    /// so the search index sees them in order) until every refused command is alone.
    async fn isolate(&self, commands: &[Queued]) -> Vec<Verdict> {
        let mut verdicts: Vec<Verdict> = commands.iter().map(|_| Verdict::Written).collect();
        let halves = |r: std::ops::Range<usize>| {
            let mid = r.start + r.len() / 2;
            [mid..r.end, r.start..mid]
        };
        let mut todo: Vec<std::ops::Range<usize>> = halves(0..commands.len()).into_iter().collect();
        while let Some(range) = todo.pop() {
            if range.is_empty() {
                continue;
            }
            let part = &commands[range.clone()];
            match write(self.store.as_ref(), part, self.patience, 1).await {
                Ok(outcome) => {
                    record_written(part, Duration::ZERO);
                    record_dropped(&outcome);
                    self.announce(&outcome).await;
                    self.index(&outcome).await;
                }
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    for v in &mut verdicts[range] {
                        *v = Verdict::Failed(e.detail().to_owned());
                    }
                }
                Err(e) if range.len() == 1 => {
                    let cause = std::error::Error::source(&e).map(ToString::to_string);
                    let reason = match &cause {
                        Some(cause) => format!("{e}: {cause}"),
                        None => e.to_string(),
                    };
                    verdicts[range.start] = Verdict::Refused(reason);
                }
                Err(_) => todo.extend(halves(range)),
            }
        }
        verdicts
    }
}

/// What became of one command of a batch that the store refused as a whole.
#[derive(Debug)]
enum Verdict {
    Written,
    /// The store refuses it for good: set aside, with the reason.
    Refused(String),
    /// Not written for a passing reason: its delivery comes again.
    Failed(String),
}

/// Settles each delivery by the verdicts of its commands (in delivery order).
async fn settle_each(batch: Vec<Delivery>, verdicts: Vec<Verdict>) {
    let mut verdicts = verdicts.into_iter();
    for delivery in batch {
        let mine: Vec<Verdict> = verdicts.by_ref().take(delivery.commands.len()).collect();
        if let Some(detail) = mine.iter().find_map(|v| match v {
            Verdict::Failed(detail) => Some(detail.clone()),
            _ => None,
        }) {
            delivery.receipt.fail(&Error::unavailable(detail)).await;
            continue;
        }
        let refused: Vec<Refused> = delivery
            .commands
            .into_iter()
            .zip(mine)
            .filter_map(|(command, verdict)| match verdict {
                Verdict::Refused(reason) => Some(Refused { command, reason }),
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            delivery.receipt.ack().await;
        } else {
            delivery.receipt.set_aside(refused).await;
        }
    }
}

impl Consumer {
    /// Tells every API process which chats moved; a lost announcement costs latency only.
    async fn announce(&self, outcome: &BatchOutcome) {
        let Some(bulletin) = &self.bulletin else { return };
        if outcome.advanced.is_empty() {
            return;
        }
        let news: Vec<News> = outcome
            .advanced
            .iter()
            .map(|a| News::Advanced { app: a.app, chat: a.chat, position: a.position })
            .collect();
        if let Err(e) = bulletin.publish(&news).await {
            tracing::debug!(error = %e, "news of a batch not announced; subscribers read it within a second");
        }
    }

    /// The store is the truth: a batch that could not be indexed is still acknowledged, and
    /// the index catches up from the store (on start, or by `chatsys reindex`).
    async fn index(&self, outcome: &BatchOutcome) {
        let Some(search) = &self.search else { return };
        let every: Vec<ChangedMessage>;
        let docs = if search.keeps_versions() {
            every = outcome.changed.iter().chain(&outcome.unchanged).cloned().collect();
            &every
        } else {
            &outcome.changed
        };
        let mut attempt = 1u32;
        let result = loop {
            match search.index(docs, &outcome.erased_chats, outcome.rev).await {
                // a versioned index (Elasticsearch) has no catch-up of its own: hold the
                // deliveries and retry while it is away, as for the store
                Err(e) if e.kind() == ErrorKind::Unavailable && self.patience == Patience::UntilAvailable => {
                    if attempt % 10 == 1 {
                        tracing::warn!(error = %e, attempt, "search index unavailable: retrying the batch's indexing");
                    }
                    tokio::time::sleep(Duration::from_millis((100 * u64::from(attempt)).min(2_000))).await;
                    attempt += 1;
                }
                result => break result,
            }
        };
        if let Err(e) = result {
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            tracing::error!(error = %e, cause, rev = outcome.rev, "batch not indexed for search");
        }
    }
}

fn record_dropped(outcome: &BatchOutcome) {
    if outcome.dropped > 0 {
        // creates and edits for a chat or an application deleted meanwhile
        metrics::counter!("chatsys_commands_dropped_total").increment(outcome.dropped);
        tracing::debug!(dropped = outcome.dropped, "commands for deleted chats or applications dropped");
    }
}

fn record_written(commands: &[Queued], took: std::time::Duration) {
    metrics::counter!("chatsys_batches_total", "outcome" => "written").increment(1);
    metrics::histogram!("chatsys_batch_commands").record(commands.len() as f64);
    metrics::histogram!("chatsys_batch_write_seconds").record(took.as_secs_f64());
    let now = chatsys_core::Timestamp::now().as_micros();
    let lag = metrics::histogram!("chatsys_create_commit_lag_seconds");
    for q in commands {
        if let chatsys_core::Command::CreateChat { at, .. } | chatsys_core::Command::CreateMessage { at, .. } =
            &q.command
        {
            lag.record((now - at.as_micros()).max(0) as f64 / 1e6);
        }
    }
}

/// Writes a batch, retrying while the store is unavailable (as long as `patience` says) and
/// up to `deterministic_attempts` times when it refuses the batch (a refusal can be a
/// passing state the driver does not name, such as a lock the engine calls by another name).
/// A batch retried for more than a few seconds shows in the log and in
/// `chatsys_batch_retrying`.
async fn write(
    store: &dyn Store,
    commands: &[Queued],
    patience: Patience,
    deterministic_attempts: u32,
) -> Result<BatchOutcome> {
    let mut attempt = 1u32;
    let (mut retrying, mut refusals) = (false, 0u32);
    let result = loop {
        match store.write_batch(commands).await {
            Err(e)
                if e.kind() == ErrorKind::Unavailable
                    && (patience == Patience::UntilAvailable || attempt < WRITE_ATTEMPTS) =>
            {
                let wait = Duration::from_millis((50 * u64::from(attempt)).min(2_000));
                if attempt % 10 == 1 {
                    let cause = std::error::Error::source(&e).map(ToString::to_string);
                    tracing::warn!(error = %e, cause, attempt, "store unavailable: retrying the batch");
                }
                if attempt == 10 && !retrying {
                    retrying = true;
                    metrics::gauge!("chatsys_batch_retrying").increment(1.0);
                }
                metrics::counter!("chatsys_batch_retries_total").increment(1);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) if e.kind() != ErrorKind::Unavailable && refusals + 1 < deterministic_attempts => {
                refusals += 1;
                metrics::counter!("chatsys_batch_retries_total").increment(1);
                tokio::time::sleep(Duration::from_millis(20 * u64::from(refusals))).await;
            }
            result => break result,
        }
    };
    if retrying {
        metrics::gauge!("chatsys_batch_retrying").decrement(1.0);
    }
    result
}

async fn settle_all(batch: Vec<Delivery>, error: Option<&Error>) {
    for delivery in batch {
        match error {
            None => delivery.receipt.ack().await,
            Some(e) => delivery.receipt.fail(e).await,
        }
    }
}
