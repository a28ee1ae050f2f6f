//! The ports: what the handlers and the worker need from the outside world. Each has an
//! embedded backend (one process) and a distributed one (shared services); the choice is
//! made once, in the binary's wiring.
//!
//! Longer than most files here on purpose: the ports are read side by side, as one list of
//! what the core needs.

use async_trait::async_trait;

use crate::command::{IdempotencyRecord, Queued};
use crate::error::{Error, Result};
use crate::ids::{AppId, AppToken, ChatNumber, MessageNumber, Position, Version};
use crate::model::{Application, Chat, Message, NewApplication};
use crate::search::SearchQuery;
use crate::text::AppName;
use crate::time::Timestamp;

/// The source of truth. Applications are written directly (they are rare and their token
/// must be resolvable at once); chats and messages only arrive through [`Store::write_batch`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the store can serve reads and writes.
    async fn ping(&self) -> Result<()>;

    /// Writes a new application, and the idempotency record of its request in the same
    /// transaction.
    async fn create_application(
        &self,
        new: &NewApplication,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Application>;

    /// `None` when no application has this token.
    async fn rename_application(&self, token: &AppToken, name: &AppName, at: Timestamp) -> Result<Option<Application>>;

    async fn application(&self, token: &AppToken) -> Result<Option<Application>>;

    /// Applications in creation order, after the position `(created_at, token)`.
    async fn list_applications(&self, after: Option<&(Timestamp, AppToken)>, limit: u32) -> Result<Vec<Application>>;

    async fn chat(&self, app: AppId, chat: ChatNumber) -> Result<Option<Chat>>;

    async fn list_chats(&self, app: AppId, after: Option<ChatNumber>, limit: u32) -> Result<Vec<Chat>>;

    async fn message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Message>>;

    async fn list_messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<MessageNumber>,
        limit: u32,
    ) -> Result<Vec<Message>>;

    /// Every stored message in key order, after `after`, at most `limit`: for rebuilding a
    /// search index. Tombstones come with no body.
    async fn scan_messages(&self, after: Option<&ChangedMessage>, limit: u32) -> Result<Vec<ChangedMessage>>;

    /// The stored messages among `numbers`, in no particular order.
    async fn messages_by_number(&self, app: AppId, chat: ChatNumber, numbers: &[MessageNumber])
    -> Result<Vec<Message>>;

    /// The record of an idempotent request, if one younger than the retention period exists.
    async fn idempotency_record(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>>;

    /// The highest chat number stored for the application (0 when none), tombstones
    /// included; `None` when the application does not exist (any more).
    async fn highest_chat_number(&self, app: AppId) -> Result<Option<u64>>;

    /// What the chat's counters start from, or `None` when the chat's row is not stored or
    /// is a tombstone. Number allocation seeds its counters from this.
    async fn chat_seed(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatSeed>>;

    /// The chat's current position, whether it is deleted, or `None` when its row is not
    /// stored.
    async fn chat_position(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatPosition>>;

    /// The current position of each of these chats whose row is stored.
    async fn chat_positions(&self, chats: &[(AppId, ChatNumber)]) -> Result<Vec<(AppId, ChatNumber, ChatPosition)>>;

    /// The messages of the chat changed by commits after position `after`, each once in its
    /// current state, in position order, at most `limit` (a replay of live events).
    async fn message_changes(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Position,
        limit: u32,
    ) -> Result<Vec<MessageChange>>;

    /// Writes a batch of commands in one transaction, idempotently: a command already applied
    /// changes nothing. Counts move by the rows whose state changed, in the same transaction;
    /// every chat whose messages changed moves to a new position.
    async fn write_batch(&self, batch: &[Queued]) -> Result<BatchOutcome>;

    /// Recomputes `chats_count` and `messages_count` from the rows and forgets expired
    /// idempotency records.
    async fn reconcile(&self) -> Result<Reconciled>;

    /// Erases the application: its row, its chats and messages, and the idempotency records
    /// of its requests, in one transaction. False when there was none.
    async fn erase_application(&self, app: AppId, token: &AppToken) -> Result<bool>;
}

/// What an index must forget at once: a deleted chat's messages, or everything of an erased
/// application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    Chat(AppId, ChatNumber),
    Application(AppId),
}

/// What a batch changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The batch's place in the store's sequence of batches, where the store keeps one
    /// (see [`ChangeFeed`]); 0 otherwise.
    pub rev: u64,
    pub chats_created: u64,
    pub messages_created: u64,
    pub edits_applied: u64,
    pub messages_deleted: u64,
    pub chats_deleted: u64,
    /// Commands for a chat or an application that no longer exists: dropped, never written.
    pub dropped: u64,
    /// Messages whose stored state changed, as they are now: what a search index must
    /// (re)index or remove.
    pub changed: Vec<ChangedMessage>,
    /// Messages the batch named but did not change (a redelivery, an edit older than the one
    /// stored), as they are stored: an index that keeps versions takes them again, in case
    /// the batch that changed them was committed but never indexed.
    pub unchanged: Vec<ChangedMessage>,
    /// Chats deleted by this batch: their messages are erased from the store.
    pub erased_chats: Vec<Erasure>,
    /// Every chat that moved to a new position, with its new position (live events).
    pub advanced: Vec<Advanced>,
}

/// A chat that moved to a new position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    pub app: AppId,
    pub chat: ChatNumber,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedMessage {
    pub app: AppId,
    pub chat: ChatNumber,
    pub number: MessageNumber,
    /// `None`: the message is deleted (a tombstone).
    pub body: Option<String>,
    /// The position of the commit that gave the message this state: an index that keeps
    /// versions applies a state only over one of a lower position.
    pub position: Position,
    /// The batch that wrote this state also inserted the row: no index can hold an older
    /// copy of the message, so there is none to look for and replace.
    pub first_write: bool,
}

/// What a chat's counters start from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatSeed {
    /// The highest message number stored (tombstones included), 0 when none.
    pub highest_message: u64,
    /// The highest version of a change stored among the chat's messages.
    pub highest_version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatPosition {
    pub position: Position,
    pub deleted: bool,
}

/// One message in a replay of a chat's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageChange {
    pub position: Position,
    pub number: MessageNumber,
    /// `None`: the message is deleted.
    pub message: Option<Message>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub applications_fixed: u64,
    pub chats_fixed: u64,
    pub idempotency_records_expired: u64,
}

/// Hands out chat and message numbers: unique per parent, from 1, increasing, however many
/// servers race. A chat exists iff its number was handed out and its create was not voided.
#[async_trait]
pub trait Numbering: Send + Sync + 'static {
    async fn ping(&self) -> Result<()>;

    /// The next chat number of an application that exists.
    async fn next_chat(&self, app: AppId) -> Result<ChatNumber>;

    /// The next message number of the chat, in one step with the check that the chat
    /// exists; `None` when it does not.
    async fn next_message(&self, app: AppId, chat: ChatNumber) -> Result<Option<MessageNumber>>;

    /// Whether the chat exists, stored yet or not.
    async fn chat_exists(&self, app: AppId, chat: ChatNumber) -> Result<bool>;

    /// A version for a change (edit or delete) of the message, in one step with the check
    /// that the message exists (handed out, not voided or deleted, stored yet or not); `None`
    /// when it does not. Versions increase per chat.
    async fn next_version(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Version>>;

    /// Forgets every counter of an erased application (its token no longer resolves, so no
    /// number of it is ever asked for again).
    async fn forget_application(&self, app: AppId) -> Result<()>;

    /// Remembers that this chat is gone (its create failed after its number was handed out,
    /// or it was deleted), so the number is never treated as an existing chat again.
    async fn void_chat(&self, app: AppId, chat: ChatNumber) -> Result<()>;

    /// As [`Numbering::void_chat`], for a message.
    async fn void_message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<()>;
}

/// When [`CreateQueue::submit`] returns, how durable is the command?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the store: a GET right after sees it.
    Stored,
    /// Held by a durable queue: the store will have it shortly.
    Queued,
}

/// The producer side of the create pipeline.
#[async_trait]
pub trait CreateQueue: Send + Sync + 'static {
    async fn ping(&self) -> Result<()>;

    /// Returns once the command is durable (see [`CreateQueue::durability`]); an error of
    /// kind `Unavailable` when it could not be made durable.
    async fn submit(&self, command: Queued) -> Result<()>;

    fn durability(&self) -> Durability;

    /// Commands accepted but not yet taken by a worker (a broker's ready messages), where the
    /// queue can tell.
    async fn backlog(&self) -> Result<u64>;

    /// Counts a numbered command as on its way for as long as the guard lives, beyond its
    /// own `submit`: a create that failed, until its tombstone is queued. A queue whose
    /// process holds ([`Holds`]) while commands are on their way holds meanwhile.
    fn on_its_way(&self) -> OnItsWay {
        OnItsWay::default()
    }
}

/// See [`CreateQueue::on_its_way`]: counted until dropped.
#[derive(Default)]
pub struct OnItsWay {
    _counted: Option<Box<dyn Send + Sync>>,
}

impl OnItsWay {
    pub fn new(counted: impl Send + Sync + 'static) -> Self {
        Self { _counted: Some(Box::new(counted)) }
    }
}

/// The consumer side of the create pipeline: deliveries of one or more commands each,
/// acknowledged only after they are written.
#[async_trait]
pub trait CommandSource: Send + Sync + 'static {
    /// The next delivery; `None` once the source is closed and drained.
    async fn next(&mut self) -> Option<Delivery>;
}

pub struct Delivery {
    pub commands: Vec<Queued>,
    pub receipt: Box<dyn Receipt>,
}

/// Settles a delivery with its producer or broker.
#[async_trait]
pub trait Receipt: Send + 'static {
    /// The commands are written (and indexed): they may be forgotten.
    async fn ack(self: Box<Self>);
    /// The commands could not be written, for a passing reason: they may come again.
    async fn fail(self: Box<Self>, error: &Error);
    /// Every command of the delivery is written except `refused`, which the store refuses
    /// for good (a poison command): those are set aside with their reason, never retried.
    async fn set_aside(self: Box<Self>, refused: Vec<Refused>);
}

/// Where a process says that it holds numbered commands that are neither waiting in the
/// queue ([`CreateQueue::backlog`]) nor in the store: a worker's deliveries taken and not
/// yet settled (a broker counts them nowhere a client of AMQP can read), an API server's
/// commands sent and not yet confirmed, and its failed creates whose tombstone is not yet
/// queued. The numbering service waits until the queue is empty and no hold stands before
/// it re-seeds counters lost with Redis, since such a command's number is not in the store
/// yet.
#[async_trait]
pub trait Holds: Send + Sync + 'static {
    /// Claims, or renews, this process's hold for a short while (it lapses unless renewed:
    /// a process that died holds nothing; its deliveries went back to the queue, and no
    /// client got a 201 for a create it had not seen confirmed).
    async fn hold(&self) -> Result<()>;
    /// Ends this process's hold: it has nothing in hand.
    async fn release(&self) -> Result<()>;
}

/// A command the store refuses for good, and why (for an operator; no client text).
#[derive(Debug, Clone)]
pub struct Refused {
    pub command: Queued,
    pub reason: String,
}

/// What a request with an `Idempotency-Key` meets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now held by this request.
    Claimed,
    /// The key was used before; here is what it answered.
    Done(IdempotencyRecord),
    /// A request with this key is being served right now.
    InFlight,
}

/// Coordinates idempotent creates: one request per key at a time, and the first answer
/// kept for a repeat.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync + 'static {
    async fn claim(&self, scope: &str, key: &str) -> Result<Claim>;

    /// The request holding the key has been answered with this durable record.
    async fn complete(&self, record: &IdempotencyRecord) -> Result<()>;

    /// The request holding the key failed; a repeat may try again.
    async fn release(&self, scope: &str, key: &str);

    /// Forgets every answer kept for creates at or under `path` (an erased application, a
    /// deleted chat or message: the answers hold their text), outside the store, which
    /// erases its own copies with them.
    async fn forget_under(&self, path: &str) -> Result<()>;
}

/// A store's record of which messages each batch changed, for a search index that commits
/// less often than the store and must catch up after a crash.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// Messages written by batches after `rev`, oldest batch first, at most `limit`, after
    /// the position `after` (the last one returned by the previous call).
    async fn changes_since(
        &self,
        rev: u64,
        after: Option<&(u64, ChangedMessage)>,
        limit: u32,
    ) -> Result<Vec<(u64, ChangedMessage)>>;

    /// Chats and applications erased after batch `rev`, each with its batch (an
    /// application's erasure takes one too), oldest first.
    async fn erasures_since(&self, rev: u64) -> Result<Vec<(u64, Erasure)>>;
}

/// Where a page of search hits ends: a hit's rank and number.
///
/// Relevance depends only on the query and the message (never on other messages, chats or
/// applications, so pages stay put while others write): every hit holds every term, and
/// the terms make up the larger share of a shorter body, so the shorter body ranks first
/// (relevance = the terms' length / the body's length, in characters); identical bodies
/// tie, and ties go to the higher number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchPosition {
    /// The body's length in characters: lower ranks first.
    pub length: u64,
    pub number: MessageNumber,
}

impl SearchPosition {
    /// The order of hits, as one key: greater comes first.
    pub fn key(&self) -> (u64, u64) {
        (u64::MAX - self.length, self.number.get())
    }
}

/// A message that matched, by relevance.
pub type SearchHit = SearchPosition;

/// Exact substring search per chat (see [`crate::search::SearchQuery`]).
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    async fn ping(&self) -> Result<()>;

    /// Makes these bodies the searchable text of their messages, replacing earlier ones (a
    /// message without a body is removed), and forgets what `erased` names. `rev` is the
    /// batch's [`BatchOutcome::rev`].
    async fn index(&self, changed: &[ChangedMessage], erased: &[Erasure], rev: u64) -> Result<()>;

    /// An index that keeps versions (and ignores a body older than the one it holds) takes
    /// every create and edit of a batch, so that a redelivered batch is indexed again even
    /// though the store found nothing new in it. Others take what the store changed.
    fn keeps_versions(&self) -> bool {
        false
    }

    /// Messages of this one chat whose body holds every term, most relevant first (see
    /// [`SearchPosition`]), strictly after `after`, at most `limit`.
    async fn search(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: &SearchQuery,
        after: Option<SearchPosition>,
        limit: u32,
    ) -> Result<Vec<SearchHit>>;
}

/// News every API process must hear at once: a chat that moved to a new position (its live
/// subscribers have changes to read), an application that was erased (its token must stop
/// resolving). Delivery is best effort: a lost item costs latency, never an event (the
/// store stays the truth; subscribed chats are re-read every second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum News {
    Advanced { app: AppId, chat: ChatNumber, position: Position },
    Erased { app: AppId },
}

/// Called with every item of news heard, in order, from one task.
pub type Listener = std::sync::Arc<dyn Fn(News) + Send + Sync>;

/// Where news is announced: one subscription per process, not per client.
#[async_trait]
pub trait Bulletin: Send + Sync + 'static {
    async fn publish(&self, news: &[News]) -> Result<()>;

    /// From now on, hands every item published by any process (this one too) to `listener`.
    fn subscribe(&self, listener: Listener);
}

/// A request rate per application: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// The rate limit of application tokens (`CHATSYS_RATE_LIMIT`): in this process (embedded
/// mode) or shared by every server (distributed mode).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request from `app`'s allowance: `None` when it may go on, else how long to
    /// wait before the next one would be allowed.
    async fn take(&self, app: AppId) -> Result<Option<std::time::Duration>>;

    fn rate(&self) -> Rate;
}
