//! What a batch asks of the store, worked out once for every backend: which chat rows must
//! exist (explicit creates, and the chats that messages of the batch live in), which
//! messages to create (each key once), which edits to apply.

use std::collections::{BTreeMap, BTreeSet};

use chatsys_core::ports::ChangedMessage;
use chatsys_core::{AppId, ChatNumber, Command, IdempotencyRecord, MessageNumber, Queued, Timestamp};

pub(crate) type ChatKey = (i64, i64);
pub(crate) type MessageKey = (i64, i64, i64);

pub(crate) struct Plan<'a> {
    /// Every chat the batch touches, with the time to create its row with, and whether the
    /// batch holds the chat's own create (whose time is the real one).
    pub chats: BTreeMap<ChatKey, (Timestamp, bool)>,
    /// Message creates, one per key (a key repeated by a redelivery inside one batch is the
    /// same create).
    pub creates: Vec<(MessageKey, &'a str, Timestamp)>,
    pub edits: Vec<(MessageKey, &'a str, Timestamp)>,
    pub records: Vec<IdempotencyRecord>,
}

impl<'a> Plan<'a> {
    pub fn of(batch: &'a [Queued]) -> Self {
        let mut chats: BTreeMap<ChatKey, (Timestamp, bool)> = BTreeMap::new();
        let mut created = BTreeSet::new();
        let mut creates = Vec::new();
        let mut edits = Vec::new();
        for q in batch {
            let key = (q.command.app().0, q.command.chat().as_i64());
            match &q.command {
                Command::CreateChat { at, .. } => {
                    let entry = chats.entry(key).or_insert((*at, true));
                    if !entry.1 {
                        *entry = (*at, true);
                    }
                }
                Command::CreateMessage { number, body, at, .. } => {
                    let entry = chats.entry(key).or_insert((*at, false));
                    if !entry.1 {
                        entry.0 = entry.0.min(*at);
                    }
                    let message = (key.0, key.1, number.as_i64());
                    if created.insert(message) {
                        creates.push((message, body.as_str(), *at));
                    }
                }
                Command::EditMessage { number, body, at, .. } => {
                    let entry = chats.entry(key).or_insert((*at, false));
                    if !entry.1 {
                        entry.0 = entry.0.min(*at);
                    }
                    edits.push(((key.0, key.1, number.as_i64()), body.as_str(), *at));
                }
            }
        }
        let records = batch.iter().filter_map(|q| q.idempotency.clone()).collect();
        Self { chats, creates, edits, records }
    }
}

/// Per-parent deltas: how many rows were inserted under each key.
pub(crate) fn count_by<K: Ord + Copy, T>(
    keys: impl IntoIterator<Item = T>,
    parent: impl Fn(T) -> K,
) -> BTreeMap<K, i64> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(parent(key)).or_default() += 1;
    }
    counts
}

/// The changed messages, as the search index wants them; `inserted` are the rows the batch
/// inserted.
pub(crate) fn changed(
    changes: BTreeMap<MessageKey, (&str, Timestamp)>,
    inserted: &BTreeSet<MessageKey>,
) -> Vec<ChangedMessage> {
    changes
        .into_iter()
        .map(|((app, chat, number), (body, version))| ChangedMessage {
            app: AppId(app),
            chat: ChatNumber::new(chat as u64).expect("numbers in a batch are valid"),
            number: MessageNumber::new(number as u64).expect("numbers in a batch are valid"),
            body: body.to_owned(),
            version,
            first_write: inserted.contains(&(app, chat, number)),
        })
        .collect()
}
