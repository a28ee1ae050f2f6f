//! The pure heart of a batch: given the rows as the batch found them (locked), fold every
//! command over them in batch order and work out the rows to write. No I/O here, so every
//! backend applies exactly the same rules:
//!
//! - a create inserts a row that is not there; found there (a redelivery, or an edit or a
//!   delete that overtook it), it only sets the creation time of a live row;
//! - an edit applies over a live row of a lower version, or writes the row if absent;
//! - a delete turns the row into a tombstone (absent rows too) and is final;
//! - a chat delete turns the chat into a tombstone and erases its messages; commands for a
//!   deleted chat, or for a chat of an application that no longer exists, are dropped;
//! - every message whose state changed takes the chat's next position, in the order the
//!   batch first named it; a deleted chat takes one last position;
//! - counts move by the rows whose liveness changed.

use std::collections::{BTreeMap, BTreeSet};

use chatsys_core::ports::{Advanced, BatchOutcome, ChangedMessage, Erasure};
use chatsys_core::{AppId, ChatNumber, Command, MessageNumber, Position, Queued, Timestamp};

use super::{ChatKey, ChatRow, MessageKey, MessageRow};

/// What the batch writes, and what it tells the caller.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub new_messages: Vec<(MessageKey, MessageRow)>,
    pub updated_messages: Vec<(MessageKey, MessageRow)>,
    /// Chats whose message rows are erased (deleted by this batch).
    pub erased_chats: Vec<ChatKey>,
    /// The new state of every chat row that changed.
    pub updated_chats: Vec<(ChatKey, ChatRow)>,
    /// Per application, how many live chats it gained (or lost).
    pub app_deltas: BTreeMap<i64, i64>,
    pub outcome: BatchOutcome,
}

struct ChatState {
    row: ChatRow,
    /// The batch inserted the row (live): the application gains a chat.
    inserted: bool,
    /// The row must be written again.
    changed: bool,
    /// The chat took a new position.
    moved: bool,
    live_delta: i64,
}

struct MessageState {
    stored: Option<MessageRow>,
    row: Option<MessageRow>,
    changed: bool,
}

fn is_live(row: Option<&MessageRow>) -> bool {
    row.is_some_and(|r| r.body.is_some())
}

/// `chats`: every chat row the batch may touch, as found (missing: its application is gone);
/// `inserted`: those the batch inserted; `messages`: the stored rows of the messages named.
pub(crate) fn fold(
    batch: &[Queued],
    chats: BTreeMap<ChatKey, ChatRow>,
    inserted: &BTreeSet<ChatKey>,
    mut messages: BTreeMap<MessageKey, MessageRow>,
    rev: u64,
) -> Changes {
    let mut out = Changes::default();
    out.outcome.rev = rev;
    let mut chats: BTreeMap<ChatKey, ChatState> = chats
        .into_iter()
        .map(|(key, row)| {
            let inserted = inserted.contains(&key);
            (key, ChatState { row, inserted, changed: false, moved: false, live_delta: 0 })
        })
        .collect();
    // message states in the order the batch first names them: positions follow it
    let mut order: Vec<MessageKey> = Vec::new();
    let mut states: BTreeMap<MessageKey, MessageState> = BTreeMap::new();

    for q in batch {
        let command = &q.command;
        let chat_key = (command.app().0, command.chat().as_i64());
        let Some(chat) = chats.get_mut(&chat_key) else {
            out.outcome.dropped += 1;
            continue;
        };
        if chat.row.deleted {
            if !matches!(command, Command::DeleteChat { .. }) {
                out.outcome.dropped += 1;
            }
            continue;
        }
        match command {
            Command::CreateChat { at, .. } => {
                if chat.row.created_at != *at {
                    chat.row.created_at = *at;
                    chat.row.updated_at = chat.row.updated_at.max(*at);
                    chat.changed = true;
                }
            }
            Command::DeleteChat { at, .. } => {
                chat.row.deleted = true;
                chat.row.updated_at = chat.row.updated_at.max(*at);
                chat.row.messages_count = 0;
                chat.row.last_position += 1;
                chat.changed = true;
                chat.moved = true;
                chat.live_delta -= 1;
                out.erased_chats.push(chat_key);
                out.outcome.chats_deleted += 1;
            }
            Command::CreateMessage { .. } | Command::EditMessage { .. } | Command::DeleteMessage { .. } => {
                let number = command.message().expect("a message command").as_i64();
                let key = (chat_key.0, chat_key.1, number);
                let state = states.entry(key).or_insert_with(|| {
                    order.push(key);
                    let stored = messages.remove(&key);
                    MessageState { row: stored.clone(), stored, changed: false }
                });
                apply(command, state, &mut out.outcome);
            }
        }
    }

    for key in order {
        let state = states.remove(&key).expect("every named message has a state");
        let chat = chats.get_mut(&(key.0, key.1)).expect("a message's chat is known");
        if chat.row.deleted {
            continue; // erased with its chat
        }
        let Some(mut row) = state.row else { continue };
        let change = ChangedMessage {
            app: AppId(key.0),
            chat: ChatNumber::new(key.1 as u64).expect("stored numbers are valid"),
            number: MessageNumber::new(key.2 as u64).expect("stored numbers are valid"),
            body: row.body.clone(),
            position: Position(row.position as u64),
            first_write: state.stored.is_none(),
        };
        if !state.changed {
            out.outcome.unchanged.push(change);
            continue;
        }
        chat.row.last_position += 1;
        chat.changed = true;
        chat.moved = true;
        row.position = chat.row.last_position;
        chat.row.messages_count += i64::from(is_live(Some(&row))) - i64::from(is_live(state.stored.as_ref()));
        out.outcome.changed.push(ChangedMessage { position: Position(row.position as u64), ..change });
        match state.stored {
            None => out.new_messages.push((key, row)),
            Some(_) => out.updated_messages.push((key, row)),
        }
    }

    for (key, chat) in chats {
        let delta = chat.live_delta + i64::from(chat.inserted);
        if delta != 0 {
            *out.app_deltas.entry(key.0).or_default() += delta;
        }
        if chat.inserted {
            out.outcome.chats_created += 1;
        }
        if chat.moved {
            out.outcome.advanced.push(Advanced {
                app: AppId(key.0),
                chat: ChatNumber::new(key.1 as u64).expect("stored numbers are valid"),
                position: Position(chat.row.last_position as u64),
            });
        }
        if chat.changed {
            out.updated_chats.push((key, chat.row));
        }
    }
    out.outcome.erased_chats = out
        .erased_chats
        .iter()
        .map(|(a, c)| Erasure::Chat(AppId(*a), ChatNumber::new(*c as u64).expect("stored numbers are valid")))
        .collect();
    out
}

/// One message command over the message's state so far.
fn apply(command: &Command, state: &mut MessageState, outcome: &mut BatchOutcome) {
    match (command, &mut state.row) {
        (Command::CreateMessage { body, at, .. }, row @ None) => {
            *row = Some(MessageRow::live(body.as_str(), 0, *at));
            state.changed = true;
            outcome.messages_created += 1;
        }
        (Command::CreateMessage { at, .. }, Some(row)) => {
            // an edit got here first and wrote the row with its own time; a tombstone stays
            if row.body.is_some() && row.created_at != *at {
                row.created_at = *at;
                state.changed = true;
            }
        }
        (Command::EditMessage { body, at, version, .. }, row @ None) => {
            *row = Some(MessageRow::live(body.as_str(), version.as_i64(), *at));
            state.changed = true;
            outcome.messages_created += 1;
            outcome.edits_applied += 1;
        }
        (Command::EditMessage { body, at, version, .. }, Some(row)) => {
            if row.body.is_some() && version.as_i64() > row.version {
                row.body = Some(body.as_str().to_owned());
                row.version = version.as_i64();
                row.updated_at = *at;
                state.changed = true;
                outcome.edits_applied += 1;
            }
        }
        (Command::DeleteMessage { at, version, .. }, row @ None) => {
            *row = Some(MessageRow {
                body: None,
                version: version.as_i64(),
                position: 0,
                created_at: *at,
                updated_at: *at,
            });
            state.changed = true;
        }
        (Command::DeleteMessage { at, version, .. }, Some(row)) => {
            if row.body.is_some() {
                row.body = None;
                row.version = row.version.max(version.as_i64());
                row.updated_at = *at;
                state.changed = true;
                outcome.messages_deleted += 1;
            }
        }
        (Command::CreateChat { .. } | Command::DeleteChat { .. }, _) => unreachable!("not a message command"),
    }
}

impl MessageRow {
    fn live(body: &str, version: i64, at: Timestamp) -> Self {
        Self { body: Some(body.to_owned()), version, position: 0, created_at: at, updated_at: at }
    }
}
