//! The RabbitMQ queue against the real broker on this machine (`CHATSYS_TEST_AMQP_URL`,
//! default `amqp://guest:guest@127.0.0.1:5672/%2f`; skipped with a line when it does not
//! answer), each test on queues of its own.

use std::time::Duration;

use chatsys_core::ports::{CommandSource, CreateQueue, Refused};
use chatsys_core::{AppId, ChatNumber, Command, ErrorKind, Queued, Timestamp};
use chatsys_queue::BatchConfig;
use chatsys_queue::rabbitmq::{RabbitConfig, RabbitQueue, RabbitSource};

/// A configuration on queues of the test's own; `None` when the broker does not answer.
fn config() -> Option<RabbitConfig> {
    Some(RabbitConfig {
        url: chatsys_testkit::service(chatsys_testkit::Service::RabbitMq)?,
        queue: chatsys_testkit::unique_name("chatsys.test"),
        batch: BatchConfig { max_commands: 500, linger: Duration::from_micros(500) },
        confirm_timeout: Duration::from_secs(10),
    })
}

fn chat(n: u64) -> Queued {
    Command::CreateChat { app: AppId(1), chat: ChatNumber::new(n).unwrap(), at: Timestamp::now() }.into()
}

async fn messages_in(queue: &str) -> u32 {
    chatsys_testkit::rabbitmq::messages_in(queue).await
}

async fn delete(config: &RabbitConfig) {
    chatsys_testkit::rabbitmq::delete(&config.queue).await;
}

#[tokio::test]
async fn confirmed_creates_reach_a_worker_coalesced_into_few_messages() {
    let Some(config) = config() else { return };
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
    let Some(config) = config() else { return };
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
    let (body, reason) = chatsys_testkit::rabbitmq::take_all(queue).await.remove(0);
    let commands: Vec<Queued> = serde_json::from_slice(&body).unwrap();
    (commands.into_iter().map(|q| q.command).collect(), reason)
}

#[tokio::test]
async fn a_broker_that_cannot_be_reached_is_reported_as_unavailable() {
    let Some(mut config) = config() else { return };
    config.url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let error = RabbitQueue::start(config).await.err().expect("no broker on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

/// A port that accepts connections and never answers: the producer gives up in bounded time.
#[tokio::test]
async fn a_broker_that_accepts_and_never_answers_is_unavailable_within_the_bound() {
    let Some(mut config) = config() else { return };
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.url = format!("amqp://guest:guest@{}/%2f", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let error = RabbitQueue::start(config).await.err().expect("nothing answers");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(10), "gave up after {:?}", started.elapsed());
    drop(silent);
}
