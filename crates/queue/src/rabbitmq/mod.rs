//! RabbitMQ: the create queue of distributed mode.
//!
//! Producer ([`publisher`]): each API process gathers the creates that arrive within a short
//! linger into one persistent message on a durable quorum queue; the broker's publisher
//! confirm answers them all (a 201 is sent only after it). Several confirms are in flight at
//! once; every step is bounded in time, so a broker that hangs costs a create a 503, never a
//! wait without end.
//! Consumer ([`consumer`]): deliveries are acknowledged after the store commit (and the
//! index step). A command the store refuses for good (a poison command) is published alone
//! to `<queue>.dead` with its reason and the rest of its delivery is acknowledged; a delivery
//! that failed for a passing reason is returned to the queue. There is no broker-side
//! delivery limit: RabbitMQ 3.x counts a return caused by a consumer's disconnect (a broker
//! restart) as an attempt, and a limit would dead-letter good commands after a few restarts.
//! Either side reconnects by itself when the broker goes away.

mod consumer;
mod publisher;

use std::time::Duration;

use chatsys_core::{Error, Result};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::batcher::BatchConfig;
pub use consumer::RabbitSource;
pub use publisher::RabbitQueue;

#[derive(Debug, Clone)]
pub struct RabbitConfig {
    pub url: String,
    /// The durable quorum queue of create commands; `<queue>.dead` holds the dead-lettered.
    pub queue: String,
    /// How a producer gathers creates into one message (and one confirm).
    pub batch: BatchConfig,
    /// How long a create may wait for the broker to take and confirm it before it answers
    /// 503 (a broker that hangs must not hold a client forever).
    pub confirm_timeout: Duration,
}

impl RabbitConfig {
    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.queue)
    }
}

/// How long a connection attempt, or one step of the protocol (a declaration, an
/// acknowledgement), may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// Unacknowledged messages a consumer may hold.
const PREFETCH: u16 = 64;

fn broker_error(context: &'static str) -> impl Fn(lapin::Error) -> Error {
    move |e| Error::unavailable(format!("the message broker is unavailable ({context})")).with_source(e)
}

/// `step`, or an `Unavailable` error once it has taken longer than `limit`.
async fn bounded<T>(limit: Duration, what: &'static str, step: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("chatsys_broker_timeouts_total").increment(1);
            Err(Error::unavailable(format!("the message broker did not answer in time ({what})")))
        }
    }
}

async fn connect(config: &RabbitConfig, name: &str) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    // lapin's tokio runtime sets TCP_NODELAY on its sockets
    bounded(STEP_TIMEOUT, "connecting", async {
        Connection::connect(&config.url, properties).await.map_err(broker_error("connecting"))
    })
    .await
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
