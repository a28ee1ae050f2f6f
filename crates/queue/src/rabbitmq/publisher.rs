//! The producer side, shared by all handlers of one API process: creates gathered into
//! persistent messages on several confirming channels, each answered by its confirm. While
//! any command is on its way, or a failed create waits for its tombstone
//! ([`CreateQueue::on_its_way`]), the process holds ([`Holds`]): its number is neither in
//! the queue nor in the store yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chatsys_core::ports::{CreateQueue, Durability, Holds, OnItsWay};
use chatsys_core::{Error, Queued, Result};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{RabbitConfig, STEP_TIMEOUT, bounded, broker_error, connect, declare};
use crate::batcher::next_batch;
use crate::hold::{Counted, InHand, hold_while_any};

const PUBLISH_CHANNELS: usize = 4;

/// One connection with confirming channels, replaced when it breaks.
struct Link {
    connection: Connection,
    channels: Vec<Channel>,
    next: AtomicUsize,
}

struct Links {
    config: RabbitConfig,
    current: Mutex<Option<Arc<Link>>>,
}

impl Links {
    /// The current link, or a new one within the step bound.
    async fn get(&self) -> Result<Arc<Link>> {
        bounded(STEP_TIMEOUT * 2, "opening a link", self.get_unbounded()).await
    }

    async fn get_unbounded(&self) -> Result<Arc<Link>> {
        let mut current = self.current.lock().await;
        if let Some(link) = current.as_ref().filter(|l| l.connection.status().connected()) {
            return Ok(link.clone());
        }
        *current = None;
        let connection = connect(&self.config, "chatsys-api").await?;
        let mut channels = Vec::with_capacity(PUBLISH_CHANNELS);
        for _ in 0..PUBLISH_CHANNELS {
            let channel = connection.create_channel().await.map_err(broker_error("opening a channel"))?;
            channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(broker_error("enabling confirms"))?;
            channels.push(channel);
        }
        declare(&channels[0], &self.config).await?;
        tracing::info!(queue = %self.config.queue, "connected to the message broker");
        let link = Arc::new(Link { connection, channels, next: AtomicUsize::new(0) });
        *current = Some(link.clone());
        Ok(link)
    }

    async fn forget(&self, broken: &Arc<Link>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|l| Arc::ptr_eq(l, broken)) {
            *current = None;
        }
    }
}

/// The way back to a create's caller. The create counts as on its way while this lives:
/// until its confirm or failure is known, even once its caller stopped waiting.
struct Ack {
    reply: oneshot::Sender<Result<()>>,
    _counted: Counted,
}

pub struct RabbitQueue {
    links: Arc<Links>,
    tx: mpsc::Sender<(Queued, Ack)>,
    on_their_way: InHand,
}

impl RabbitQueue {
    /// Starts the producer; the first connection is made here, so a broker that is down at
    /// start is reported at once.
    pub async fn start(config: RabbitConfig) -> Result<Self> {
        let links = Arc::new(Links { config: config.clone(), current: Mutex::new(None) });
        links.get().await?;
        let (tx, rx) = mpsc::channel(config.batch.max_commands * 16);
        tokio::spawn(publish_loop(links.clone(), rx));
        Ok(Self { links, tx, on_their_way: InHand::default() })
    }

    /// Holds while commands are on their way to the broker: after a Redis data loss the
    /// counters must not re-seed below their numbers.
    pub fn with_holds(self, holds: Arc<dyn Holds>) -> Self {
        tokio::spawn(hold_while_any(self.on_their_way.watch(), holds));
        self
    }
}

async fn publish_loop(links: Arc<Links>, mut rx: mpsc::Receiver<(Queued, Ack)>) {
    while let Some(batch) = next_batch(&mut rx, links.config.batch).await {
        let (commands, acks): (Vec<Queued>, Vec<Ack>) = batch.into_iter().unzip();
        let payload = match serde_json::to_vec(&commands) {
            Ok(payload) => payload,
            Err(e) => {
                settle(acks, Err(Error::internal("cannot encode commands").with_source(e)));
                continue;
            }
        };
        let link = match links.get().await {
            Ok(link) => link,
            Err(e) => {
                settle(acks, Err(e));
                continue;
            }
        };
        let channel = link.channels[link.next.fetch_add(1, Ordering::Relaxed) % link.channels.len()].clone();
        let properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into());
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let limit = links.config.confirm_timeout;
        let published = bounded(limit, "taking the commands", async {
            channel
                .basic_publish("".into(), links.config.queue.as_str().into(), options, &payload, properties)
                .await
                .map_err(broker_error("publishing"))
        })
        .await;
        let links = links.clone();
        // wait for the confirm elsewhere: more messages may go out meanwhile
        tokio::spawn(async move {
            let outcome = match published {
                Ok(confirm) => {
                    bounded(limit, "confirming the commands", async {
                        match confirm.await.map_err(broker_error("waiting for the confirm"))? {
                            Confirmation::Ack(None) => Ok(()),
                            Confirmation::Ack(Some(_)) => {
                                Err(Error::unavailable("the broker could not route the commands"))
                            }
                            _ => Err(Error::unavailable("the broker refused the commands")),
                        }
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            if outcome.is_err() {
                links.forget(&link).await;
            }
            settle(acks, outcome);
        });
    }
}

fn settle(acks: Vec<Ack>, outcome: Result<()>) {
    for ack in acks {
        let copy = match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::unavailable(e.detail().to_owned())),
        };
        let _ = ack.reply.send(copy);
    }
    if let Err(e) = outcome {
        tracing::warn!(error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "commands not accepted by the broker");
    }
}

#[async_trait]
impl CreateQueue for RabbitQueue {
    /// A round trip to the broker: a connection that still looks open proves nothing when
    /// the broker has stopped answering.
    async fn ping(&self) -> Result<()> {
        self.backlog().await.map(|_| ())
    }

    async fn submit(&self, command: Queued) -> Result<()> {
        let in_flight = metrics::gauge!("chatsys_queue_in_flight");
        in_flight.increment(1);
        let (reply, acked) = oneshot::channel();
        let ack = Ack { reply, _counted: self.on_their_way.count() };
        // the publisher bounds each step; this bounds the whole, waiting in line included
        let limit = self.links.config.confirm_timeout + STEP_TIMEOUT * 2;
        let result = bounded(limit, "confirming a create", async {
            self.tx.send((command, ack)).await.map_err(|_| Error::unavailable("the publisher stopped"))?;
            acked.await.unwrap_or_else(|_| Err(Error::unavailable("the publisher stopped")))
        })
        .await;
        in_flight.decrement(1);
        result
    }

    fn durability(&self) -> Durability {
        Durability::Queued
    }

    fn on_its_way(&self) -> OnItsWay {
        OnItsWay::new(self.on_their_way.count())
    }

    async fn backlog(&self) -> Result<u64> {
        let link = self.links.get().await?;
        bounded(STEP_TIMEOUT, "reading the queue length", async {
            let channel = link.connection.create_channel().await.map_err(broker_error("opening a channel"))?;
            let queue = channel
                .queue_declare(
                    self.links.config.queue.as_str().into(),
                    QueueDeclareOptions::durable().passive(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker_error("reading the queue length"))?;
            let _ = channel.close(200, "done".into()).await;
            Ok(u64::from(queue.message_count()))
        })
        .await
    }
}
