//! A worker's hold ([`Holds`]) on the commands it took from the queue and has not settled:
//! what lets the numbering service, after a Redis data loss, wait for commands the broker
//! no longer counts as waiting (`crates/counters/src/holds.rs` keeps the holds).

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::Holds;

/// How long a hold lasts between renewals while its worker is busy. Counters lost with Redis
/// re-seed only after a settle time that must be longer (`CHATSYS_REDIS_RECOVERY_SETTLE`).
const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long a worker waits for more before it releases its hold.
const RELEASE_WHEN_IDLE: Duration = Duration::from_millis(100);

/// This worker's hold ([`Holds`]) on commands it took and has not settled.
pub(crate) struct Hold {
    holds: Arc<dyn Holds>,
    /// When it was last claimed or renewed; `None` once released.
    renewed: Option<tokio::time::Instant>,
}

impl Hold {
    pub(crate) fn new(holds: Arc<dyn Holds>) -> Self {
        Self { holds, renewed: None }
    }

    /// Whether a hold may stand in Redis (claimed or renewed, not released since).
    pub(crate) fn is_held(&self) -> bool {
        self.renewed.is_some()
    }

    /// Runs `work` (writing a batch) under the hold: claimed at once unless renewed a moment
    /// ago, then renewed every [`RENEW_EVERY`] (a store that is away can hold a batch for
    /// minutes). Once `work` ends the hold stands until released or lapsed, which covers
    /// returning the deliveries of a batch that failed to the queue. A renewal that fails is logged: Redis is away too, and the recovery
    /// that needs the hold cannot run without it either.
    pub(crate) async fn during<T>(&mut self, work: impl Future<Output = T>) -> T {
        let holds = self.holds.clone();
        let renewed = &mut self.renewed;
        let renew = async move {
            let mut due = renewed.map_or_else(tokio::time::Instant::now, |at| at + RENEW_EVERY);
            loop {
                tokio::time::sleep_until(due).await;
                match holds.hold().await {
                    Ok(()) => *renewed = Some(tokio::time::Instant::now()),
                    Err(e) => tracing::debug!(error = %e, "hold on the batch not renewed"),
                }
                due = tokio::time::Instant::now() + RENEW_EVERY;
            }
        };
        tokio::select! {
            biased;
            out = work => out,
            () = renew => unreachable!("a hold is renewed until its work ends"),
        }
    }

    /// Releases the hold after [`RELEASE_WHEN_IDLE`]; the next batch claims it again at once.
    pub(crate) async fn release_when_idle(&mut self) {
        tokio::time::sleep(RELEASE_WHEN_IDLE).await;
        self.renewed = None;
        if let Err(e) = self.holds.release().await {
            tracing::debug!(error = %e, "hold not released; it lapses");
        }
    }
}
