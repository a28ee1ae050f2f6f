//! Faults of distributed mode that harm no one else (processes of the test's own, Redis keys
//! under its own prefix, a trigger in its own database, a server with its clock set back),
//! each under a running load of creates and ending with "every 201 is in the database
//! exactly once, numbers unique, counts exact". Faults of the shared services themselves are
//! in `faults_services.rs`.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use common::load::{Load, setup, verify, verify_exactly};
use futures::stream::{self, StreamExt as _};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let Some(mut cluster) = Cluster::start(1, 2, false).await else { return };
    let (_, token, chats, seeds) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cluster.workers.remove(0).kill();
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.add_worker();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds);
    verify(&cluster, &token, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_server_killed_under_load_loses_nothing_it_acknowledged() {
    let Some(mut cluster) = Cluster::start(2, 1, true).await else { return };
    let (_, token, chats, seeds) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cluster.apis.remove(0).kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut acknowledged = load.stop().await;
    assert!(acknowledged.len() > 100, "the load ran ({} creates)", acknowledged.len());
    acknowledged.extend(seeds);
    verify(&cluster, &token, &acknowledged).await;
}

/// Every key of this deployment gone at once (its own prefix: the Redis is shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_data_loss_never_hands_out_a_number_twice() {
    let Some(cluster) = Cluster::start(2, 1, true).await else { return };
    let (_, token, chats, seeds) = setup(&cluster).await;
    let load = Load::start(&cluster.base, &token, &chats, 32);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    chatsys_testkit::redis::delete_prefix(&cluster.name).await;
    // recovery: 503s while the queue drains (1 s of quiet in these tests), then creates resume
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let refused = load.refused.load(Ordering::Relaxed);
    let mut acknowledged = load.stop().await;
    assert!(refused > 0, "creates were refused while the counters recovered");
    let last = acknowledged.iter().filter(|(chat, ..)| *chat == chats[0]).map(|(_, n, _)| *n).max().unwrap_or(0);
    acknowledged.extend(seeds);
    verify(&cluster, &token, &acknowledged).await;
    // numbering resumed after the recovery from the highest stored number
    let next = Client::new(&cluster.base)
        .post(&format!("/applications/{token}/chats/{}/messages", chats[0]), json!({"body": "after"}))
        .await;
    assert_eq!(next.json["number"].as_u64(), Some(last.max(1) + 1), "{next:?}");
}

/// A worker cut off from the database keeps its deliveries unacknowledged, where the broker
/// no longer counts them as waiting. A Redis data loss meanwhile must not re-seed the
/// counters below the numbers those deliveries carry: creates wait (503) until they are
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_data_loss_while_a_worker_holds_unwritten_creates_never_hands_out_a_number_twice() {
    let Some(mut cluster) = Cluster::start(1, 0, false).await else { return };
    let (proxy, through) = cluster.proxied("CHATSYS_DATABASE_URL").await;
    cluster.add_worker_with(&[("CHATSYS_DATABASE_URL", &through), ("CHATSYS_WRITE_TIMEOUT", "1s")]);
    let (front, token, chats, seeds) = setup(&cluster).await;
    let path = format!("/applications/{token}/chats/{}/messages", chats[0]);
    let mut acknowledged = seeds;
    cluster.sql_eventually(&format!("SELECT COUNT(*) FROM messages WHERE chat_number = {}", chats[0]), &["1"]).await;

    proxy.cut();
    let mut held = Vec::new();
    for i in 0..3 {
        let r = front.post(&path, json!({"body": format!("held {i}")})).await;
        assert_eq!(r.status, 201, "the queue takes creates while the worker cannot write: {r:?}");
        held.push(r.json["number"].as_u64().unwrap());
        acknowledged.push((chats[0], held[i], format!("held {i}")));
    }
    cluster.drained().await; // the worker took them: nothing waits in the queue
    chatsys_testkit::redis::delete_prefix(&cluster.name).await;
    // the recovery settles for 1 s in these tests: give it four
    refused_for(&front, &path, Duration::from_secs(4), &format!("while the worker holds unwritten creates {held:?}"))
        .await;

    proxy.mend();
    let after = next_message_within(&front, &path, Duration::from_secs(30)).await;
    let number = after.json["number"].as_u64().unwrap();
    assert_eq!(number, held[2] + 1, "numbering goes on above the held creates");
    acknowledged.push((chats[0], number, "after".to_owned()));
    verify(&cluster, &token, &acknowledged).await;
}

/// Posts "after" to `path` until the counters have recovered (503 until then), within `bound`.
async fn next_message_within(front: &Client, path: &str, bound: Duration) -> common::Reply {
    let until = tokio::time::Instant::now() + bound;
    loop {
        let r = front.post(path, json!({"body": "after"})).await;
        if r.status == 201 {
            return r;
        }
        assert!(r.is_problem(503), "only 503 while the counters recover: {r:?}");
        assert!(tokio::time::Instant::now() < until, "creates resume within {bound:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates must answer 503 for all of `span` (posting every 100 ms), `why`.
async fn refused_for(front: &Client, path: &str, span: Duration, why: &str) {
    let until = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < until {
        let r = front.post(path, json!({"body": "during"})).await;
        assert!(r.is_problem(503), "no number {why}: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts `body` to `path` through `api` in a task of its own; returns once `api` has
/// numbered it and waits for its broker to take it.
async fn post_held_at_the_broker(api: &Client, path: &str, body: &str) -> tokio::task::JoinHandle<common::Reply> {
    let (client, path, body) = (Client::new(&api.base), path.to_owned(), body.to_owned());
    let reply = tokio::spawn(async move { client.post(&path, json!({"body": body})).await });
    a_create_waits_for_the_broker(api).await;
    reply
}

/// Waits until `api` has numbered a create and waits for the broker to take it.
async fn a_create_waits_for_the_broker(api: &Client) {
    for _ in 0..200 {
        let metrics = api.get("/metrics").await.text;
        if metrics.lines().any(|l| l.starts_with("chatsys_queue_in_flight ") && l != "chatsys_queue_in_flight 0") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no create waits for the broker");
}

/// A create numbered just before a Redis data loss can still be on its way to the broker,
/// waiting for its confirm, when the counters recover. The recovery must wait for it, or the
/// re-seeded counter hands its number out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_data_loss_while_a_create_waits_for_its_confirm_never_hands_out_a_number_twice() {
    let Some(mut cluster) = Cluster::start(1, 1, false).await else { return };
    let (front, token, chats, seeds) = setup(&cluster).await;
    let (proxy, through) = cluster.proxied("CHATSYS_AMQP_URL").await;
    cluster.add_api_with(&[("CHATSYS_AMQP_URL", &through)]);
    let path = format!("/applications/{token}/chats/{}/messages", chats[0]);
    let mut acknowledged = seeds;

    proxy.cut();
    let in_flight = post_held_at_the_broker(&cluster.apis[1], &path, "in flight").await;
    chatsys_testkit::redis::delete_prefix(&cluster.name).await;
    // the recovery settles for 1 s in these tests: give it four
    refused_for(&front, &path, Duration::from_secs(4), "while a create numbered before the loss is in flight").await;

    proxy.mend();
    let confirmed = in_flight.await.unwrap();
    assert_eq!(confirmed.status, 201, "the create in flight is confirmed once its broker answers: {confirmed:?}");
    let held = confirmed.json["number"].as_u64().unwrap();
    acknowledged.push((chats[0], held, "in flight".to_owned()));
    let after = next_message_within(&front, &path, Duration::from_secs(30)).await;
    assert_eq!(after.json["number"].as_u64(), Some(held + 1), "numbering goes on above the create in flight");
    acknowledged.push((chats[0], held + 1, "after".to_owned()));
    verify(&cluster, &token, &acknowledged).await;
}

/// A create whose broker stops answering fails with 503, and the tombstone that must follow
/// it waits while the broker refuses connections; the create itself may still reach the
/// broker later. A Redis data loss meanwhile must not re-seed the counters below its number
/// before its tombstone is queued, in the pauses between the tombstone's tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_data_loss_while_a_failed_create_waits_for_its_tombstone_never_hands_out_its_number() {
    let Some(mut cluster) = Cluster::start(1, 1, false).await else { return };
    let (front, token, chats, seeds) = setup(&cluster).await;
    let (proxy, through) = cluster.proxied("CHATSYS_AMQP_URL").await;
    cluster.add_api_with(&[("CHATSYS_AMQP_URL", &through), ("CHATSYS_WRITE_TIMEOUT", "1s")]);
    let path = format!("/applications/{token}/chats/{}/messages", chats[0]);
    let mut acknowledged = seeds;

    proxy.cut();
    proxy.refuse_new();
    let failing = post_held_at_the_broker(&cluster.apis[1], &path, "failed").await;
    chatsys_testkit::redis::delete_prefix(&cluster.name).await;
    // the create fails after 1 s; its tombstone's tries fail at once, 0.5, 1, 2 and 4 s apart,
    // and the recovery settles for 1 s in these tests
    refused_for(&front, &path, Duration::from_secs(7), "while a failed create's tombstone is not queued").await;
    let failed = failing.await.unwrap();
    assert!(failed.is_problem(503), "a create whose broker stopped answering fails: {failed:?}");

    proxy.mend();
    let after = next_message_within(&front, &path, Duration::from_secs(30)).await;
    assert_eq!(after.json["number"].as_u64(), Some(3), "the failed create's number (2) stays used");
    acknowledged.push((chats[0], 3, "after".to_owned()));
    verify_exactly(&cluster, &token, &acknowledged).await;
    let tombstone = format!(
        "SELECT m.deleted FROM messages m JOIN applications a ON a.id = m.application_id \
         WHERE a.token = '{token}' AND m.chat_number = {} AND m.number = 2",
        chats[0]
    );
    assert_eq!(cluster.sql_eventually(&tombstone, &["1"]).await, ["1"], "the failed create ends as a tombstone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_the_database_refuses_is_dead_lettered_alone_and_the_worker_moves_on() {
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let front = std::sync::Arc::new(Client::new(&cluster.base));
    let token = front.new_app().await;
    let chat = front.new_chat(&token).await;
    cluster
        .sql(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON messages FOR EACH ROW BEGIN \
             IF NEW.body = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a test trigger'; \
             END IF; END",
        )
        .await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    // the poison among others, all at once: they share deliveries and batches with it
    let acknowledged: Vec<(u64, String)> = stream::iter(0..200)
        .map(|i| {
            let (front, path) = (front.clone(), path.clone());
            async move {
                let body = if i == 100 { "poison".to_owned() } else { format!("fine {i}") };
                let r = front.post(&path, json!({"body": body})).await;
                assert_eq!(r.status, 201, "queued durably before any worker sees it: {r:?}");
                (r.json["number"].as_u64().unwrap(), body)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // the worker moves on: later creates are written too
    let later = front.post(&path, json!({"body": "later"})).await;
    assert_eq!(later.status, 201);
    cluster.drained().await;
    let fine = acknowledged.len(); // 199 fine ones and the later one
    let mut stored = BTreeSet::new();
    for _ in 0..300 {
        stored = cluster
            .sql(&format!("SELECT number, body FROM messages WHERE chat_number = {chat}"))
            .await
            .into_iter()
            .map(|r| (r[0].parse::<u64>().unwrap(), r[1].clone()))
            .collect();
        if stored.len() >= fine {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (number, body) in &acknowledged {
        assert_eq!(stored.contains(&(*number, body.clone())), body != "poison", "message {number} ({body})");
    }
    assert!(stored.iter().any(|(_, b)| b == "later"));
    let dead = chatsys_testkit::rabbitmq::take_all(&format!("{}.commands.dead", cluster.name)).await;
    assert_eq!(dead.len(), 1, "exactly one command is set aside");
    let (payload, reason) = &dead[0];
    let commands: Vec<serde_json::Value> = serde_json::from_slice(payload).unwrap();
    assert_eq!(commands.len(), 1, "alone, not with the others of its delivery");
    assert_eq!(commands[0]["command"]["body"], "poison");
    assert!(reason.as_deref().unwrap_or("").contains("refused by a test trigger"), "the reason: {reason:?}");
    let c = front.get(&format!("/applications/{token}/chats/{chat}")).await;
    assert_eq!(c.json["messages_count"], 200, "199 fine and the later one");
}

fn faketime() -> bool {
    let present = std::process::Command::new("faketime").arg("--version").output().is_ok();
    if !present {
        assert!(
            std::env::var("CHATSYS_TEST_REQUIRE_SERVICES").is_err(),
            "faketime (Debian package faketime) is required here"
        );
        eprintln!("skipped: this test needs faketime (Debian package faketime)");
    }
    present
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_through_servers_whose_clocks_differ_keep_the_last_accepted_one() {
    if !faketime() {
        return;
    }
    let Some(mut cluster) = Cluster::start(1, 1, false).await else { return };
    cluster.add_api_wrapped(&["faketime", "-f", "-30s"]);
    let (ahead, behind) = (Client::new(&cluster.apis[0].base), Client::new(&cluster.apis[1].base));
    let token = ahead.new_app().await;
    let chat = ahead.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let mut expected = Vec::new();
    for i in 0..80u64 {
        let n = ahead.post(&path, json!({"body": format!("created {i}")})).await.json["number"].as_u64().unwrap();
        // alternate which server takes the first and which the last edit
        let (first, last) = if i % 2 == 0 { (&ahead, &behind) } else { (&behind, &ahead) };
        let r = first.request("PUT", &format!("{path}/{n}"), Some(json!({"body": format!("first {i}")}))).await;
        assert_eq!(r.status, 200, "{r:?}");
        let r = last.request("PUT", &format!("{path}/{n}"), Some(json!({"body": format!("last {i}")}))).await;
        assert_eq!(r.status, 200, "{r:?}");
        expected.push((n, format!("last {i}")));
    }
    cluster.drained().await;
    for (n, body) in expected {
        let m = ahead.get(&format!("{path}/{n}")).await;
        assert_eq!(m.json["body"].as_str(), Some(body.as_str()), "message {n}: the last accepted edit wins");
    }
}
