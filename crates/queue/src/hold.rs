//! A process's hold ([`Holds`]) on commands that carry numbers and are not yet where the
//! numbering service's recovery looks (the queue's ready count, or the store): a worker's
//! deliveries it has not settled, an API server's commands waiting for the broker's
//! confirm and failed creates waiting for their tombstone to be queued. After a Redis data
//! loss the counters wait for every hold before they re-seed (`crates/counters/src/holds.rs`
//! keeps the holds).

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::Holds;
use tokio::sync::watch;

/// How often a busy process renews its hold: a hold lost with Redis's data is back within
/// this, and the counters' recovery settles for longer (`CHATSYS_REDIS_RECOVERY_SETTLE`).
const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long a process waits for more before it releases its hold.
const RELEASE_WHEN_IDLE: Duration = Duration::from_millis(100);

/// This process's hold ([`Holds`]) on commands it has in hand.
pub struct Hold {
    holds: Arc<dyn Holds>,
    /// When it was last claimed (or renewed); `None` once released.
    claimed_at: Option<tokio::time::Instant>,
}

impl Hold {
    pub fn new(holds: Arc<dyn Holds>) -> Self {
        Self { holds, claimed_at: None }
    }

    /// Whether a hold may stand in Redis (claimed, not released since).
    pub fn is_held(&self) -> bool {
        self.claimed_at.is_some()
    }

    /// Runs `work` (a batch until settled, say) under the hold: claimed at once unless
    /// claimed a moment ago, then renewed every [`RENEW_EVERY`] (a store or an Elasticsearch
    /// that is away can hold a batch for minutes; the counters' recovery waits as long).
    /// Between two works the hold stands until [`Hold::release_when_idle`] ends it.
    ///
    /// A renewal that fails is logged and tried again: this process cannot reach Redis. If
    /// other API servers can, and Redis lost its data, they may re-seed without this hold.
    pub async fn during<T>(&mut self, work: impl Future<Output = T>) -> T {
        let holds = self.holds.clone();
        let claimed_at = &mut self.claimed_at;
        let renew = async move {
            let mut due = claimed_at.map_or_else(tokio::time::Instant::now, |at| at + RENEW_EVERY);
            let mut failing = false;
            loop {
                tokio::time::sleep_until(due).await;
                match holds.hold().await {
                    Ok(()) => {
                        *claimed_at = Some(tokio::time::Instant::now());
                        failing = false;
                    }
                    // once per streak of failures, not four times a second
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "hold not renewed: redis unreachable from this process");
                    }
                    Err(_) => {}
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

    /// Releases the hold after [`RELEASE_WHEN_IDLE`]; the next work claims it again at once.
    pub async fn release_when_idle(&mut self) {
        tokio::time::sleep(RELEASE_WHEN_IDLE).await;
        self.claimed_at = None;
        if let Err(e) = self.holds.release().await {
            tracing::debug!(error = %e, "hold not released; it lapses");
        }
    }
}

/// A count of things in hand (an API server's commands on their way to the broker, failed
/// creates waiting for their tombstone) that [`hold_while_any`] covers with a hold.
#[derive(Clone, Default)]
pub struct InHand(Arc<watch::Sender<usize>>);

impl InHand {
    /// Counts one more thing in hand until the guard is dropped.
    pub fn count(&self) -> Counted {
        // receivers hear only when the count leaves or reaches zero
        self.0.send_if_modified(|n| {
            *n += 1;
            *n == 1
        });
        Counted(self.0.clone())
    }

    pub fn watch(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

/// One thing in an [`InHand`] count.
pub struct Counted(Arc<watch::Sender<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_if_modified(|n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// Holds while the count is above zero, and releases once it has stayed at zero for a
/// moment; ends when the count ends.
pub async fn hold_while_any(mut count: watch::Receiver<usize>, holds: Arc<dyn Holds>) {
    let mut hold = Hold::new(holds);
    while count.wait_for(|n| *n > 0).await.is_ok() {
        let _ = hold.during(count.wait_for(|n| *n == 0)).await;
        tokio::select! {
            () = hold.release_when_idle() => {}
            _ = count.wait_for(|n| *n > 0) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use chatsys_core::{Error, Result};
    use tokio::time::{Instant, sleep};

    use super::*;

    /// Records when each call came, in the paused clock's milliseconds since `start`.
    struct Recorded {
        start: Instant,
        calls: Mutex<Vec<(&'static str, u128)>>,
        failing: bool,
    }

    impl Recorded {
        fn new(failing: bool) -> Arc<Self> {
            Arc::new(Self { start: Instant::now(), calls: Mutex::default(), failing })
        }

        fn record(&self, what: &'static str) -> Result<()> {
            self.calls.lock().unwrap().push((what, self.start.elapsed().as_millis()));
            if self.failing { Err(Error::unavailable("redis is unavailable")) } else { Ok(()) }
        }

        fn calls(&self) -> Vec<(&'static str, u128)> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Holds for Recorded {
        async fn hold(&self) -> Result<()> {
            self.record("hold")
        }

        async fn release(&self) -> Result<()> {
            self.record("release")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_worker_renews_its_hold_and_releases_it_once_idle() {
        let redis = Recorded::new(false);
        let mut hold = Hold::new(redis.clone());
        assert!(!hold.is_held());
        // a batch that takes 600 ms: claimed at once, renewed at 250 and 500
        assert_eq!(
            hold.during(async {
                sleep(Duration::from_millis(600)).await;
                7
            })
            .await,
            7
        );
        // the next batch comes at once: the claim of 500 ms stands, renewed at 750
        hold.during(sleep(Duration::from_millis(200))).await;
        assert!(hold.is_held());
        hold.release_when_idle().await;
        assert!(!hold.is_held());
        // after a release the next batch claims again at once
        hold.during(sleep(Duration::from_millis(10))).await;
        assert_eq!(
            redis.calls(),
            [("hold", 0), ("hold", 250), ("hold", 500), ("hold", 750), ("release", 900), ("hold", 900)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_cannot_reach_redis_still_settles_its_batches() {
        let redis = Recorded::new(true);
        let mut hold = Hold::new(redis.clone());
        assert_eq!(
            hold.during(async {
                sleep(Duration::from_millis(300)).await;
                "done"
            })
            .await,
            "done"
        );
        assert!(!hold.is_held(), "never claimed: nothing to release");
        assert_eq!(redis.calls(), [("hold", 0), ("hold", 250)], "tried again on schedule");
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_is_held_while_above_zero_and_released_once_it_stays_at_zero() {
        let redis = Recorded::new(false);
        let in_hand = InHand::default();
        let holding = tokio::spawn(hold_while_any(in_hand.watch(), redis.clone()));
        sleep(Duration::from_millis(100)).await;
        // two in hand from 100 ms: claimed at once; one left at 300, none at 400, renewed at 350
        let (first, second) = (in_hand.count(), in_hand.count());
        sleep(Duration::from_millis(200)).await;
        drop(first);
        sleep(Duration::from_millis(100)).await;
        drop(second);
        // back within the moment (at 450): the hold stands, renewed on schedule at 600
        sleep(Duration::from_millis(50)).await;
        let again = in_hand.count();
        sleep(Duration::from_millis(250)).await;
        drop(again);
        // none from 700: released at 800
        sleep(Duration::from_millis(500)).await;
        assert_eq!(redis.calls(), [("hold", 100), ("hold", 350), ("hold", 600), ("release", 800)]);
        drop(in_hand);
        tokio::time::timeout(Duration::from_secs(1), holding).await.expect("ends with its count").unwrap();
    }
}
