//! Gathers deliveries into a batch: up to a number of commands, or until a short delay has
//! passed since the first one arrived, whichever comes first. Under load, commands pile up
//! while the previous batch commits, so batches fill by themselves.

use std::time::Duration;

use chatsys_core::ports::{CommandSource, Delivery};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// The most commands one batch (one transaction) holds.
    pub max_commands: usize,
    /// How long to wait for more commands once the first one is in.
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_commands: 1000, linger: Duration::from_micros(500) }
    }
}

/// The next batch, or `None` once the source is closed and drained.
pub async fn next_batch(source: &mut dyn CommandSource, config: BatchConfig) -> Option<Vec<Delivery>> {
    let first = source.next().await?;
    let mut commands = first.commands.len();
    let mut batch = vec![first];
    let deadline = Instant::now() + config.linger;
    while commands < config.max_commands {
        // `timeout_at` polls the source before looking at the clock, so whatever is already
        // waiting is taken even once the deadline has passed.
        match tokio::time::timeout_at(deadline, source.next()).await {
            Ok(Some(delivery)) => {
                commands += delivery.commands.len();
                batch.push(delivery);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}
