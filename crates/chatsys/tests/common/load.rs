//! A running load of message creates, and the check that ends every fault test: every 201
//! is in the database exactly once, numbers are unique, counts are exact.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

use super::Client;
use super::cluster::Cluster;

/// An application with six chats, each holding one acknowledged "seed" message (so every
/// chat's counter is seeded while everything is up); the seeds count in the checks.
pub async fn setup(cluster: &Cluster) -> (Client, String, Vec<u64>, Vec<(u64, u64, String)>) {
    let front = Client::new(&cluster.base);
    let token = front.new_app().await;
    let mut chats = Vec::new();
    for _ in 0..6 {
        chats.push(front.new_chat(&token).await);
    }
    for chat in &chats {
        let r = front.post(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": "seed"})).await;
        assert_eq!(r.status, 201);
    }
    let seeds = chats.iter().map(|c| (*c, 1, "seed".to_owned())).collect();
    (front, token, chats, seeds)
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(u64, u64, String)>>>,
    pub refused: Arc<AtomicU64>,
}

impl Load {
    /// `clients` loops posting messages to random chats among `chats` through `base`.
    pub fn start(base: &str, token: &str, chats: &[u64], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15)).build().unwrap();
        let tasks = (0..clients)
            .map(|client| {
                let (stop, refused, http) = (stop.clone(), refused.clone(), http.clone());
                let (base, token, chats) = (base.to_owned(), token.to_owned(), chats.to_vec());
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let chat = chats[(client + i as usize) % chats.len()];
                        let body = format!("client {client} message {i}");
                        let url = format!("{base}/applications/{token}/chats/{chat}/messages");
                        match http.post(url).json(&json!({"body": body})).send().await {
                            Ok(r) if r.status() == 201 => {
                                let m: serde_json::Value = r.json().await.unwrap();
                                acknowledged.push((chat, m["number"].as_u64().unwrap(), body));
                            }
                            Ok(r) => {
                                assert!(r.status().is_server_error(), "only a 5xx may refuse a create: {}", r.status());
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                            Err(_) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            }
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        Load { stop, tasks, refused }
    }

    pub async fn stop(self) -> Vec<(u64, u64, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all
    }
}

/// As [`verify`], and no other message is stored (live) either: a create answered 5xx
/// never appears, however long after (its tombstone may trail it by a few seconds).
pub async fn verify_exactly(cluster: &Cluster, token: &str, acknowledged: &[(u64, u64, String)]) {
    verify(cluster, token, acknowledged).await;
    let expected: BTreeSet<(u64, u64)> = acknowledged.iter().map(|(c, n, _)| (*c, *n)).collect();
    let mut extra = Vec::new();
    for _ in 0..200 {
        let live = live_messages(cluster, token).await;
        extra = live.keys().filter(|k| !expected.contains(k)).copied().collect();
        if extra.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("messages whose create was not answered 201 are stored: {extra:?}");
}

async fn live_messages(cluster: &Cluster, token: &str) -> BTreeMap<(u64, u64), String> {
    let app = &cluster.sql(&format!("SELECT id FROM applications WHERE token = '{token}'")).await[0][0];
    cluster
        .sql(&format!("SELECT chat_number, number, body FROM messages WHERE application_id = {app} AND NOT deleted"))
        .await
        .into_iter()
        .map(|r| ((r[0].parse().unwrap(), r[1].parse().unwrap()), r[2].clone()))
        .collect()
}

/// Every acknowledged message is stored once with its body; no number was given twice;
/// the counts equal the rows.
pub async fn verify(cluster: &Cluster, token: &str, acknowledged: &[(u64, u64, String)]) {
    cluster.drained().await;
    assert_eq!(cluster.dead_lettered().await, 0, "no command was dead-lettered");
    let app = &cluster.sql(&format!("SELECT id FROM applications WHERE token = '{token}'")).await[0][0];
    let mut given: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for (chat, number, _) in acknowledged {
        assert!(
            given.entry(*chat).or_default().insert(*number),
            "message {number} of chat {chat} was handed out twice"
        );
    }
    // the queue's ready count says nothing of deliveries a worker still holds: wait (bounded)
    // until every acknowledged message is there, then check
    let mut stored = live_messages(cluster, token).await;
    for _ in 0..300 {
        if acknowledged.iter().all(|(c, n, b)| stored.get(&(*c, *n)) == Some(b)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stored = live_messages(cluster, token).await;
    }
    for (chat, number, body) in acknowledged {
        assert_eq!(stored.get(&(*chat, *number)), Some(body), "acknowledged message {number} of chat {chat} is stored");
    }
    let counts = cluster
        .sql(&format!(
            "SELECT c.number, c.messages_count, (SELECT COUNT(*) FROM messages m \
         WHERE m.application_id = c.application_id AND m.chat_number = c.number AND NOT m.deleted) \
         FROM chats c WHERE c.application_id = {app} AND NOT c.deleted"
        ))
        .await;
    for row in counts {
        assert_eq!(row[1], row[2], "messages_count of chat {} equals its rows", row[0]);
    }
    let apps = cluster
        .sql(&format!(
            "SELECT chats_count, (SELECT COUNT(*) FROM chats WHERE application_id = {app} AND NOT deleted) \
         FROM applications WHERE id = {app}"
        ))
        .await;
    assert_eq!(apps[0][0], apps[0][1], "chats_count equals the rows");
}
