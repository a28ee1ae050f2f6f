//! After a Redis data loss (the sentinel key gone while the store holds data), the wait
//! before counters may re-seed from the store: one process, holding a lock it renews, waits
//! until the queue has had no ready message and no process a hold ([`crate::holds`]: a
//! worker's deliveries not yet written, an API server's commands not yet confirmed or a
//! failed create's tombstone not yet queued) for the settle time, so that every
//! acknowledged create, edit and delete is in the store; then it writes the sentinel back.

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::{CreateQueue, Store};
use chatsys_core::{Error, Result};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands as _, Script};

use crate::holds::live_holds;
use crate::redis::{RedisNumberingConfig, redis_error};

/// Waits for the queue to drain and every process's hold to end, then writes the sentinel,
/// holding the recovery lock; a process that does not get the lock waits for the sentinel
/// instead, for as long as the lock stands.
pub(crate) async fn recover(
    mut redis: ConnectionManager,
    config: RedisNumberingConfig,
    store: Arc<dyn Store>,
    queue: Arc<dyn CreateQueue>,
) -> Result<()> {
    let sentinel = format!("{}:sentinel", config.prefix);
    let lock = RecoveryLock::new(&config.prefix);
    if !lock.take(&mut redis).await? {
        // the leader renews its lock while it recovers: a lock gone without the sentinel
        // means the leader failed or died, and the next create starts the recovery over
        loop {
            if redis.exists(&sentinel).await.map_err(redis_error)? {
                return Ok(());
            }
            if !redis.exists(&lock.key).await.map_err(redis_error)? {
                return Err(Error::unavailable("the recovery of the counters stopped; the next create starts it over"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let recovered = drain_then_mark(&mut redis, &config, &lock, &sentinel, store, queue).await;
    // released either way: after a failure (the broker or the store away from this process)
    // another process, or the next create here, leads at once
    let released = lock.release(&mut redis).await;
    let fresh = recovered?;
    released?;
    tracing::info!(fresh, "counters initialised; they seed from the store as they are used");
    Ok(())
}

/// The leader's part of [`recover`]; whether the store was empty (a first start).
async fn drain_then_mark(
    redis: &mut ConnectionManager,
    config: &RedisNumberingConfig,
    lock: &RecoveryLock,
    sentinel: &str,
    store: Arc<dyn Store>,
    queue: Arc<dyn CreateQueue>,
) -> Result<bool> {
    // A store with no application at all is a first start: nothing can be in flight.
    let fresh = store.list_applications(None, 1).await?.is_empty() && queue.backlog().await? == 0;
    if !fresh {
        tracing::warn!("redis holds no counter sentinel while the store holds data: waiting for the queue to drain");
        metrics::counter!("chatsys_counter_recoveries_total").increment(1);
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            lock.renew(redis).await?;
            // commands waiting in the queue, taken by a worker that has not written them, or
            // sent by an API server and not confirmed (a hold lost with the data is back at
            // its process's next renewal)
            if queue.backlog().await? > 0 || live_holds(redis, &config.prefix).await? > 0 {
                quiet_since = tokio::time::Instant::now();
            } else if quiet_since.elapsed() >= config.drain_settle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _: () = redis.set(sentinel, chatsys_core::Timestamp::now().as_micros()).await.map_err(redis_error)?;
    Ok(fresh)
}

/// The lock one process holds while it leads the recovery; it lapses unless renewed, so a
/// leader that died holds up the others for a moment only.
struct RecoveryLock {
    key: String,
    me: String,
    renew: Script,
    release: Script,
}

/// How long the recovery lock lasts unless its leader renews it (every 100 ms).
const RECOVERY_LOCK_LIFE: Duration = Duration::from_secs(5);

impl RecoveryLock {
    fn new(prefix: &str) -> Self {
        Self {
            key: format!("{prefix}:recovery_lock"),
            me: format!("{}-{}", std::process::id(), chatsys_core::Timestamp::now().as_micros()),
            renew: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
                 return 0",
            ),
            release: Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end"),
        }
    }

    async fn take(&self, redis: &mut ConnectionManager) -> Result<bool> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&self.key)
            .arg(&self.me)
            .arg("NX")
            .arg("PX")
            .arg(RECOVERY_LOCK_LIFE.as_millis() as u64)
            .query_async(redis)
            .await
            .map_err(redis_error)?;
        Ok(taken.is_some())
    }

    /// Fails once the lock is no longer this process's (it lapsed during a stall).
    async fn renew(&self, redis: &mut ConnectionManager) -> Result<()> {
        let renewed: i64 = self
            .renew
            .key(&self.key)
            .arg(&self.me)
            .arg(RECOVERY_LOCK_LIFE.as_millis() as u64)
            .invoke_async(redis)
            .await
            .map_err(redis_error)?;
        if renewed == 1 { Ok(()) } else { Err(Error::unavailable("the recovery lock of the counters was lost")) }
    }

    async fn release(&self, redis: &mut ConnectionManager) -> Result<()> {
        let _: () = self.release.key(&self.key).arg(&self.me).invoke_async(redis).await.map_err(redis_error)?;
        Ok(())
    }
}
