//! Gathers items into a batch: up to a weight (commands), or until a short delay has passed
//! since the first one arrived, whichever comes first. Under load, items pile up while the
//! previous batch is written, so batches fill by themselves. The worker batches deliveries
//! into transactions with it; the RabbitMQ publisher batches creates into messages.

use std::future::Future;
use std::time::Duration;

use chatsys_core::ports::{CommandSource, Delivery};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// The most commands one batch holds.
    pub max_commands: usize,
    /// How long to wait for more once the first one is in.
    pub linger: Duration,
}

/// Where a batch's items come from.
pub trait Feed: Send {
    type Item: Send;
    /// The next item; `None` once the feed is closed and drained.
    fn next(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;
    /// How many commands an item holds.
    fn weight(item: &Self::Item) -> usize;
}

/// The next batch, or `None` once the feed is closed and drained.
pub async fn next_batch<F: Feed>(feed: &mut F, config: BatchConfig) -> Option<Vec<F::Item>> {
    let first = feed.next().await?;
    let mut weight = F::weight(&first);
    let mut batch = vec![first];
    let deadline = Instant::now() + config.linger;
    while weight < config.max_commands {
        // `timeout_at` polls the feed before looking at the clock, so whatever is already
        // waiting is taken even once the deadline has passed.
        match tokio::time::timeout_at(deadline, feed.next()).await {
            Ok(Some(item)) => {
                weight += F::weight(&item);
                batch.push(item);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Some(batch)
}

/// Deliveries of a command source, weighed by the commands they hold.
pub struct Deliveries<'a>(pub &'a mut dyn CommandSource);

impl Feed for Deliveries<'_> {
    type Item = Delivery;

    fn next(&mut self) -> impl Future<Output = Option<Delivery>> + Send {
        self.0.next()
    }

    fn weight(delivery: &Delivery) -> usize {
        delivery.commands.len()
    }
}

impl<T: Send> Feed for tokio::sync::mpsc::Receiver<T> {
    type Item = T;

    fn next(&mut self) -> impl Future<Output = Option<T>> + Send {
        self.recv()
    }

    fn weight(_: &T) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_ends_at_its_size_or_after_the_linger() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        let config = BatchConfig { max_commands: 3, linger: Duration::from_millis(20) };
        assert_eq!(next_batch(&mut rx, config).await, Some(vec![0, 1, 2]));
        let started = std::time::Instant::now();
        assert_eq!(next_batch(&mut rx, config).await, Some(vec![3, 4]));
        assert!(started.elapsed() >= Duration::from_millis(20), "waited for more");
        drop(tx);
        assert_eq!(next_batch(&mut rx, config).await, None);
    }
}
