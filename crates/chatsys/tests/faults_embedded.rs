//! Faults of embedded mode on the real binary: a store that refuses one row for good (a
//! SQLite trigger), a full disk (a small tmpfs the test mounts; only with
//! `CHATSYS_TEST_FAULTS=1`, as root). In each: no 201 that is not stored, nothing else
//! lost, writes resume by themselves, and numbering goes on above every number answered.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use futures::stream::{self, StreamExt as _};
use serde_json::json;

/// Installs a trigger that refuses to store one message body, as a new constraint or a bad
/// row would: a deterministic error, not a passing one.
async fn refuse_body(data_dir: &Path, body: &str) {
    let url = format!("sqlite://{}", data_dir.join("chatsys.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let trigger = format!(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON messages WHEN NEW.body = '{body}' \
         BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
    );
    sqlx::query(sqlx::AssertSqlSafe(trigger)).execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_store_refuses_fails_alone_and_every_other_create_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path()));
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    refuse_body(dir.path(), "poison").await;
    let path = format!("/applications/{token}/chats/{chat}/messages");

    // the refused body among 63 others, all at once: they share batches with it
    let replies: Vec<(String, common::Reply)> = stream::iter(0..64)
        .map(|i| {
            let (server, path) = (server.clone(), path.clone());
            async move {
                let body = if i == 31 { "poison".to_owned() } else { format!("fine {i}") };
                let r = server.post(&path, json!({"body": body})).await;
                (body, r)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut numbers = BTreeSet::new();
    for (body, r) in &replies {
        if body == "poison" {
            assert!(r.status >= 500 && r.is_problem(r.status), "the refused create fails with a problem: {r:?}");
            assert!(!r.text.contains("trigger") && !r.text.contains("SQL"), "no store text reaches the client: {r:?}");
        } else {
            assert_eq!(r.status, 201, "every other create of its batch holds: {r:?}");
            assert!(numbers.insert(r.json["number"].as_u64().unwrap()));
        }
    }
    let refused = (1..=64).find(|n| !numbers.contains(n)).expect("one number was not answered");
    for n in &numbers {
        assert_eq!(server.get(&format!("{path}/{n}")).await.status, 200, "message {n} is stored");
    }
    assert_eq!(server.get(&format!("{path}/{refused}")).await.status, 404);
    let edit = server.request("PUT", &format!("{path}/{refused}"), Some(json!({"body": "x"}))).await;
    assert_eq!(edit.status, 404, "the refused number is voided: {edit:?}");

    // later creates are unaffected
    for i in 0..20 {
        let r = server.post(&path, json!({"body": format!("later {i}")})).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let c = server.get(&format!("/applications/{token}/chats/{chat}")).await;
    assert_eq!(c.json["messages_count"], 83);
    let metrics = server.get("/metrics").await.text;
    assert!(metrics.contains("chatsys_commands_refused_total 1"), "the refusal is counted");
}

/// A tmpfs of its own, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "cannot mount a tmpfs at {} (this test needs root)", dir.display());
        Tmpfs(dir.to_owned())
    }

    /// Fills the file system up; the filler's path.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// CPU seconds the process has used (user + system), from /proc.
fn cpu_seconds(pid: nix::unistd::Pid) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_never_201_and_writes_resume_when_space_returns() {
    if !chatsys_testkit::faults_allowed() {
        return;
    }
    let mount = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(mount.path(), "24m");
    let data = mount.path().join("data");
    let server = Server::start_with(&data, &[("CHATSYS_SEARCH_COMMIT_INTERVAL", "100ms")]);
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let mut post = async |server: &Server, i: usize| -> u16 {
        let body = format!("message {i} {}", "x".repeat(2000));
        let r = server.post(&path, json!({"body": body})).await;
        match r.status {
            201 => acknowledged.push((r.json["number"].as_u64().unwrap(), body)),
            503 => assert!(r.headers.contains_key("retry-after"), "{r:?}"),
            other => panic!("a create answers 201 or 503 on a full disk, not {other}: {r:?}"),
        }
        r.status
    };
    for i in 0..50 {
        assert_eq!(post(&server, i).await, 201);
    }

    let filler = tmpfs.fill();
    let cpu_before = cpu_seconds(server.pid());
    let failing_since = Instant::now();
    let mut refused = 0;
    let mut i = 50;
    // keep writing until the store cannot commit any more, then a while longer
    while refused < 30 {
        if post(&server, i).await == 503 {
            refused += 1;
        }
        i += 1;
        assert!(failing_since.elapsed() < Duration::from_secs(60), "the store never ran out of space");
    }
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status, 503, "readiness shows the fault: {ready:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let seconds = failing_since.elapsed().as_secs_f64();
    assert!(cpu < seconds * 0.5, "no tight retry loop while the disk is full: {cpu:.1} s of CPU in {seconds:.1} s");
    let failure_lines = server.logs.lock().unwrap().iter().filter(|l| l.contains("search indexing failed")).count();
    assert!(failure_lines <= 3, "failures are logged at a bounded rate ({failure_lines} lines)");

    std::fs::remove_file(filler).unwrap();
    let space_back = Instant::now();
    loop {
        if post(&server, i).await == 201 {
            break;
        }
        i += 1;
        assert!(space_back.elapsed() < Duration::from_secs(10), "writes did not resume within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the search index retries every 10 s at most, and catches up from the store
    let ready = loop {
        let ready = server.get("/readyz").await;
        if ready.status == 200 || space_back.elapsed() > Duration::from_secs(15) {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready.status, 200, "{ready:?}");
    let found = server.get(&format!("{path}/search?q=message%2049%20")).await;
    assert_eq!(found.json.as_array().map(Vec::len), Some(1), "search caught up: {found:?}");
    for j in 0..20 {
        assert_eq!(post(&server, i + 1 + j).await, 201);
    }

    // after a crash, every answered create is there, and numbering goes on above them all
    server.kill();
    let server = Server::start(&data);
    let stored = server.all_pages(&format!("{path}?limit=1000")).await;
    let mut numbers = BTreeSet::new();
    for (number, body) in &acknowledged {
        assert!(numbers.insert(*number), "number {number} was answered twice");
        let found = stored.iter().find(|m| m["number"].as_u64() == Some(*number));
        assert_eq!(found.and_then(|m| m["body"].as_str()), Some(body.as_str()), "message {number} is stored");
    }
    let next = server.post(&path, json!({"body": "after the restart"})).await;
    let highest = numbers.last().copied().unwrap();
    assert!(next.json["number"].as_u64().unwrap() > highest, "{next:?} after {highest}");
    drop(server);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_after_a_restart_with_the_clock_set_back_is_kept() {
    if std::process::Command::new("faketime").arg("--version").output().is_err() {
        assert!(std::env::var("CHATSYS_TEST_REQUIRE_SERVICES").is_err(), "faketime (Debian package) is required here");
        eprintln!("skipped: this test needs faketime (Debian package faketime)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let n = server.post(&path, json!({"body": "created"})).await.json["number"].as_u64().unwrap();
    let first = server.request("PUT", &format!("{path}/{n}"), Some(json!({"body": "before the restart"}))).await;
    assert_eq!(first.status, 200);
    assert_eq!(server.terminate().code(), Some(0));

    // the same data, a clock an hour behind
    let env = [("FAKETIME_DONT_FAKE_MONOTONIC", "1")];
    let server = Server::spawn_wrapped(&["faketime", "-f", "-3600s"], "serve", dir.path(), &env);
    let second = server.request("PUT", &format!("{path}/{n}"), Some(json!({"body": "after the restart"}))).await;
    assert_eq!((second.status, second.json["body"].as_str()), (200, Some("after the restart")), "{second:?}");
    assert!(
        second.json["updated_at"].as_str() < first.json["updated_at"].as_str(),
        "the server's clock is behind: {} then {}",
        first.json["updated_at"],
        second.json["updated_at"]
    );
    let stored = server.get(&format!("{path}/{n}")).await;
    assert_eq!(stored.json["body"], "after the restart", "an edit answered 200 is never dropped");
}
