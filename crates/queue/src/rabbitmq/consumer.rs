//! The consumer side: one per worker process. Deliveries are settled after the store
//! commit; a command refused for good is published alone to `<queue>.dead`.

use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{CommandSource, Delivery, Receipt, Refused};
use chatsys_core::{Error, Queued, Result};
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use super::{PREFETCH, RabbitConfig, STEP_TIMEOUT, bounded, broker_error, connect, declare};

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
        bounded(STEP_TIMEOUT * 2, "subscribing", async {
            let channel = connection.create_channel().await.map_err(broker_error("opening a channel"))?;
            declare(&channel, &self.config).await?;
            // refused commands are published to the dead-letter exchange, confirmed
            channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(broker_error("enabling confirms"))?;
            channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(broker_error("setting prefetch"))?;
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
            Ok((channel, consumer))
        })
        .await
        .map(|(channel, consumer)| (connection, channel, consumer))
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
                            let reject =
                                channel.basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false });
                            let _ = tokio::time::timeout(STEP_TIMEOUT, reject).await;
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
        bounded(DEAD_LETTER_TIMEOUT, "confirming a dead letter", async {
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
        })
        .await
    }

    /// Acknowledges; a lost acknowledgement only means a harmless redelivery.
    async fn ack(&self) {
        let acked = bounded(STEP_TIMEOUT, "acknowledging", async {
            self.acker.ack(BasicAckOptions::default()).await.map_err(broker_error("acknowledging"))
        });
        if let Err(e) = acked.await {
            tracing::warn!(error = %e, "acknowledgement lost; the delivery will be replayed harmlessly");
        }
    }

    /// Returns the delivery to the queue; if that fails, the broker returns it anyway when
    /// the channel closes.
    async fn requeue(&self) {
        let returned = bounded(STEP_TIMEOUT, "returning a delivery", async {
            self.acker
                .nack(BasicNackOptions { requeue: true, ..Default::default() })
                .await
                .map_err(broker_error("returning a delivery"))
        });
        if let Err(e) = returned.await {
            tracing::warn!(error = %e, "could not return a failed delivery; the broker redelivers it anyway");
        }
    }
}

#[async_trait]
impl Receipt for RabbitReceipt {
    async fn ack(self: Box<Self>) {
        RabbitReceipt::ack(&self).await;
    }

    async fn set_aside(self: Box<Self>, refused: Vec<Refused>) {
        for r in &refused {
            if let Err(e) = self.dead_letter(r).await {
                // the delivery comes again; what was written is found written
                tracing::warn!(error = %e, "could not set a refused command aside; the delivery is returned");
                self.requeue().await;
                return;
            }
            tracing::error!(reason = %r.reason, "command refused by the store: dead-lettered alone");
            metrics::counter!("chatsys_dead_lettered_total").increment(1);
            metrics::counter!("chatsys_commands_refused_total").increment(1);
        }
        RabbitReceipt::ack(&self).await;
    }

    async fn fail(self: Box<Self>, error: &Error) {
        tracing::debug!(error = %error, earlier_deliveries = self.attempts, "delivery not written: returned to the queue");
        self.requeue().await;
    }
}
