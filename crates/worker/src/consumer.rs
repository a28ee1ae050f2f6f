//! One step of the pipeline: take a batch, write it, settle its deliveries.

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::{BatchOutcome, ChangedMessage, CommandSource, Delivery, SearchIndex, Store};
use chatsys_core::{Error, ErrorKind, Queued, Result};

use crate::batcher::{BatchConfig, next_batch};

pub struct Consumer {
    source: Box<dyn CommandSource>,
    store: Arc<dyn Store>,
    search: Option<Arc<dyn SearchIndex>>,
    config: BatchConfig,
    patience: Patience,
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

/// Attempts at writing a batch before giving up on it (transient store trouble).
const WRITE_ATTEMPTS: u32 = 3;

impl Consumer {
    pub fn new(source: Box<dyn CommandSource>, store: Arc<dyn Store>, config: BatchConfig) -> Self {
        Self { source, store, search: None, config, patience: Patience::Brief }
    }

    pub fn with_patience(mut self, patience: Patience) -> Self {
        self.patience = patience;
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
        let Some(batch) = next_batch(self.source.as_mut(), self.config).await else { return Outcome::Closed };
        let commands: Vec<Queued> = batch.iter().flat_map(|d| d.commands.iter().cloned()).collect();
        let started = std::time::Instant::now();
        match write(self.store.as_ref(), &commands, self.patience).await {
            Ok(outcome) => {
                let written = started.elapsed();
                record_written(&commands, written);
                self.index(&outcome, &commands).await;
                settle_all(batch, None).await;
                tracing::trace!(
                    commands = commands.len(),
                    write_us = written.as_micros() as u64,
                    total_us = started.elapsed().as_micros() as u64,
                    "batch settled"
                );
                Outcome::Written { commands: commands.len(), outcome }
            }
            // A command the store rejects outright must not take the rest of its batch down
            // with it: write the deliveries one by one and fail only the ones that fail.
            Err(e) if e.kind() == ErrorKind::Internal && batch.len() > 1 => {
                tracing::error!(error = %e, source = ?std::error::Error::source(&e), "batch rejected, writing its deliveries one by one");
                let mut failed = 0;
                for delivery in batch {
                    let result = write(self.store.as_ref(), &delivery.commands, self.patience).await;
                    match &result {
                        Ok(outcome) => self.index(outcome, &delivery.commands).await,
                        Err(_) => failed += delivery.commands.len(),
                    }
                    settle_all(vec![delivery], result.err().as_ref()).await;
                }
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
}

impl Consumer {
    /// The store is the truth: a batch that could not be indexed is still acknowledged, and
    /// the index catches up from the store (on start, or by `chatsys reindex`).
    async fn index(&self, outcome: &BatchOutcome, commands: &[Queued]) {
        let Some(search) = &self.search else { return };
        let every: Vec<ChangedMessage>;
        let docs = if search.keeps_versions() {
            every = commands.iter().filter_map(|q| ChangedMessage::of(&q.command)).collect();
            &every
        } else {
            &outcome.changed
        };
        let mut attempt = 1u32;
        let result = loop {
            match search.index(docs, outcome.rev).await {
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

/// Writes a batch, retrying while the store is unavailable (as long as `patience` says).
async fn write(store: &dyn Store, commands: &[Queued], patience: Patience) -> Result<BatchOutcome> {
    let mut attempt = 1u32;
    loop {
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
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn settle_all(batch: Vec<Delivery>, error: Option<&Error>) {
    for delivery in batch {
        match error {
            None => delivery.receipt.ack().await,
            Some(e) => delivery.receipt.fail(e).await,
        }
    }
}
