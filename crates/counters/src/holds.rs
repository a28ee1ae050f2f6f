//! The holds of distributed mode's workers and API servers ([`Holds`]), in Redis beside the
//! counters: a sorted set of processes, each scored with the Redis time its hold lapses at.
//! The recovery after a data loss (`recovery.rs`) counts the live ones; a hold lost with the
//! data comes back at its process's next renewal, well within the recovery's settle time.

use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::Result;
use chatsys_core::ports::Holds;
use redis::Script;
use redis::aio::ConnectionManager;

use crate::redis::redis_error;

/// How long a hold lasts unless renewed.
pub const HOLD_LIFE: Duration = Duration::from_secs(3);

fn key(prefix: &str) -> String {
    format!("{prefix}:holds")
}

pub struct RedisHolds {
    redis: ConnectionManager,
    key: String,
    holder: String,
    hold: Script,
}

impl RedisHolds {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Self { redis, key: key(prefix), holder, hold: Script::new(include_str!("lua/hold.lua")) }
    }
}

#[async_trait]
impl Holds for RedisHolds {
    async fn hold(&self) -> Result<()> {
        let _: i64 = self
            .hold
            .key(&self.key)
            .arg(&self.holder)
            .arg(HOLD_LIFE.as_millis() as u64)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn release(&self) -> Result<()> {
        let _: i64 = redis::cmd("ZREM")
            .arg(&self.key)
            .arg(&self.holder)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}

/// How many processes of the deployment under `prefix` hold commands now.
pub(crate) async fn live_holds(redis: &mut ConnectionManager, prefix: &str) -> Result<u64> {
    static LIVE_HOLDS: std::sync::LazyLock<Script> =
        std::sync::LazyLock::new(|| Script::new(include_str!("lua/holds.lua")));
    LIVE_HOLDS.key(key(prefix)).invoke_async(redis).await.map_err(redis_error)
}
