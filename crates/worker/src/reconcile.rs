//! The periodic recount of `chats_count` and `messages_count` from the rows: whatever went
//! wrong (a bug, a manual edit), the counts are never wrong for longer than one interval.

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::Store;

/// Reconciles every `interval`, the first time one interval after the start.
pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.reconcile().await {
            Ok(r) => tracing::info!(
                applications_fixed = r.applications_fixed,
                chats_fixed = r.chats_fixed,
                idempotency_records_expired = r.idempotency_records_expired,
                "counts reconciled"
            ),
            Err(e) => tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "reconcile failed"),
        }
    }
}
