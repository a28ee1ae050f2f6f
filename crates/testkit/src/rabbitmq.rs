//! Queues of a test's own on the RabbitMQ broker at `CHATSYS_TEST_AMQP_URL`.

use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};

use crate::Service;

async fn channel() -> (Connection, Channel) {
    let connection =
        Connection::connect(&Service::RabbitMq.url(), Default::default()).await.expect("the broker answers");
    let channel = connection.create_channel().await.unwrap();
    (connection, channel)
}

/// Messages ready in a queue (0 when it does not exist).
pub async fn messages_in(queue: &str) -> u32 {
    let (_connection, channel) = channel().await;
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable().passive(), FieldTable::default())
        .await
        .map_or(0, |q| q.message_count())
}

/// Takes every message of a queue: each body, and its `x-chatsys-reason` header.
pub async fn take_all(queue: &str) -> Vec<(Vec<u8>, Option<String>)> {
    let (_connection, channel) = channel().await;
    let mut out = Vec::new();
    while let Ok(Some(message)) = channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await {
        let reason = message.properties.headers().as_ref().and_then(|h| match h.inner().get("x-chatsys-reason") {
            Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            _ => None,
        });
        out.push((message.data.clone(), reason));
    }
    out
}

/// Removes a command queue, its dead-letter queue and exchange.
pub async fn delete(queue: &str) {
    let (_connection, channel) = channel().await;
    let dead = format!("{queue}.dead");
    for name in [queue, dead.as_str()] {
        let _ = channel.queue_delete(name.into(), QueueDeleteOptions::default()).await;
    }
    let _ = channel.exchange_delete(dead.as_str().into(), Default::default()).await;
}
