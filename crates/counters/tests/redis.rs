//! The numbering contract against the real Redis on this machine (`CHATSYS_TEST_REDIS_URL`,
//! default `redis://127.0.0.1:6379`; skipped with a line when it does not answer), each test
//! under a key prefix of its own, and what only Redis numbering does: surviving a data loss
//! without handing out a number twice, workers' holds included.

mod suite;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{Claim, CreateQueue, Durability, Holds as _, IdempotencyKeys, Numbering, Store};
use chatsys_core::{ChatNumber, Command, IdempotencyRecord, Queued, Timestamp};
use chatsys_counters::holds::HOLD_LIFE;
use chatsys_counters::{RedisHolds, RedisIdempotencyKeys, RedisNumbering, RedisNumberingConfig};
use chatsys_queue::in_process;
use chatsys_store::SqliteStore;
use redis::AsyncCommands as _;
use tempfile::TempDir;

struct Fixture {
    _dir: TempDir,
    redis: redis::aio::ConnectionManager,
    prefix: String,
    store: Arc<dyn Store>,
}

async fn fixture() -> Option<Fixture> {
    let url = chatsys_testkit::service(chatsys_testkit::Service::Redis)?;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let redis = chatsys_counters::redis::connect(&url).await.unwrap();
    let prefix = chatsys_testkit::unique_name("chatsys-test");
    Some(Fixture { _dir: dir, redis, prefix, store })
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(chatsys_testkit::redis::delete_prefix(&prefix));
        })
        .join();
    }
}

async fn numbering(f: &Fixture) -> RedisNumbering {
    let (queue, _source) = in_process::channel(10, Duration::from_secs(1));
    let config = RedisNumberingConfig { prefix: f.prefix.clone(), drain_settle: Duration::from_millis(200) };
    let numbering = RedisNumbering::redis(f.redis.clone(), config, f.store.clone(), Arc::new(queue));
    numbering.counters().initialize().await.unwrap();
    numbering
}

async fn open() -> Option<(Arc<dyn Numbering>, Arc<dyn Store>, Fixture)> {
    let f = fixture().await?;
    let n = numbering(&f).await;
    Some((Arc::new(n), f.store.clone(), f))
}

/// Removes every key of the fixture's prefix: a data loss, for this deployment only.
async fn lose_everything(f: &Fixture) {
    chatsys_testkit::redis::delete_prefix(&f.prefix).await;
}

/// A data loss, then a server that recovers (the queue is empty: it re-seeds at once).
async fn lose(f: &Fixture) -> Arc<dyn Numbering> {
    lose_everything(f).await;
    Arc::new(numbering(f).await)
}

numbering_contract!(open, lose);

/// The next chat number once the counters have recovered, within `bound`.
async fn next_chat_within(numbering: &RedisNumbering, app: chatsys_core::AppId, bound: Duration) -> ChatNumber {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match numbering.next_chat(app).await {
            Ok(n) => return n,
            Err(e) if e.kind() == chatsys_core::ErrorKind::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("recovery did not finish: {e}"),
        }
    }
}

#[tokio::test]
async fn after_a_redis_data_loss_no_number_is_handed_out_twice() {
    let Some(f) = fixture().await else { return };
    let numbering = numbering(&f).await;
    let app = suite::new_app(f.store.as_ref()).await;
    let c = |n| ChatNumber::new(n).unwrap();
    for n in 1..=3 {
        assert_eq!(numbering.next_chat(app).await.unwrap(), c(n));
    }
    numbering.void_chat(app, c(2)).await.unwrap();
    let at = Timestamp::now();
    // chats 1 and 3 are written (2's create failed), chat 3 holds two messages
    let mut batch: Vec<Queued> = [1, 3].iter().map(|n| Command::CreateChat { app, chat: c(*n), at }.into()).collect();
    for n in 1..=2 {
        let m = numbering.next_message(app, c(3)).await.unwrap().unwrap();
        assert_eq!(m.get(), n);
        batch.push(
            Command::CreateMessage {
                app,
                chat: c(3),
                number: m,
                body: chatsys_core::MessageBody::parse("x".into()).unwrap(),
                at,
            }
            .into(),
        );
    }
    f.store.write_batch(&batch).await.unwrap();

    lose_everything(&f).await;
    let refused = numbering.next_chat(app).await.unwrap_err();
    assert_eq!(refused.kind(), chatsys_core::ErrorKind::Unavailable, "creates answer 503 while recovering");
    let next = next_chat_within(&numbering, app, Duration::from_secs(10)).await;
    assert_eq!(next, c(4), "numbering continues after the highest stored chat");
    assert!(!numbering.chat_exists(app, c(2)).await.unwrap(), "the chat voided before the loss stays void");
    assert_eq!(numbering.next_message(app, c(2)).await.unwrap(), None);
    assert_eq!(numbering.next_message(app, c(3)).await.unwrap().unwrap().get(), 3);
    assert!(numbering.chat_exists(app, c(4)).await.unwrap());
}

#[tokio::test]
async fn after_a_redis_data_loss_the_counters_wait_for_the_commands_a_worker_holds() {
    let Some(f) = fixture().await else { return };
    let numbering = numbering(&f).await;
    let app = suite::new_app(f.store.as_ref()).await;
    assert_eq!(numbering.next_chat(app).await.unwrap().get(), 1);
    let worker = RedisHolds::new(f.redis.clone(), &f.prefix);

    lose_everything(&f).await;
    worker.hold().await.unwrap(); // renewed after the loss, as a busy worker does
    let refused = numbering.next_chat(app).await.unwrap_err();
    assert_eq!(refused.kind(), chatsys_core::ErrorKind::Unavailable);
    // the settle time is 200 ms here: while the hold is renewed, no number for a second
    for _ in 0..10 {
        worker.hold().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = numbering.next_chat(app).await.unwrap_err();
        assert_eq!(refused.kind(), chatsys_core::ErrorKind::Unavailable, "no number while a worker holds");
    }
    worker.release().await.unwrap();
    next_chat_within(&numbering, app, Duration::from_secs(5)).await;

    // a worker that died without releasing: its hold lapses
    lose_everything(&f).await;
    worker.hold().await.unwrap();
    let started = tokio::time::Instant::now();
    numbering.next_chat(app).await.unwrap_err();
    next_chat_within(&numbering, app, HOLD_LIFE + Duration::from_secs(3)).await;
    assert!(started.elapsed() >= HOLD_LIFE - Duration::from_millis(200), "waited {:?}", started.elapsed());
}

/// An in-process queue whose length cannot be read for the next `failures` tries (its
/// broker away from the process that leads the recovery).
struct Unreadable {
    queue: in_process::InProcessQueue,
    failures: AtomicU32,
}

#[async_trait]
impl CreateQueue for Unreadable {
    async fn ping(&self) -> chatsys_core::Result<()> {
        self.queue.ping().await
    }

    async fn submit(&self, command: Queued) -> chatsys_core::Result<()> {
        self.queue.submit(command).await
    }

    fn durability(&self) -> Durability {
        self.queue.durability()
    }

    async fn backlog(&self) -> chatsys_core::Result<u64> {
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(chatsys_core::Error::unavailable("the message broker is unavailable"));
        }
        self.queue.backlog().await
    }
}

#[tokio::test]
async fn a_recovery_that_fails_lets_the_next_create_lead_it_at_once() {
    let Some(f) = fixture().await else { return };
    let (queue, _source) = in_process::channel(10, Duration::from_secs(1));
    let queue = Arc::new(Unreadable { queue, failures: AtomicU32::new(0) });
    let config = RedisNumberingConfig { prefix: f.prefix.clone(), drain_settle: Duration::from_millis(200) };
    let numbering = RedisNumbering::redis(f.redis.clone(), config, f.store.clone(), queue.clone());
    numbering.counters().initialize().await.unwrap();
    let app = suite::new_app(f.store.as_ref()).await;
    assert_eq!(numbering.next_chat(app).await.unwrap().get(), 1);

    lose_everything(&f).await;
    queue.failures.store(1, Ordering::SeqCst);
    numbering.next_chat(app).await.unwrap_err();
    next_chat_within(&numbering, app, Duration::from_secs(5)).await;
    assert_eq!(queue.failures.load(Ordering::SeqCst), 0, "the first recovery failed");
}

#[tokio::test]
async fn a_recovery_whose_leader_died_is_led_by_another_process_once_its_lock_lapses() {
    let Some(f) = fixture().await else { return };
    let numbering = numbering(&f).await;
    let app = suite::new_app(f.store.as_ref()).await;
    assert_eq!(numbering.next_chat(app).await.unwrap().get(), 1);

    lose_everything(&f).await;
    // another process took the lock, then died: its lock lapses, as unrenewed ones do
    let lock = format!("{}:recovery_lock", f.prefix);
    let _: () = f
        .redis
        .clone()
        .set_options(
            &lock,
            "a-leader-that-died",
            redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(1500)),
        )
        .await
        .unwrap();
    numbering.next_chat(app).await.unwrap_err();
    next_chat_within(&numbering, app, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn idempotency_keys_are_claimed_once_and_answer_repeats() {
    let Some(f) = fixture().await else { return };
    let keys = RedisIdempotencyKeys::new(f.redis.clone(), f.prefix.clone(), f.store.clone());
    assert_eq!(keys.claim("/s", "k").await.unwrap(), Claim::Claimed);
    assert_eq!(keys.claim("/s", "k").await.unwrap(), Claim::InFlight);
    assert_eq!(keys.claim("/other", "k").await.unwrap(), Claim::Claimed, "keys are per path");
    let record = IdempotencyRecord {
        scope: "/s".into(),
        key: "k".into(),
        fingerprint: "fp".into(),
        status: 201,
        location: "/l".into(),
        body: "{}".into(),
        created_at: Timestamp::now(),
    };
    keys.complete(&record).await.unwrap();
    assert_eq!(keys.claim("/s", "k").await.unwrap(), Claim::Done(record));
    keys.release("/other", "k").await;
    assert_eq!(keys.claim("/other", "k").await.unwrap(), Claim::Claimed, "a released key can be tried again");
}

#[tokio::test]
async fn an_unreadable_idempotency_record_gives_way_instead_of_looping() {
    let Some(f) = fixture().await else { return };
    let keys = RedisIdempotencyKeys::new(f.redis.clone(), f.prefix.clone(), f.store.clone());
    assert_eq!(keys.claim("/s", "k").await.unwrap(), Claim::Claimed);
    // whatever wrote this, it is not a record: the claim must answer, not recurse forever
    let names: Vec<String> = f.redis.clone().keys(format!("{}:idem:*", f.prefix)).await.unwrap();
    let _: () = f.redis.clone().set(&names[0], "{not a record").await.unwrap();
    let claim = tokio::time::timeout(Duration::from_secs(5), keys.claim("/s", "k")).await.expect("the claim answers");
    assert_eq!(claim.unwrap(), Claim::Claimed);
}
