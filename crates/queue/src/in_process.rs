//! A bounded in-process channel between the handlers and the embedded writer. A submit
//! returns when the writer has committed the batch holding the command (group commit).

use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{CommandSource, CreateQueue, Delivery, Durability, Receipt, Refused};
use chatsys_core::{Error, Queued, Result};
use tokio::sync::{mpsc, oneshot};

type Ack = oneshot::Sender<Result<()>>;

#[derive(Clone)]
pub struct InProcessQueue {
    tx: mpsc::Sender<(Queued, Ack)>,
    enqueue_timeout: Duration,
}

pub struct InProcessSource {
    rx: mpsc::Receiver<(Queued, Ack)>,
}

/// A queue holding at most `capacity` commands not yet taken by the writer. A submit that
/// finds it full waits up to `enqueue_timeout`, then fails as `Unavailable`.
pub fn channel(capacity: usize, enqueue_timeout: Duration) -> (InProcessQueue, InProcessSource) {
    let (tx, rx) = mpsc::channel(capacity);
    (InProcessQueue { tx, enqueue_timeout }, InProcessSource { rx })
}

#[async_trait]
impl CreateQueue for InProcessQueue {
    async fn ping(&self) -> Result<()> {
        if self.tx.is_closed() {
            return Err(Error::unavailable("the embedded writer has stopped"));
        }
        Ok(())
    }

    async fn submit(&self, command: Queued) -> Result<()> {
        let in_flight = metrics::gauge!("chatsys_queue_in_flight");
        in_flight.increment(1);
        let result = self.hand_over(command).await;
        in_flight.decrement(1);
        result
    }

    fn durability(&self) -> Durability {
        Durability::Stored
    }

    async fn backlog(&self) -> Result<u64> {
        Ok((self.tx.max_capacity() - self.tx.capacity()) as u64)
    }
}

impl InProcessQueue {
    async fn hand_over(&self, command: Queued) -> Result<()> {
        let (ack, acked) = oneshot::channel();
        match tokio::time::timeout(self.enqueue_timeout, self.tx.send((command, ack))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Error::unavailable("the embedded writer has stopped")),
            Err(_) => return Err(Error::unavailable("the create queue is full")),
        }
        acked.await.unwrap_or_else(|_| Err(Error::unavailable("the embedded writer stopped before committing")))
    }
}

#[async_trait]
impl CommandSource for InProcessSource {
    async fn next(&mut self) -> Option<Delivery> {
        let (command, ack) = self.rx.recv().await?;
        Some(Delivery { commands: vec![command], receipt: Box::new(InProcessReceipt(ack)) })
    }
}

struct InProcessReceipt(Ack);

#[async_trait]
impl Receipt for InProcessReceipt {
    async fn ack(self: Box<Self>) {
        // the submitter may have gone away; the command is committed all the same
        let _ = self.0.send(Ok(()));
    }

    async fn fail(self: Box<Self>, error: &Error) {
        let _ = self.0.send(Err(Error::unavailable(format!("the command was not written: {}", error.detail()))));
    }

    async fn set_aside(self: Box<Self>, refused: Vec<Refused>) {
        // a delivery here is one command: it is the refused one
        let outcome = match refused.first() {
            None => Ok(()),
            Some(r) => {
                tracing::error!(reason = %r.reason, "command refused by the store");
                metrics::counter!("chatsys_commands_refused_total").increment(1);
                Err(Error::internal("the store refused to write this item; it was not created"))
            }
        };
        let _ = self.0.send(outcome);
    }
}
