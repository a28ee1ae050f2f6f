//! RabbitMQ: the create queue of distributed mode.
//!
//! Producer: each API process coalesces the creates that arrive within a short linger into
//! one persistent message on a durable quorum queue; the broker's publisher confirm answers
//! them all (a 201 is sent only after it). Several confirms are in flight at once.
//! Consumer: deliveries are acknowledged after the store commit (and the index step). A
//! delivery the store refuses for good (a poison command) is rejected to `<queue>.dead`,
//! where it stays for an operator (logged, counted, never dropped); one that failed for a
//! passing reason is returned to the queue. There is no broker-side delivery limit: RabbitMQ
//! 3.x counts a return caused by a consumer's disconnect (a broker restart) as an attempt,
//! and a limit would dead-letter good commands after a few restarts.
//! Either side reconnects by itself when the broker goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{CommandSource, CreateQueue, Delivery, Durability, Receipt, Refused};
use chatsys_core::{Error, ErrorKind, Queued, Result};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, mpsc, oneshot};

#[derive(Debug, Clone)]
pub struct RabbitConfig {
    pub url: String,
    /// The durable quorum queue of create commands; `<queue>.dead` holds the dead-lettered.
    pub queue: String,
    /// How long a producer waits for more creates to share one message and one confirm.
    pub linger: Duration,
    /// The most commands in one message.
    pub max_commands: usize,
    /// Unacknowledged messages a consumer may hold.
    pub prefetch: u16,
    /// How long a create may wait for the broker's confirm before it answers 503 (a broker
    /// that hangs must not hold a client forever).
    pub confirm_timeout: Duration,
}

impl RabbitConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            queue: "chatsys.commands".into(),
            linger: Duration::from_micros(500),
            max_commands: 500,
            prefetch: 64,
            confirm_timeout: Duration::from_secs(10),
        }
    }

    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.queue)
    }
}

/// How long a connection attempt may take before the create answers 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PUBLISH_CHANNELS: usize = 4;

fn broker_error(context: &'static str) -> impl Fn(lapin::Error) -> Error {
    move |e| Error::unavailable(format!("the message broker is unavailable ({context})")).with_source(e)
}

async fn connect(config: &RabbitConfig, name: &str) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // lapin's tokio runtime sets TCP_NODELAY on its sockets
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&config.url, properties)).await {
        Ok(connection) => connection.map_err(broker_error("connecting")),
        Err(_) => Err(Error::unavailable("the message broker did not answer in time")),
    }
}

/// The queue, its dead-letter exchange and queue; declaring them again is harmless.
async fn declare(channel: &Channel, config: &RabbitConfig) -> Result<u32> {
    let dead = config.dead_exchange();
    channel
        .exchange_declare(
            dead.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .map_err(broker_error("declaring the dead-letter exchange"))?;
    channel
        .queue_declare(dead.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await
        .map_err(broker_error("declaring the dead-letter queue"))?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dead.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker_error("binding the dead-letter queue"))?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dead.as_str().into()));
    let queue = channel
        .queue_declare(config.queue.as_str().into(), QueueDeclareOptions::durable(), arguments)
        .await
        .map_err(broker_error("declaring the queue"))?;
    Ok(queue.message_count())
}

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
    /// The current link, or a new one within the connect bound.
    async fn get(&self) -> Result<Arc<Link>> {
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.get_unbounded()).await {
            Ok(link) => link,
            Err(_) => Err(Error::unavailable("the message broker did not answer in time")),
        }
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

type Ack = oneshot::Sender<Result<()>>;

/// The producer side, shared by all handlers of one API process.
pub struct RabbitQueue {
    links: Arc<Links>,
    tx: mpsc::Sender<(Queued, Ack)>,
}

impl RabbitQueue {
    /// Starts the producer; the first connection is made here, so a broker that is down at
    /// start is reported at once.
    pub async fn start(config: RabbitConfig) -> Result<Self> {
        let links = Arc::new(Links { config: config.clone(), current: Mutex::new(None) });
        links.get().await?;
        let (tx, rx) = mpsc::channel(config.max_commands * 16);
        tokio::spawn(publish_loop(links.clone(), rx));
        Ok(Self { links, tx })
    }
}

async fn publish_loop(links: Arc<Links>, mut rx: mpsc::Receiver<(Queued, Ack)>) {
    let (linger, max) = (links.config.linger, links.config.max_commands);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => batch.push(next),
                _ => break,
            }
        }
        let (commands, acks): (Vec<Queued>, Vec<Ack>) = batch.into_iter().unzip();
        let payload = match serde_json::to_vec(&commands) {
            Ok(payload) => payload,
            Err(e) => {
                let e = Error::internal("cannot encode commands").with_source(e);
                settle(acks, Err(e));
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
        let channel = &link.channels[link.next.fetch_add(1, Ordering::Relaxed) % link.channels.len()];
        let properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into());
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let timeout = links.config.confirm_timeout;
        let published = tokio::time::timeout(
            timeout,
            channel.basic_publish("".into(), links.config.queue.as_str().into(), options, &payload, properties),
        )
        .await;
        let links = links.clone();
        // wait for the confirm elsewhere: more messages may go out meanwhile
        tokio::spawn(async move {
            let outcome = match published {
                Ok(Ok(confirm)) => match tokio::time::timeout(timeout, confirm).await {
                    Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(_)))) => {
                        Err(Error::unavailable("the broker could not route the commands"))
                    }
                    Ok(Ok(_)) => Err(Error::unavailable("the broker refused the commands")),
                    Ok(Err(e)) => Err(broker_error("waiting for the confirm")(e)),
                    Err(_) => Err(Error::unavailable("the message broker did not confirm in time")),
                },
                Ok(Err(e)) => Err(broker_error("publishing")(e)),
                Err(_) => Err(Error::unavailable("the message broker did not take the commands in time")),
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
        let _ = ack.send(copy);
    }
    if let Err(e) = outcome {
        tracing::warn!(error = %e, cause = ?std::error::Error::source(&e).map(ToString::to_string), "commands not accepted by the broker");
    }
}

#[async_trait]
impl CreateQueue for RabbitQueue {
    async fn ping(&self) -> Result<()> {
        self.links.get().await.map(|_| ())
    }

    async fn submit(&self, command: Queued) -> Result<()> {
        let in_flight = metrics::gauge!("chatsys_queue_in_flight");
        in_flight.increment(1);
        let (ack, acked) = oneshot::channel();
        // the publisher bounds each step; this bounds the whole, queueing included
        let bound = self.links.config.confirm_timeout + CONNECT_TIMEOUT * 2;
        let submitted = async {
            match self.tx.send((command, ack)).await {
                Ok(()) => acked.await.unwrap_or_else(|_| Err(Error::unavailable("the publisher stopped"))),
                Err(_) => Err(Error::unavailable("the publisher stopped")),
            }
        };
        let result = tokio::time::timeout(bound, submitted)
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the message broker did not confirm in time")));
        in_flight.decrement(1);
        result
    }

    fn durability(&self) -> Durability {
        Durability::Queued
    }

    async fn backlog(&self) -> Result<u64> {
        let link = self.links.get().await?;
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
    }
}

/// The consumer side: one per worker process.
pub struct RabbitSource {
    config: RabbitConfig,
    consumer: Option<(Connection, Channel, lapin::Consumer)>,
}

impl RabbitSource {
    pub fn new(config: RabbitConfig) -> Self {
        Self { config, consumer: None }
    }

    async fn subscribe(&self) -> Result<(Connection, Channel, lapin::Consumer)> {
        let connection = connect(&self.config, "chatsys-worker").await?;
        let channel = connection.create_channel().await.map_err(broker_error("opening a channel"))?;
        declare(&channel, &self.config).await?;
        // refused commands are published to the dead-letter exchange, confirmed
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(broker_error("enabling confirms"))?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(broker_error("setting prefetch"))?;
        let consumer = channel
            .basic_consume(
                self.config.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_error("subscribing"))?;
        tracing::info!(queue = %self.config.queue, "consuming create commands");
        Ok((connection, channel, consumer))
    }
}

#[async_trait]
impl CommandSource for RabbitSource {
    /// Waits, reconnecting as long as it takes; never ends on its own.
    async fn next(&mut self) -> Option<Delivery> {
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.consumer.is_none() {
                match self.subscribe().await {
                    Ok(subscribed) => {
                        self.consumer = Some(subscribed);
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot consume from the broker");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let (_, channel, consumer) = self.consumer.as_mut().expect("subscribed above");
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let attempts = delivery_count(&delivery);
                    match serde_json::from_slice::<Vec<Queued>>(&delivery.data) {
                        Ok(commands) => {
                            let receipt = RabbitReceipt {
                                acker: delivery.acker,
                                attempts,
                                channel: channel.clone(),
                                dead: self.config.dead_exchange(),
                            };
                            return Some(Delivery { commands, receipt: Box::new(receipt) });
                        }
                        Err(e) => {
                            // undecodable: no retry can help; the broker moves it to <queue>.dead
                            tracing::error!(error = %e, bytes = delivery.data.len(), "undecodable message dead-lettered");
                            metrics::counter!("chatsys_dead_lettered_total").increment(1);
                            let _ = channel
                                .basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false })
                                .await;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lost the broker: reconnecting");
                    self.consumer = None;
                }
                None => {
                    tracing::warn!("the broker ended the subscription: reconnecting");
                    self.consumer = None;
                }
            }
        }
    }
}

/// Deliveries of this message so far, from the quorum queue's `x-delivery-count` header.
fn delivery_count(delivery: &lapin::message::Delivery) -> u32 {
    let count = delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count").cloned());
    match count {
        Some(AMQPValue::LongLongInt(n)) => n as u32,
        Some(AMQPValue::LongInt(n)) => n as u32,
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::ShortInt(n)) => n as u32,
        _ => 0,
    }
}

struct RabbitReceipt {
    acker: lapin::Acker,
    attempts: u32,
    /// The consumer's channel (in confirm mode), for setting refused commands aside.
    channel: Channel,
    dead: String,
}

/// How long the broker may take to confirm a dead-lettered command.
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);

impl RabbitReceipt {
    /// Publishes one refused command alone to `<queue>.dead`, its reason in a header.
    async fn dead_letter(&self, refused: &Refused) -> Result<()> {
        let payload = serde_json::to_vec(&[&refused.command])
            .map_err(|e| Error::internal("cannot encode a refused command").with_source(e))?;
        let mut headers = FieldTable::default();
        headers.insert("x-chatsys-reason".into(), AMQPValue::LongString(refused.reason.as_str().into()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        let publish = async {
            let confirm = self
                .channel
                .basic_publish(
                    self.dead.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &payload,
                    properties,
                )
                .await
                .map_err(broker_error("dead-lettering"))?;
            match confirm.await.map_err(broker_error("confirming a dead letter"))? {
                Confirmation::Ack(_) => Ok(()),
                _ => Err(Error::unavailable("the broker refused a dead letter")),
            }
        };
        tokio::time::timeout(DEAD_LETTER_TIMEOUT, publish)
            .await
            .unwrap_or_else(|_| Err(Error::unavailable("the broker did not confirm a dead letter in time")))
    }
}

#[async_trait]
impl Receipt for RabbitReceipt {
    async fn ack(self: Box<Self>) {
        if let Err(e) = self.acker.ack(BasicAckOptions::default()).await {
            // the commands are written; the broker will redeliver them and the store will
            // find them already there
            tracing::warn!(error = %e, "acknowledgement lost; the delivery will be replayed harmlessly");
        }
    }

    async fn set_aside(self: Box<Self>, refused: Vec<Refused>) {
        for r in &refused {
            if let Err(e) = self.dead_letter(r).await {
                // the delivery comes again; what was written is found written
                tracing::warn!(error = %e, "could not set a refused command aside; the delivery is returned");
                let _ = self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                return;
            }
            tracing::error!(reason = %r.reason, "command refused by the store: dead-lettered alone");
            metrics::counter!("chatsys_dead_lettered_total").increment(1);
            metrics::counter!("chatsys_commands_refused_total").increment(1);
        }
        if let Err(e) = self.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(error = %e, "acknowledgement lost; the delivery will be replayed harmlessly");
        }
    }

    async fn fail(self: Box<Self>, error: &Error) {
        if error.kind() == ErrorKind::Internal {
            // the store refuses these commands for good: no retry can help
            tracing::error!(error = %error, earlier_deliveries = self.attempts, "commands refused by the store: dead-lettered");
            metrics::counter!("chatsys_dead_lettered_total").increment(1);
            if let Err(e) = self.acker.reject(BasicRejectOptions { requeue: false }).await {
                tracing::warn!(error = %e, "could not dead-letter a delivery; the broker redelivers it");
            }
        } else if let Err(e) = self.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
            tracing::warn!(error = %e, "could not return a failed delivery; the broker redelivers it anyway");
        }
    }
}
