//! Deletes and erasure through a cluster on this machine's MariaDB, Redis and RabbitMQ:
//! racing creates, edits and deletes across three servers; tokens forgotten on every server
//! at once; nothing of an erased application left in MySQL or Redis; numbers never reused,
//! across a Redis data loss too.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use rand::Rng as _;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creates_edits_and_deletes_across_three_servers_end_in_the_acknowledged_state() {
    let Some(cluster) = Cluster::start(3, 2, false).await else { return };
    let clients: Vec<Client> = cluster.apis.iter().map(|a| Client::new(&a.base)).collect();
    let token = clients[0].new_app().await;
    let chat = clients[0].new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (path, bases) = (path.clone(), cluster.apis.iter().map(|a| a.base.clone()).collect::<Vec<_>>());
            tokio::spawn(async move {
                let clients: Vec<Client> = bases.iter().map(|b| Client::new(b)).collect();
                let mut state: BTreeMap<u64, Option<String>> = BTreeMap::new();
                for i in 0..50 {
                    let client = &clients[rand::rng().random_range(0..clients.len())];
                    let live: Vec<u64> = state.iter().filter(|(_, b)| b.is_some()).map(|(n, _)| *n).collect();
                    let roll = rand::rng().random_range(0..10);
                    if live.is_empty() || roll < 5 {
                        let body = format!("w{w} created {i}");
                        let r = client.post(&path, json!({"body": body})).await;
                        assert_eq!(r.status, 201, "{r:?}");
                        state.insert(r.json["number"].as_u64().unwrap(), Some(body));
                    } else if roll < 8 {
                        let n = live[rand::rng().random_range(0..live.len())];
                        let body = format!("w{w} edited {i}");
                        let r = client.request("PUT", &format!("{path}/{n}"), Some(json!({"body": body}))).await;
                        assert_eq!(r.status, 200, "{r:?}");
                        state.insert(n, Some(body));
                    } else {
                        let n = live[rand::rng().random_range(0..live.len())];
                        assert_eq!(client.request("DELETE", &format!("{path}/{n}"), None).await.status, 204);
                        state.insert(n, None);
                        // right after, through another server: gone for good
                        let other = &clients[(rand::rng().random_range(1..clients.len())) % clients.len()];
                        let edit = other.request("PUT", &format!("{path}/{n}"), Some(json!({"body": "back?"}))).await;
                        assert!(edit.is_problem(404), "an edit after the delete: {edit:?}");
                    }
                }
                state
            })
        })
        .collect();
    let mut expected: BTreeMap<u64, String> = BTreeMap::new();
    let mut deleted = 0;
    for w in writers {
        for (n, body) in w.await.unwrap() {
            match body {
                Some(body) => {
                    expected.insert(n, body);
                }
                None => deleted += 1,
            }
        }
    }
    assert!(deleted > 5, "the race deleted messages ({deleted})");
    cluster.drained().await;
    let mut stored = BTreeMap::new();
    for _ in 0..100 {
        stored = clients[1]
            .all_pages(&format!("{path}?limit=1000"))
            .await
            .iter()
            .map(|m| (m["number"].as_u64().unwrap(), m["body"].as_str().unwrap().to_owned()))
            .collect();
        if stored == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, expected, "the stored state is the acknowledged one");
    let c = clients[2].get(&format!("/applications/{token}/chats/{chat}")).await;
    assert_eq!(c.json["messages_count"].as_u64(), Some(expected.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_application_is_unknown_on_every_server_at_once_and_leaves_nothing() {
    let Some(cluster) = Cluster::start(3, 1, false).await else { return };
    let clients: Vec<Client> = cluster.apis.iter().map(|a| Client::new(&a.base)).collect();
    let r = clients[0].post("/applications", json!({"name": "Mq3marker app"})).await;
    let token = r.json["token"].as_str().unwrap().to_owned();
    let app_path = format!("/applications/{token}");
    for client in &clients {
        assert_eq!(client.get(&app_path).await.status, 200, "every server has resolved (and cached) the token");
    }
    let keyed = clients[1]
        .http
        .post(clients[1].url(&format!("{app_path}/chats")))
        .header("idempotency-key", "Mq3marker-key")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    let chat = 1;
    let path = format!("{app_path}/chats/{chat}/messages");
    for i in 0..5 {
        clients[2].post(&path, json!({"body": format!("Mq3marker {i}")})).await;
    }
    cluster.drained().await;
    let id = cluster.sql(&format!("SELECT id FROM applications WHERE token = '{token}'")).await[0][0].clone();

    assert_eq!(clients[0].request("DELETE", &app_path, None).await.status, 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for client in &clients[1..] {
        assert!(client.get(&app_path).await.is_problem(404), "forgotten by every server");
        assert!(client.post(&path, json!({"body": "late"})).await.is_problem(404), "no create goes through");
    }
    cluster.drained().await;
    for (table, text) in [
        ("applications", "CONCAT(name, token)"),
        ("messages", "body"),
        ("idempotency_keys", "CONCAT(scope, location, body)"),
    ] {
        let rows = cluster
            .sql(&format!("SELECT COUNT(*) FROM {table} WHERE {text} LIKE '%Mq3marker%' OR {text} LIKE '%{token}%'"))
            .await;
        assert_eq!(rows[0][0], "0", "no row of {table} holds the erased text or token");
    }
    let left = cluster.sql(&format!("SELECT COUNT(*) FROM chats WHERE application_id = {id}")).await;
    assert_eq!(left[0][0], "0");
    let keys = redis_keys(&format!("{}:{{a{id}}}:*", cluster.name)).await;
    assert!(keys.is_empty(), "no Redis key of the application: {keys:?}");
    let records = cluster.sql("SELECT COUNT(*) FROM idempotency_keys WHERE idem_key = 'Mq3marker-key'").await;
    assert_eq!(records[0][0], "0", "its idempotency records are gone");
    let answers = redis_values(&format!("{}:idem*", cluster.name)).await;
    assert!(!answers.iter().any(|v| v.contains(&token)), "no answer kept in Redis names it: {answers:?}");
}

/// The string values of the keys matching `pattern` (sets are skipped).
async fn redis_values(pattern: &str) -> Vec<String> {
    let client = redis::Client::open(chatsys_testkit::Service::Redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut values = Vec::new();
    for key in redis_keys(pattern).await {
        if let Ok(value) = redis::cmd("GET").arg(&key).query_async::<String>(&mut conn).await {
            values.push(value);
        }
    }
    values
}

async fn redis_keys(pattern: &str) -> Vec<String> {
    let client = redis::Client::open(chatsys_testkit::Service::Redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_numbers_are_never_reused_even_after_a_redis_data_loss() {
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let front = Client::new(&cluster.base);
    let token = front.new_app().await;
    for _ in 0..3 {
        front.new_chat(&token).await;
    }
    let path = format!("/applications/{token}/chats/1/messages");
    for i in 1..=7 {
        front.post(&path, json!({"body": format!("m{i}")})).await;
    }
    assert_eq!(front.request("DELETE", &format!("{path}/7"), None).await.status, 204);
    assert_eq!(front.request("DELETE", &format!("/applications/{token}/chats/3"), None).await.status, 204);
    cluster.drained().await;
    chatsys_testkit::redis::delete_prefix(&cluster.name).await;
    // creates answer 503 until the counters recover (1 s of quiet in these tests)
    let mut next = front.post(&path, json!({"body": "eight"})).await;
    for _ in 0..100 {
        if next.status == 201 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        next = front.post(&path, json!({"body": "eight"})).await;
    }
    assert_eq!(next.json["number"], 8, "{next:?}");
    assert_eq!(front.new_chat(&token).await, 4);
    assert!(front.get(&format!("{path}/7")).await.is_problem(404));
    assert!(front.request("DELETE", &format!("{path}/7"), None).await.is_problem(404), "still deleted");
    let chat3 = front.post(&format!("/applications/{token}/chats/3/messages"), json!({"body": "x"})).await;
    assert!(chat3.is_problem(404), "the deleted chat stays deleted: {chat3:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_message_s_kept_answer_goes_with_it() {
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let front = Client::new(&cluster.base);
    let token = front.new_app().await;
    let chat = front.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let keyed = front
        .http
        .post(front.url(&path))
        .header("idempotency-key", "Vb2marker-key")
        .json(&json!({"body": "Vb2marker text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    cluster.drained().await;
    assert!(redis_values(&format!("{}:idem*", cluster.name)).await.iter().any(|v| v.contains("Vb2marker")));
    assert_eq!(front.request("DELETE", &format!("{path}/1"), None).await.status, 204);
    cluster.drained().await;
    for _ in 0..50 {
        let rows = cluster.sql("SELECT COUNT(*) FROM idempotency_keys WHERE body LIKE '%Vb2marker%'").await;
        if rows[0][0] == "0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = cluster.sql("SELECT COUNT(*) FROM idempotency_keys WHERE body LIKE '%Vb2marker%'").await;
    assert_eq!(rows[0][0], "0", "the stored answer is erased with the message");
    let kept = redis_values(&format!("{}:idem*", cluster.name)).await;
    assert!(!kept.iter().any(|v| v.contains("Vb2marker")), "and the one kept in Redis: {kept:?}");
}
