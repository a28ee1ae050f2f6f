//! Where a row is written: one batch algorithm for every backend, over a small set of
//! primitives each engine implements ([`BatchTx`]).
//!
//! 1. Lock the rows of every chat the batch touches (in key order). A chat that is not
//!    there yet is inserted, if its application still exists (its row is locked for that).
//! 2. Read the stored rows of every message the batch names. Every writer of a chat's
//!    messages holds the chat's row lock, so what is read stays true until the commit.
//! 3. Fold the commands over those rows ([`fold`]): the rows to insert and update, the new
//!    positions, the count changes.
//! 4. Write them, and the idempotency records, in the same transaction.
//!
//! Positions are taken from the chat row under its lock, so two transactions touching one
//! chat serialize, and positions are committed in increasing order with nothing committed
//! below a position already visible.

mod fold;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chatsys_core::ports::BatchOutcome;
use chatsys_core::{Command, IdempotencyRecord, Queued, Result, Timestamp};

pub(crate) type ChatKey = (i64, i64);
pub(crate) type MessageKey = (i64, i64, i64);

/// A chat row as the batch finds and leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatRow {
    pub last_position: i64,
    pub messages_count: i64,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A message row as the batch finds and leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageRow {
    /// `None`: a tombstone.
    pub body: Option<String>,
    pub version: i64,
    pub position: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an engine offers the batch algorithm, inside one open transaction.
#[async_trait]
pub(crate) trait BatchTx: Send {
    /// Locks the chat rows that exist among `keys` (sorted) and reads them.
    async fn lock_chats(&mut self, keys: &[ChatKey]) -> Result<Vec<(ChatKey, ChatRow)>>;
    /// Locks the rows of the applications that exist among `apps` (sorted); their ids.
    async fn lock_applications(&mut self, apps: &[i64]) -> Result<BTreeSet<i64>>;
    /// Inserts chat rows where absent (another transaction may have inserted some
    /// meanwhile); the keys it inserted. The rows end up locked either way.
    async fn insert_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<BTreeSet<ChatKey>>;
    /// The stored rows among `keys` (sorted), tombstones included.
    async fn messages(&mut self, keys: &[MessageKey]) -> Result<Vec<(MessageKey, MessageRow)>>;
    async fn insert_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()>;
    async fn update_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()>;
    /// Deletes every message row of these chats (their chats are deleted).
    async fn erase_messages(&mut self, chats: &[ChatKey]) -> Result<()>;
    async fn update_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<()>;
    /// Adds each delta to its application's `chats_count`.
    async fn add_chats_counts(&mut self, deltas: &[(i64, i64)]) -> Result<()>;
    async fn insert_idempotency_records(&mut self, records: &[IdempotencyRecord]) -> Result<()>;
    /// Deletes the idempotency records whose location is one of `paths` or under it.
    async fn erase_answers(&mut self, paths: &[String]) -> Result<()>;
    async fn commit(self) -> Result<()>;
}

/// Writes `batch` through `tx` and commits. `rev` is the batch's place in the store's
/// sequence of batches (0 where none is kept).
pub(crate) async fn write<T: BatchTx>(mut tx: T, batch: &[Queued], rev: u64) -> Result<BatchOutcome> {
    // 1. chats, in key order
    let mut first_times: BTreeMap<ChatKey, (Timestamp, bool)> = BTreeMap::new();
    for q in batch {
        let key = (q.command.app().0, q.command.chat().as_i64());
        let explicit = matches!(q.command, Command::CreateChat { .. });
        let at = q.command.at();
        let entry = first_times.entry(key).or_insert((at, explicit));
        // a chat's own create knows when it was created; else its earliest message
        if explicit && !entry.1 {
            *entry = (at, true);
        } else if !entry.1 {
            entry.0 = entry.0.min(at);
        }
    }
    let keys: Vec<ChatKey> = first_times.keys().copied().collect();
    let mut chats: BTreeMap<ChatKey, ChatRow> = tx.lock_chats(&keys).await?.into_iter().collect();
    let mut inserted = BTreeSet::new();
    let missing: Vec<ChatKey> = keys.iter().filter(|k| !chats.contains_key(k)).copied().collect();
    if !missing.is_empty() {
        let apps: Vec<i64> = missing.iter().map(|(a, _)| *a).collect::<BTreeSet<_>>().into_iter().collect();
        let live = tx.lock_applications(&apps).await?;
        let fresh: Vec<(ChatKey, ChatRow)> = missing
            .iter()
            .filter(|(a, _)| live.contains(a))
            .map(|k| {
                let at = first_times[k].0;
                (*k, ChatRow { last_position: 0, messages_count: 0, deleted: false, created_at: at, updated_at: at })
            })
            .collect();
        inserted = tx.insert_chats(&fresh).await?;
        let raced: Vec<ChatKey> = fresh.iter().map(|(k, _)| *k).filter(|k| !inserted.contains(k)).collect();
        chats.extend(fresh.into_iter().filter(|(k, _)| inserted.contains(k)));
        if !raced.is_empty() {
            chats.extend(tx.lock_chats(&raced).await?);
        }
    }

    // 2. the stored rows of the messages named, in live chats
    let message_keys: Vec<MessageKey> = batch
        .iter()
        .filter_map(|q| {
            let key = (q.command.app().0, q.command.chat().as_i64());
            let number = q.command.message()?;
            chats.get(&key).filter(|c| !c.deleted).map(|_| (key.0, key.1, number.as_i64()))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let stored =
        if message_keys.is_empty() { BTreeMap::new() } else { tx.messages(&message_keys).await?.into_iter().collect() };

    // 3. fold
    let records: Vec<IdempotencyRecord> = batch
        .iter()
        .filter(|q| chats.contains_key(&(q.command.app().0, q.command.chat().as_i64())))
        .filter_map(|q| q.idempotency.clone())
        .collect();
    let changes = fold::fold(batch, chats, &inserted, stored, rev);

    // 4. write
    if !changes.new_messages.is_empty() {
        tx.insert_messages(&changes.new_messages).await?;
    }
    if !changes.updated_messages.is_empty() {
        tx.update_messages(&changes.updated_messages).await?;
    }
    if !changes.erased_chats.is_empty() {
        tx.erase_messages(&changes.erased_chats).await?;
    }
    if !changes.updated_chats.is_empty() {
        tx.update_chats(&changes.updated_chats).await?;
    }
    let deltas: Vec<(i64, i64)> = changes.app_deltas.iter().map(|(a, d)| (*a, *d)).collect();
    if !deltas.is_empty() {
        tx.add_chats_counts(&deltas).await?;
    }
    if !records.is_empty() {
        tx.insert_idempotency_records(&records).await?;
    }
    let erased: Vec<String> = batch.iter().filter_map(|q| q.erase_answers_under.clone()).collect();
    if !erased.is_empty() {
        tx.erase_answers(&erased).await?;
    }
    tx.commit().await?;
    Ok(changes.outcome)
}

/// Multi-row statements come in these sizes only (a list is cut into the largest pieces
/// that fit): each size is one prepared statement that stays in the driver's cache. With any
/// row count allowed the cache churns, and on MySQL each eviction sends a COM_STMT_CLOSE,
/// which gets no reply: the next command then waits 40 ms for Nagle's algorithm and the
/// server's delayed ACK.
const STATEMENT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` cut into pieces of the sizes above, largest first.
pub(crate) fn pieces<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in STATEMENT_SIZES {
        while items.len() >= size {
            let (piece, rest) = items.split_at(size);
            out.push(piece);
            items = rest;
        }
    }
    out
}

#[cfg(test)]
mod tests;
