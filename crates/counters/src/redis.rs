//! Redis counters for distributed mode, under the floor-and-void rules of
//! [`crate::floor`]: every API server allocates from the same counters, with one Lua script
//! per step (check the parent, then `INCR`, in one round trip).
//!
//! A counter is never incremented while missing: a missing counter is seeded from the store
//! with `SET NX`, and only while the sentinel key says Redis has not lost data since the
//! counters were initialised. When the sentinel is gone, creates answer 503 while
//! [`crate::recovery`] waits until every acknowledged command is in the store, then writes
//! the sentinel back; counters then re-seed lazily from the store, versions included.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{ChatSeed, CreateQueue, Store};
use chatsys_core::{AppId, ChatNumber, Error, MessageNumber, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{AsyncCommands as _, IntoConnectionInfo as _, Script};

use crate::floor::{ChatOp, Counters, FloorNumbering, Step};
use crate::recovery::recover;

/// How long Redis may take to answer a command, and to accept a connection: a Redis that
/// stops answering (a stopped process, a black-holed port) costs a request at most this.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects with `TCP_NODELAY` (a request-response protocol must not wait for Nagle) and
/// bounded waits.
pub async fn connect(url: &str) -> Result<ConnectionManager> {
    let info = url
        .into_connection_info()
        .map_err(|e| Error::invalid("CHATSYS_REDIS_URL is not a valid redis:// URL").with_source(e))?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let client = redis::Client::open(info).map_err(redis_error)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(2);
    let connect = client.get_connection_manager_with_config(config);
    match tokio::time::timeout(CONNECT_TIMEOUT * 3, connect).await {
        Ok(manager) => manager.map_err(redis_error),
        Err(_) => Err(Error::unavailable("redis did not answer in time")),
    }
}

pub(crate) fn redis_error(e: redis::RedisError) -> Error {
    Error::unavailable("redis is unavailable").with_source(e)
}

#[derive(Debug, Clone)]
pub struct RedisNumberingConfig {
    /// Prepended to every key (several deployments, or tests, can share one Redis).
    pub prefix: String,
    /// After a data loss: how long the queue must stay empty, and no process hold commands,
    /// before the counters re-seed. Longer than a process's renewal of its hold.
    pub drain_settle: Duration,
}

/// The numbering service of distributed mode.
pub type RedisNumbering = FloorNumbering<RedisCounters>;

pub struct RedisCounters {
    redis: ConnectionManager,
    config: RedisNumberingConfig,
    store: Arc<dyn Store>,
    queue: Arc<dyn CreateQueue>,
    next_chat: Script,
    chat_step: Script,
    seed_chat: Script,
    recovering: Arc<AtomicBool>,
}

impl RedisNumbering {
    pub fn redis(
        redis: ConnectionManager,
        config: RedisNumberingConfig,
        store: Arc<dyn Store>,
        queue: Arc<dyn CreateQueue>,
    ) -> Self {
        let counters = RedisCounters {
            redis,
            config,
            store: store.clone(),
            queue,
            next_chat: Script::new(include_str!("lua/next_chat.lua")),
            chat_step: Script::new(include_str!("lua/chat_step.lua")),
            seed_chat: Script::new(include_str!("lua/seed_chat.lua")),
            recovering: Arc::default(),
        };
        FloorNumbering::new(counters, store)
    }
}

impl RedisCounters {
    /// At start: writes the sentinel when Redis holds none (a fresh Redis, or one that lost
    /// its data), after the queue has drained. Returns once the counters may be used.
    pub async fn initialize(&self) -> Result<()> {
        if self.sentinel_present().await? {
            return Ok(());
        }
        recover(self.redis.clone(), self.config.clone(), self.store.clone(), self.queue.clone()).await
    }

    fn sentinel(&self) -> String {
        format!("{}:sentinel", self.config.prefix)
    }

    fn app_key(&self, app: AppId, what: &str) -> String {
        // the hash tag keeps an application's keys in one Redis Cluster slot
        format!("{}:{{a{}}}:{what}", self.config.prefix, app.0)
    }

    fn chat_key(&self, app: AppId, chat: ChatNumber, what: &str) -> String {
        self.app_key(app, &format!("c{chat}:{what}"))
    }

    async fn sentinel_present(&self) -> Result<bool> {
        self.redis.clone().exists(self.sentinel()).await.map_err(redis_error)
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.redis.clone()).await.map_err(redis_error)?;
        Ok(())
    }

    /// Seeding is safe only while the sentinel stands; otherwise recovery starts (once per
    /// process; the lock makes one process lead) and the caller answers 503.
    async fn guard_seed(&self) -> Result<()> {
        if self.sentinel_present().await? {
            return Ok(());
        }
        if !self.recovering.swap(true, Ordering::SeqCst) {
            let (redis, config, store, queue, flag) = (
                self.redis.clone(),
                self.config.clone(),
                self.store.clone(),
                self.queue.clone(),
                self.recovering.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = recover(redis, config, store, queue).await {
                    tracing::error!(error = %e, "counter recovery failed; the next create retries it");
                }
                flag.store(false, Ordering::SeqCst);
            });
        }
        Err(Error::unavailable("number allocation is recovering from a Redis data loss; retry shortly"))
    }

    async fn next_chat(&self, app: AppId) -> Result<Option<u64>> {
        let n: i64 = self
            .next_chat
            .key(self.app_key(app, "chats"))
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        Ok((n > 0).then_some(n as u64))
    }

    async fn seed_app(&self, app: AppId, highest: u64) -> Result<()> {
        let mut redis = self.redis.clone();
        // the floor first: whoever sees the counter also sees its floor
        let _: bool = redis.set_nx(self.app_key(app, "floor"), highest).await.map_err(redis_error)?;
        let _: bool = redis.set_nx(self.app_key(app, "chats"), highest).await.map_err(redis_error)?;
        Ok(())
    }

    async fn app_floor(&self, app: AppId) -> Result<u64> {
        let floor: Option<u64> = self.redis.clone().get(self.app_key(app, "floor")).await.map_err(redis_error)?;
        Ok(floor.unwrap_or(0))
    }

    async fn chat_step(&self, app: AppId, chat: ChatNumber, op: ChatOp) -> Result<Step> {
        let (name, message) = match op {
            ChatOp::Peek => ("peek", 0),
            ChatOp::NextMessage => ("next", 0),
            ChatOp::NextVersion(number) => ("version", number.get()),
        };
        let answer: (i64, i64, i64) = self
            .chat_step
            .key(self.app_key(app, "chats"))
            .key(self.app_key(app, "void_chats"))
            .key(self.chat_key(app, chat, "messages"))
            .key(self.chat_key(app, chat, "floor"))
            .key(self.chat_key(app, chat, "version"))
            .key(self.chat_key(app, chat, "void_messages"))
            .arg(chat.get().to_string())
            .arg(name)
            .arg(message.to_string())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        Ok(match (answer, op) {
            ((-1, ..), _) => Step::AppNotSeeded,
            ((-2, ..), _) => Step::ChatNotSeeded,
            ((0, ..), _) => Step::NoSuchChat,
            ((2, ..), _) => Step::NoSuchMessage,
            ((1, ..), ChatOp::Peek) => Step::ChatExists,
            ((1, n, _), ChatOp::NextMessage) => Step::Message(n as u64),
            ((1, v, floor), ChatOp::NextVersion(_)) => Step::Version { version: v as u64, floor: floor as u64 },
            ((kind, ..), _) => return Err(Error::internal(format!("unexpected counter script answer {kind}"))),
        })
    }

    async fn seed_chat(&self, app: AppId, chat: ChatNumber, seed: ChatSeed) -> Result<()> {
        let _: i64 = self
            .seed_chat
            .key(self.chat_key(app, chat, "messages"))
            .key(self.chat_key(app, chat, "floor"))
            .key(self.chat_key(app, chat, "version"))
            .arg(seed.highest_message)
            .arg(seed.highest_version.get())
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn void_chat(&self, app: AppId, chat: ChatNumber) -> Result<()> {
        let _: () = self.redis.clone().sadd(self.app_key(app, "void_chats"), chat.get()).await.map_err(redis_error)?;
        Ok(())
    }

    async fn forget_app(&self, app: AppId) -> Result<()> {
        let mut redis = self.redis.clone();
        let pattern = self.app_key(app, "*");
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut redis)
                .await
                .map_err(redis_error)?;
            if !keys.is_empty() {
                let _: () = redis.del(keys).await.map_err(redis_error)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn void_message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<()> {
        let _: () = self
            .redis
            .clone()
            .sadd(self.chat_key(app, chat, "void_messages"), number.get())
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}
