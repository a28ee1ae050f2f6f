//! The RabbitMQ queue against the real broker on this machine (`CHATSYS_TEST_AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`), each test on queues of its own.

use std::time::Duration;

use chatsys_core::ports::{CommandSource, CreateQueue, Refused};
use chatsys_core::{AppId, ChatNumber, Command, ErrorKind, Queued, Timestamp};
use chatsys_queue::BatchConfig;
use chatsys_queue::rabbitmq::{RabbitConfig, RabbitQueue, RabbitSource};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use rand::Rng as _;

fn amqp_url() -> String {
    std::env::var("CHATSYS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn config() -> RabbitConfig {
    RabbitConfig {
        url: amqp_url(),
        queue: format!("chatsys.test.{:016x}", rand::rng().random::<u64>()),
        batch: BatchConfig { max_commands: 500, linger: Duration::from_micros(500) },
        confirm_timeout: Duration::from_secs(10),
    }
}

fn chat(n: u64) -> Queued {
    Command::CreateChat { app: AppId(1), chat: ChatNumber::new(n).unwrap(), at: Timestamp::now() }.into()
}

/// Messages waiting in a queue, and the queues removed afterwards.
async fn messages_in(queue: &str) -> u32 {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable().passive(), FieldTable::default())
        .await
        .unwrap();
    declared.message_count()
}

async fn delete(config: &RabbitConfig) {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in [config.queue.clone(), format!("{}.dead", config.queue)] {
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
    let _ = channel.exchange_delete(format!("{}.dead", config.queue).as_str().into(), Default::default()).await;
}

#[tokio::test]
async fn confirmed_creates_reach_a_worker_coalesced_into_few_messages() {
    let config = config();
    let queue = std::sync::Arc::new(
        RabbitQueue::start(config.clone()).await.expect("the broker must be running for these tests"),
    );
    let submits: Vec<_> = (1..=50)
        .map(|n| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.submit(chat(n)).await })
        })
        .collect();
    for s in submits {
        s.await.unwrap().expect("confirmed by the broker");
    }
    assert!(queue.backlog().await.unwrap() >= 1);

    let mut source = RabbitSource::new(config.clone());
    let mut received = Vec::new();
    let mut messages = 0;
    while received.len() < 50 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), source.next()).await.unwrap().unwrap();
        messages += 1;
        received.extend(delivery.commands.iter().map(|q| q.command.chat().get()));
        delivery.receipt.ack().await;
    }
    received.sort_unstable();
    assert_eq!(received, (1..=50).collect::<Vec<_>>());
    assert!(messages < 50, "creates arriving together share messages ({messages} for 50)");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(queue.backlog().await.unwrap(), 0);
    delete(&config).await;
}

#[tokio::test]
async fn a_passing_failure_returns_the_delivery_and_a_refused_command_is_set_aside_alone() {
    let config = config();
    let queue = RabbitQueue::start(config.clone()).await.unwrap();
    let seven = chat(7);
    queue.submit(seven.clone()).await.unwrap();
    let mut source = RabbitSource::new(config.clone());
    // passing trouble, many times: the command comes back every time
    for attempt in 1..=8 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), source.next()).await.unwrap().unwrap();
        assert_eq!(delivery.commands[0].command.chat().get(), 7, "attempt {attempt} gets the same command");
        delivery.receipt.fail(&chatsys_core::Error::unavailable("store down")).await;
    }
    // one command of a delivery refused for good: it alone goes to <queue>.dead, with why
    let delivery = tokio::time::timeout(Duration::from_secs(10), source.next()).await.unwrap().unwrap();
    let refused = Refused { command: delivery.commands[0].clone(), reason: "refused by a test trigger".into() };
    delivery.receipt.set_aside(vec![refused]).await;
    let dead = format!("{}.dead", config.queue);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while messages_in(&dead).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (commands, reason) = dead_letter(&dead).await;
    assert_eq!(commands, [seven.command], "the refused command, alone");
    assert_eq!(reason.as_deref(), Some("refused by a test trigger"));
    assert_eq!(messages_in(&config.queue).await, 0, "the delivery itself is acknowledged");
    assert!(tokio::time::timeout(Duration::from_millis(500), source.next()).await.is_err(), "not delivered again");
    delete(&config).await;
}

/// The first dead letter: its commands and its `x-chatsys-reason` header.
async fn dead_letter(queue: &str) -> (Vec<Command>, Option<String>) {
    let connection = lapin::Connection::connect(&amqp_url(), Default::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get(queue.into(), lapin::options::BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a dead letter");
    let commands: Vec<Queued> = serde_json::from_slice(&message.data).unwrap();
    let reason = message.properties.headers().as_ref().and_then(|h| match h.inner().get("x-chatsys-reason") {
        Some(lapin::types::AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    });
    (commands.into_iter().map(|q| q.command).collect(), reason)
}

#[tokio::test]
async fn a_broker_that_cannot_be_reached_is_reported_as_unavailable() {
    let mut config = config();
    config.url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let error = RabbitQueue::start(config).await.err().expect("no broker on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}
