//! Counters in this process (embedded mode), under the floor-and-void rules of
//! [`crate::floor`]. Seeding is always safe here: a create is answered only after its row is
//! committed, so the store's highest number is at least every number ever answered.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatsys_core::ports::{ChatSeed, Store};
use chatsys_core::{AppId, ChatNumber, MessageNumber, Result};

use crate::floor::{ChatOp, Counters, FloorNumbering, Step};

/// The numbering service of embedded mode.
pub type InProcessNumbering = FloorNumbering<InProcessCounters>;

impl InProcessNumbering {
    pub fn in_process(store: Arc<dyn Store>) -> Self {
        FloorNumbering::new(InProcessCounters::default(), store)
    }
}

#[derive(Default)]
pub struct InProcessCounters {
    apps: Mutex<HashMap<AppId, Counter>>,
    chats: Mutex<HashMap<(AppId, ChatNumber), ChatCounters>>,
}

#[derive(Default)]
struct Counter {
    floor: u64,
    last: u64,
    voids: HashSet<u64>,
}

impl Counter {
    fn seeded(highest: u64) -> Self {
        Self { floor: highest, last: highest, voids: HashSet::new() }
    }

    /// Handed out and not voided.
    fn holds(&self, n: u64) -> bool {
        n <= self.last && !self.voids.contains(&n)
    }
}

struct ChatCounters {
    messages: Counter,
    version: u64,
}

#[async_trait]
impl Counters for InProcessCounters {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn guard_seed(&self) -> Result<()> {
        Ok(())
    }

    async fn next_chat(&self, app: AppId) -> Result<Option<u64>> {
        Ok(self.apps.lock().expect("poisoned").get_mut(&app).map(|c| {
            c.last += 1;
            c.last
        }))
    }

    async fn seed_app(&self, app: AppId, highest: u64) -> Result<()> {
        self.apps.lock().expect("poisoned").entry(app).or_insert_with(|| Counter::seeded(highest));
        Ok(())
    }

    async fn app_floor(&self, app: AppId) -> Result<u64> {
        Ok(self.apps.lock().expect("poisoned").get(&app).map_or(0, |c| c.floor))
    }

    async fn chat_step(&self, app: AppId, chat: ChatNumber, op: ChatOp) -> Result<Step> {
        {
            let apps = self.apps.lock().expect("poisoned");
            let Some(chats) = apps.get(&app) else { return Ok(Step::AppNotSeeded) };
            if !chats.holds(chat.get()) {
                return Ok(Step::NoSuchChat);
            }
        }
        let mut all = self.chats.lock().expect("poisoned");
        let Some(counters) = all.get_mut(&(app, chat)) else { return Ok(Step::ChatNotSeeded) };
        Ok(match op {
            ChatOp::Peek => Step::ChatExists,
            ChatOp::NextMessage => {
                counters.messages.last += 1;
                Step::Message(counters.messages.last)
            }
            ChatOp::NextVersion(number) if counters.messages.holds(number.get()) => {
                counters.version += 1;
                Step::Version { version: counters.version, floor: counters.messages.floor }
            }
            ChatOp::NextVersion(_) => Step::NoSuchMessage,
        })
    }

    async fn seed_chat(&self, app: AppId, chat: ChatNumber, seed: ChatSeed) -> Result<()> {
        self.chats.lock().expect("poisoned").entry((app, chat)).or_insert_with(|| ChatCounters {
            messages: Counter::seeded(seed.highest_message),
            version: seed.highest_version.get(),
        });
        Ok(())
    }

    async fn void_chat(&self, app: AppId, chat: ChatNumber) -> Result<()> {
        if let Some(c) = self.apps.lock().expect("poisoned").get_mut(&app) {
            c.voids.insert(chat.get());
        }
        Ok(())
    }

    async fn forget_app(&self, app: AppId) -> Result<()> {
        self.apps.lock().expect("poisoned").remove(&app);
        self.chats.lock().expect("poisoned").retain(|(a, _), _| *a != app);
        Ok(())
    }

    async fn void_message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<()> {
        if let Some(c) = self.chats.lock().expect("poisoned").get_mut(&(app, chat)) {
            c.messages.voids.insert(number.get());
        }
        Ok(())
    }
}
