//! Faults under a running load of creates, each ending with "every 201 is in the database
//! exactly once, numbers unique, counts exact". These tests stop and start this machine's
//! RabbitMQ and MariaDB and flush its Redis: they run one at a time (a lock below), and
//! `cargo test` runs test binaries one after another, so nothing else is running meanwhile.

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use common::load::{Load, verify};
use futures::stream::{self, StreamExt as _};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn setup(cluster: &Cluster) -> (Client, String, Vec<u64>) {
    let front = Client::new(&cluster.base);
    let token = front.new_app().await;
    let chats: Vec<u64> = stream::iter(0..6).then(|_| front.new_chat(&token)).collect().await;
    // seed every chat's counter while everything is up
    for chat in &chats {
        let r = front
            .post(&format!("/applications/{token}/chats/{chat}/messages"), serde_json::json!({"body": "seed"}))
            .await;
        assert_eq!(r.status, 201);
    }
    (front, token, chats)
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..600 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not come back");
}

/// The seed messages are acknowledged too: they count in the checks.
fn seeds(chats: &[u64]) -> Vec<(u64, u64, String)> {
    chats.iter().map(|c| (*c, 1, "seed".to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::start(1, 2, false).await else { return };
    let (_, token, chats) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cluster.workers.remove(0).kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.add_worker();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds(&chats));
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_server_killed_under_load_loses_nothing_it_acknowledged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::start(2, 1, true).await else { return };
    let (_, token, chats) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cluster.apis.remove(0).kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds(&chats));
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rabbitmq_restart_refuses_creates_but_never_loses_an_acknowledged_one() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let (_, token, chats) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    run("rabbitmqctl", &["-q", "stop_app"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run("rabbitmqctl", &["-q", "start_app"]);
    run("rabbitmqctl", &["-q", "await_startup"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let refused = load.refused.load(Ordering::Relaxed);
    let mut acknowledged = load.stop().await;
    assert!(refused > 0, "creates were refused during the outage");
    acknowledged.extend(seeds(&chats));
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mariadb_restart_holds_the_queue_and_the_workers_catch_up() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let (_, token, chats) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    run("start-stop-daemon", &["--stop", "--quiet", "--retry", "30", "--exec", "/usr/sbin/mariadbd"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run("start-stop-daemon", &["--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]);
    wait_until("MariaDB", || {
        Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds(&chats));
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_flush_never_hands_out_a_number_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(2, 1, true).await else { return };
    let (_, token, chats) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    run("redis-cli", &["-h", "127.0.0.1", "FLUSHALL"]);
    // recovery: 503s while the queue drains (1 s of quiet in these tests), then creates resume
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let refused = load.refused.load(Ordering::Relaxed);
    let mut acknowledged = load.stop().await;
    assert!(refused > 0, "creates were refused while the counters recovered");
    let last = acknowledged.iter().filter(|(chat, ..)| *chat == chats[0]).map(|(_, n, _)| *n).max().unwrap_or(0);
    acknowledged.extend(seeds(&chats));
    verify(&cluster, &token, &acknowledged).await;
    // numbering resumed after the recovery from the highest stored number
    let next = Client::new(&cluster.base)
        .post(&format!("/applications/{token}/chats/{}/messages", chats[0]), serde_json::json!({"body": "after"}))
        .await;
    assert_eq!(next.json["number"].as_u64(), Some(last.max(1) + 1), "{next:?}");
}
