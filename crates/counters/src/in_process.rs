//! Per-parent atomic counters in this process, seeded lazily from the store.
//!
//! A counter is seeded once, at its first use in this process, from the highest number the
//! store holds (its *floor*). That is exact in embedded mode because a create is answered
//! only after its row is committed: every number a client was ever given is at or below the
//! floor. Above the floor, a number exists once handed out, unless its create failed and it
//! was voided. At or below the floor, a chat exists iff its row is stored, which also keeps
//! numbers voided before a restart void.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatsys_core::ports::{Numbering, Store};
use chatsys_core::{AppId, ChatNumber, Error, MessageNumber, Result};
use tokio::sync::OnceCell;

pub struct InProcessNumbering {
    store: Arc<dyn Store>,
    /// Chat counters, per application.
    apps: Mutex<HashMap<AppId, Slot>>,
    /// Message counters, per chat.
    chats: Mutex<HashMap<(AppId, ChatNumber), Slot>>,
}

/// A counter that is seeded from the store on first use.
type Slot = Arc<OnceCell<Counter>>;

struct Counter {
    floor: u64,
    last: AtomicU64,
    voids: Mutex<HashSet<u64>>,
}

impl Counter {
    fn seeded(floor: u64) -> Self {
        Self { floor, last: AtomicU64::new(floor), voids: Mutex::default() }
    }

    fn next(&self) -> Result<u64> {
        let n = self.last.fetch_add(1, Ordering::SeqCst) + 1;
        if n > ChatNumber::MAX {
            return Err(Error::unavailable("number space exhausted"));
        }
        Ok(n)
    }

    /// Handed out in this process's lifetime and not voided.
    fn handed_out(&self, n: u64) -> bool {
        n > self.floor && n <= self.last.load(Ordering::SeqCst) && !self.voids.lock().expect("poisoned").contains(&n)
    }

    fn void(&self, n: u64) {
        self.voids.lock().expect("poisoned").insert(n);
    }
}

impl InProcessNumbering {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, apps: Mutex::default(), chats: Mutex::default() }
    }

    async fn app_counter(&self, app: AppId) -> Result<Slot> {
        let cell = self.apps.lock().expect("poisoned").entry(app).or_default().clone();
        cell.get_or_try_init(|| async {
            metrics::counter!("chatsys_counter_seeds_total", "kind" => "chat").increment(1);
            Ok::<_, Error>(Counter::seeded(self.store.highest_chat_number(app).await?))
        })
        .await?;
        Ok(cell)
    }

    /// The chat's message counter, seeded on first use; `None` when the chat does not exist.
    async fn chat_counter(&self, app: AppId, chat: ChatNumber) -> Result<Option<Slot>> {
        let apps = self.app_counter(app).await?;
        let chats = apps.get().expect("seeded above");
        if chat.get() > chats.last.load(Ordering::SeqCst) || chats.voids.lock().expect("poisoned").contains(&chat.get())
        {
            return Ok(None);
        }
        let cell = self.chats.lock().expect("poisoned").entry((app, chat)).or_default().clone();
        let seeded = cell
            .get_or_try_init(|| async {
                metrics::counter!("chatsys_counter_seeds_total", "kind" => "message").increment(1);
                match self.store.chat_seed(app, chat).await {
                    Ok(Some(highest)) => Ok(Counter::seeded(highest)),
                    Ok(None) if chats.handed_out(chat.get()) => Ok(Counter::seeded(0)),
                    Ok(None) => Err(Seed::NoSuchChat),
                    Err(e) => Err(Seed::Failed(e)),
                }
            })
            .await;
        match seeded {
            Ok(_) => Ok(Some(cell)),
            // The empty cell stays in the map: removing it could race with a seed under way
            // and leave two counters for one chat. Its number is at most the chat counter,
            // so the map stays bounded by the number of chats.
            Err(Seed::NoSuchChat) => Ok(None),
            Err(Seed::Failed(e)) => Err(e),
        }
    }
}

enum Seed {
    NoSuchChat,
    Failed(Error),
}

#[async_trait]
impl Numbering for InProcessNumbering {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn next_chat(&self, app: AppId) -> Result<ChatNumber> {
        let cell = self.app_counter(app).await?;
        let n = cell.get().expect("seeded").next()?;
        Ok(ChatNumber::new(n).expect("counter stays in range"))
    }

    async fn next_message(&self, app: AppId, chat: ChatNumber) -> Result<Option<MessageNumber>> {
        let Some(cell) = self.chat_counter(app, chat).await? else { return Ok(None) };
        let n = cell.get().expect("seeded").next()?;
        Ok(Some(MessageNumber::new(n).expect("counter stays in range")))
    }

    async fn chat_exists(&self, app: AppId, chat: ChatNumber) -> Result<bool> {
        Ok(self.chat_counter(app, chat).await?.is_some())
    }

    async fn message_exists(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<bool> {
        let Some(cell) = self.chat_counter(app, chat).await? else { return Ok(false) };
        let counter = cell.get().expect("seeded");
        Ok(counter.handed_out(number.get())
            || (number.get() <= counter.floor && self.store.message(app, chat, number).await?.is_some()))
    }

    async fn void_chat(&self, app: AppId, chat: ChatNumber) -> Result<()> {
        self.app_counter(app).await?.get().expect("seeded").void(chat.get());
        Ok(())
    }

    async fn void_message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<()> {
        if let Some(cell) = self.chat_counter(app, chat).await? {
            cell.get().expect("seeded").void(number.get());
        }
        Ok(())
    }
}
