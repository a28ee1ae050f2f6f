//! The commands of the create pipeline. A handler allocates the number, wraps the command in
//! a [`Queued`] and hands it to the queue; a worker writes batches of them to the store.
//! Every command is idempotent on its natural key, so a redelivery changes nothing.

use serde::{Deserialize, Serialize};

use crate::ids::{AppId, ChatNumber, MessageNumber, Version};
use crate::text::MessageBody;
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    CreateChat {
        app: AppId,
        chat: ChatNumber,
        at: Timestamp,
    },
    CreateMessage {
        app: AppId,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
        at: Timestamp,
    },
    /// Replaces the body if `version` is higher than the version of the message's last
    /// applied change. It wins over the create (version 0) whichever reaches the store
    /// first; it never brings back a deleted message.
    EditMessage {
        app: AppId,
        chat: ChatNumber,
        number: MessageNumber,
        body: MessageBody,
        at: Timestamp,
        /// Commands queued by a build without versions carry none: version 0, which loses
        /// against every versioned edit (drain the queue before such an upgrade).
        #[serde(default)]
        version: Version,
    },
    /// Turns the message into a tombstone (number, position, version, no body). A delete is
    /// final: no create or edit, early or late, brings the message back.
    DeleteMessage {
        app: AppId,
        chat: ChatNumber,
        number: MessageNumber,
        at: Timestamp,
        version: Version,
    },
    /// Turns the chat into a tombstone and erases its messages; commands for it that arrive
    /// later are dropped.
    DeleteChat {
        app: AppId,
        chat: ChatNumber,
        at: Timestamp,
    },
}

impl Command {
    pub fn app(&self) -> AppId {
        match self {
            Command::CreateChat { app, .. }
            | Command::CreateMessage { app, .. }
            | Command::EditMessage { app, .. }
            | Command::DeleteMessage { app, .. }
            | Command::DeleteChat { app, .. } => *app,
        }
    }

    pub fn chat(&self) -> ChatNumber {
        match self {
            Command::CreateChat { chat, .. }
            | Command::CreateMessage { chat, .. }
            | Command::EditMessage { chat, .. }
            | Command::DeleteMessage { chat, .. }
            | Command::DeleteChat { chat, .. } => *chat,
        }
    }

    /// The message the command changes, if it changes one.
    pub fn message(&self) -> Option<MessageNumber> {
        match self {
            Command::CreateMessage { number, .. }
            | Command::EditMessage { number, .. }
            | Command::DeleteMessage { number, .. } => Some(*number),
            Command::CreateChat { .. } | Command::DeleteChat { .. } => None,
        }
    }

    /// When the server accepted the command.
    pub fn at(&self) -> Timestamp {
        match self {
            Command::CreateChat { at, .. }
            | Command::CreateMessage { at, .. }
            | Command::EditMessage { at, .. }
            | Command::DeleteMessage { at, .. }
            | Command::DeleteChat { at, .. } => *at,
        }
    }

    /// A create: its item did not exist before (its number was handed out for it).
    pub fn is_create(&self) -> bool {
        matches!(self, Command::CreateChat { .. } | Command::CreateMessage { .. })
    }
}

/// The response to an idempotent create, kept with the key for 24 hours so that a repeat
/// gets the first answer. It is written in the same transaction as the item it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The request path the key is scoped to.
    pub scope: String,
    pub key: String,
    /// A digest of the request body as understood (not as spelled), to tell a repeat from a
    /// different request reusing the key.
    pub fingerprint: String,
    pub status: u16,
    pub location: String,
    /// The response body, JSON.
    pub body: String,
    pub created_at: Timestamp,
}

impl IdempotencyRecord {
    /// How long a key is remembered.
    pub const RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;
}

/// A command as it travels the queue, with the idempotency record to write beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    pub command: Command,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<IdempotencyRecord>,
    /// A delete's path (`/applications/<token>/chats/<n>[/messages/<m>]`): the answers kept
    /// for idempotent creates at or under it go with it, in the same transaction (they hold
    /// the deleted text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erase_answers_under: Option<String>,
}

impl Queued {
    /// A delete that also erases the idempotency answers at or under `path`.
    pub fn erasing(command: Command, path: String) -> Self {
        Self { command, idempotency: None, erase_answers_under: Some(path) }
    }
}

impl From<Command> for Queued {
    fn from(command: Command) -> Self {
        Self { command, idempotency: None, erase_answers_under: None }
    }
}
