//! A running load of message creates, and the check that ends every fault test: every 201
//! is in the database exactly once, numbers are unique, counts are exact.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;

use super::cluster::Cluster;

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
    let stored: BTreeMap<(u64, u64), String> = cluster
        .sql(&format!("SELECT chat_number, number, body FROM messages WHERE application_id = {app}"))
        .await
        .into_iter()
        .map(|r| ((r[0].parse().unwrap(), r[1].parse().unwrap()), r[2].clone()))
        .collect();
    for (chat, number, body) in acknowledged {
        assert_eq!(stored.get(&(*chat, *number)), Some(body), "acknowledged message {number} of chat {chat} is stored");
    }
    let counts = cluster.sql(&format!(
        "SELECT c.number, c.messages_count, (SELECT COUNT(*) FROM messages m \
         WHERE m.application_id = c.application_id AND m.chat_number = c.number) FROM chats c WHERE c.application_id = {app}"
    ))
    .await;
    for row in counts {
        assert_eq!(row[1], row[2], "messages_count of chat {} equals its rows", row[0]);
    }
    let apps = cluster.sql(&format!(
        "SELECT chats_count, (SELECT COUNT(*) FROM chats WHERE application_id = {app}) FROM applications WHERE id = {app}"
    ))
    .await;
    assert_eq!(apps[0][0], apps[0][1], "chats_count equals the rows");
}
