//! Where a number or a version is allocated: the one numbering algorithm, over the counters
//! of a backend ([`Counters`]: in this process, or in Redis).
//!
//! A counter is seeded once, at its first use, from the highest number the store holds (its
//! *floor*), and only while the backend says seeding is safe (Redis: no data loss under
//! way). Every number a client was ever given is at or below the floor by then: embedded, a
//! create is answered only after its commit; distributed, after a data loss the counters
//! re-seed only once the queue has drained and no worker holds a command it took.
//!
//! - A chat exists iff it is at most the application's counter and not voided (a failed
//!   create, or a delete), and, at or below the floor, its row is stored and live.
//! - A message exists iff its chat exists, it is at most the chat's counter and not voided,
//!   and, at or below the chat's floor, its row is stored and live.
//! - Versions (the order of edits and deletes) count per chat, seeded from the highest
//!   version stored, so an edit accepted later always carries a higher version.
//!
//! Voids need not survive the counters: at or below the floor the store decides (a voided
//! create was never written, a deleted item is a tombstone).

use std::sync::Arc;

use async_trait::async_trait;
use chatsys_core::ports::{ChatSeed, Numbering, Store};
use chatsys_core::{AppId, ChatNumber, Error, MessageNumber, Result, Version};

/// What one atomic step on a chat's counters does once the chat is known to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatOp {
    /// Nothing: only asks whether the chat exists.
    Peek,
    NextMessage,
    /// The next version, if this message was handed out and not voided.
    NextVersion(MessageNumber),
}

/// The answer of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The application's chat counter is not seeded.
    AppNotSeeded,
    /// The chat's counters are not seeded (whether the chat exists is for the store to say).
    ChatNotSeeded,
    NoSuchChat,
    /// `Peek`: the chat exists.
    ChatExists,
    Message(u64),
    /// `NextVersion`: a version, and the chat's message floor.
    Version {
        version: u64,
        floor: u64,
    },
    /// `NextVersion`: the message was never handed out, or was voided.
    NoSuchMessage,
}

/// A backend's counters: each method is one atomic step.
#[async_trait]
pub trait Counters: Send + Sync + 'static {
    async fn ping(&self) -> Result<()>;
    /// `Ok` when counters may be seeded from the store now; else an `Unavailable` error.
    async fn guard_seed(&self) -> Result<()>;
    /// The application's next chat number; `None` when its counter is not seeded.
    async fn next_chat(&self, app: AppId) -> Result<Option<u64>>;
    /// Seeds the application's counter and floor with `highest`, unless already seeded.
    async fn seed_app(&self, app: AppId, highest: u64) -> Result<()>;
    /// The application's floor (0 when not seeded).
    async fn app_floor(&self, app: AppId) -> Result<u64>;
    /// Checks that the chat was handed out and not voided and that its counters are seeded,
    /// then does `op`.
    async fn chat_step(&self, app: AppId, chat: ChatNumber, op: ChatOp) -> Result<Step>;
    /// Seeds the chat's message counter, floor and version counter, unless already seeded.
    async fn seed_chat(&self, app: AppId, chat: ChatNumber, seed: ChatSeed) -> Result<()>;
    async fn void_chat(&self, app: AppId, chat: ChatNumber) -> Result<()>;
    async fn void_message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<()>;
    /// Removes every counter of the application.
    async fn forget_app(&self, app: AppId) -> Result<()>;
}

/// The numbering service: the floor-and-void rules over some [`Counters`].
pub struct FloorNumbering<C> {
    counters: C,
    store: Arc<dyn Store>,
}

impl<C: Counters> FloorNumbering<C> {
    pub fn new(counters: C, store: Arc<dyn Store>) -> Self {
        Self { counters, store }
    }

    pub fn counters(&self) -> &C {
        &self.counters
    }

    async fn seed_app(&self, app: AppId) -> Result<()> {
        self.counters.guard_seed().await?;
        metrics::counter!("chatsys_counter_seeds_total", "kind" => "chat").increment(1);
        // an application erased meanwhile (a server that has not heard yet) gets no counters
        let highest = self
            .store
            .highest_chat_number(app)
            .await?
            .ok_or_else(|| Error::not_found("no application has this token"))?;
        self.counters.seed_app(app, highest).await
    }

    /// Seeds the chat's counters if the chat exists; false when it does not.
    async fn seed_chat(&self, app: AppId, chat: ChatNumber) -> Result<bool> {
        self.counters.guard_seed().await?;
        let floor = self.counters.app_floor(app).await?;
        let seed = match self.store.chat_seed(app, chat).await? {
            Some(seed) => seed,
            // at or below the floor, a chat exists only if it is stored (and live)
            None if chat.get() <= floor => return Ok(false),
            // handed out since the counters were seeded, not written yet
            None => ChatSeed::default(),
        };
        metrics::counter!("chatsys_counter_seeds_total", "kind" => "message").increment(1);
        self.counters.seed_chat(app, chat, seed).await?;
        Ok(true)
    }

    /// Runs one step, seeding what it needs first.
    async fn step(&self, app: AppId, chat: ChatNumber, op: ChatOp) -> Result<Step> {
        for _ in 0..4 {
            match self.counters.chat_step(app, chat, op).await? {
                Step::AppNotSeeded => self.seed_app(app).await?,
                Step::ChatNotSeeded => {
                    if !self.seed_chat(app, chat).await? {
                        return Ok(Step::NoSuchChat);
                    }
                }
                step => return Ok(step),
            }
        }
        Err(Error::internal("counters kept disappearing while being seeded"))
    }
}

fn exhausted() -> Error {
    Error::unavailable("number space exhausted")
}

#[async_trait]
impl<C: Counters> Numbering for FloorNumbering<C> {
    async fn ping(&self) -> Result<()> {
        self.counters.ping().await
    }

    async fn next_chat(&self, app: AppId) -> Result<ChatNumber> {
        for _ in 0..4 {
            match self.counters.next_chat(app).await? {
                Some(n) => return ChatNumber::new(n).map_err(|_| exhausted()),
                None => self.seed_app(app).await?,
            }
        }
        Err(Error::internal("the chat counter kept disappearing while being seeded"))
    }

    async fn next_message(&self, app: AppId, chat: ChatNumber) -> Result<Option<MessageNumber>> {
        match self.step(app, chat, ChatOp::NextMessage).await? {
            Step::Message(n) => Ok(Some(MessageNumber::new(n).map_err(|_| exhausted())?)),
            Step::NoSuchChat => Ok(None),
            step => Err(Error::internal(format!("unexpected counter step {step:?}"))),
        }
    }

    async fn chat_exists(&self, app: AppId, chat: ChatNumber) -> Result<bool> {
        match self.step(app, chat, ChatOp::Peek).await? {
            Step::ChatExists => Ok(true),
            Step::NoSuchChat => Ok(false),
            step => Err(Error::internal(format!("unexpected counter step {step:?}"))),
        }
    }

    async fn next_version(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Version>> {
        match self.step(app, chat, ChatOp::NextVersion(number)).await? {
            Step::Version { version, floor } => {
                // at or below the floor, the store says whether it exists (a version spent on
                // a message that does not is harmless: versions only need to increase)
                if number.get() <= floor && self.store.message(app, chat, number).await?.is_none() {
                    return Ok(None);
                }
                Ok(Some(Version(version)))
            }
            Step::NoSuchChat | Step::NoSuchMessage => Ok(None),
            step => Err(Error::internal(format!("unexpected counter step {step:?}"))),
        }
    }

    async fn forget_application(&self, app: AppId) -> Result<()> {
        self.counters.forget_app(app).await
    }

    async fn void_chat(&self, app: AppId, chat: ChatNumber) -> Result<()> {
        self.counters.void_chat(app, chat).await
    }

    async fn void_message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<()> {
        self.counters.void_message(app, chat, number).await
    }
}
