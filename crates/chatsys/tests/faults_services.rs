//! Faults of the shared services themselves, under a running load of creates: RabbitMQ and
//! MariaDB restarted, and frozen (SIGSTOP, what a stuck VM looks like). These act on this
//! machine's own services (found as processes, with their own tools), so they run only with
//! `CHATSYS_TEST_FAULTS=1`, one at a time (a lock below; `cargo test` runs test binaries one
//! after another). Each ends with "every 201 is in the database exactly once, numbers
//! unique, counts exact", and the frozen broker also with "no create answered 503 appears".

mod common;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::Client;
use common::cluster::Cluster;
use common::load::{Load, setup, verify, verify_exactly};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
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

fn rabbitmq_pid() -> Pid {
    let out = run("rabbitmqctl", &["-q", "eval", "list_to_integer(os:getpid())."]);
    Pid::from_raw(out.trim().parse().expect("the broker's pid"))
}

fn mariadb_pid() -> Pid {
    let out = run("pidof", &["mariadbd"]);
    Pid::from_raw(out.split_whitespace().next().unwrap().parse().expect("mariadbd's pid"))
}

/// SIGCONT when dropped: a failing test must not leave a shared service frozen.
struct Frozen(Pid);

impl Frozen {
    fn freeze(pid: Pid) -> Frozen {
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rabbitmq_restart_refuses_creates_but_never_loses_an_acknowledged_one() {
    if !chatsys_testkit::faults_allowed() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let (_, token, chats, seeds) = setup(&cluster).await;
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
    acknowledged.extend(seeds);
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mariadb_restart_holds_the_queue_and_the_workers_catch_up() {
    if !chatsys_testkit::faults_allowed() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let (_, token, chats, seeds) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    run("start-stop-daemon", &["--stop", "--quiet", "--retry", "30", "--exec", "/usr/sbin/mariadbd"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    run("start-stop-daemon", &["--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"]);
    let mysql = chatsys_testkit::Service::MySql.url();
    let address = mysql.split('@').nth(1).and_then(|r| r.split('/').next()).unwrap_or("127.0.0.1:3306").to_owned();
    wait_until("MariaDB", || std::net::TcpStream::connect(&address).is_ok()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds);
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_broker_costs_creates_a_503_within_the_bound_and_nothing_else() {
    if !chatsys_testkit::faults_allowed() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start_with(1, 1, false, &[("CHATSYS_WRITE_TIMEOUT", "2s")]).await else { return };
    let (front, token, chats, seeds) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let frozen = Frozen::freeze(rabbitmq_pid());
    let started = Instant::now();
    let r = front.post(&format!("/applications/{token}/chats/{}/messages", chats[0]), json!({"body": "frozen"})).await;
    assert!(r.is_problem(503), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
    let ready = front.get("/readyz").await;
    assert!(ready.is_problem(503) && ready.text.contains("queue"), "readiness names the broker: {ready:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(frozen);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = load.refused.load(Ordering::Relaxed);
    let mut acknowledged = load.stop().await;
    assert!(refused > 0, "creates were refused while the broker was frozen");
    assert!(acknowledged.len() > 100, "creates went on after it ({} in all)", acknowledged.len());
    acknowledged.extend(seeds);
    verify_exactly(&cluster, &token, &acknowledged).await;
    let metrics = front.get("/metrics").await.text;
    assert!(metrics.contains("chatsys_broker_timeouts_total"), "the fault shows in /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_database_costs_reads_a_503_within_the_bound_and_the_workers_catch_up() {
    if !chatsys_testkit::faults_allowed() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start_with(1, 1, false, &[("CHATSYS_WRITE_TIMEOUT", "2s")]).await else { return };
    let (front, token, chats, seeds) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let frozen = Frozen::freeze(mariadb_pid());
    let started = Instant::now();
    let r = front.get(&format!("/applications/{token}/chats/{}/messages/1", chats[0])).await;
    assert!(r.is_problem(503), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    let ready = front.get("/readyz").await;
    assert!(ready.is_problem(503) && ready.text.contains("store"), "readiness names the database: {ready:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(frozen);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds);
    verify(&cluster, &token, &acknowledged).await;
    let after = Client::new(&cluster.base).get(&format!("/applications/{token}/chats/{}", chats[0])).await;
    assert_eq!(after.status, 200, "reads answer again: {after:?}");
}
