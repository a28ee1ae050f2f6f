//! Distributed mode end to end, on this machine's MariaDB, Redis and RabbitMQ: several API
//! servers and workers, nginx in front.

mod common;

use std::sync::Arc;

use common::Client;
use common::cluster::Cluster;
use futures::stream::{self, StreamExt as _};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_and_three_times_sixty_four_racing_clients_get_exactly_one_to_n() {
    let Some(cluster) = Cluster::start(3, 2, true).await else { return };
    let front = Arc::new(Client::new(&cluster.base));
    let token = front.new_app().await;

    let chats: Vec<u64> = stream::iter(0..576)
        .map(|_| {
            let (front, token) = (front.clone(), token.clone());
            async move { front.new_chat(&token).await }
        })
        .buffer_unordered(192)
        .collect()
        .await;
    let mut sorted = chats.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=576).collect::<Vec<_>>(), "chat numbers are exactly 1..576");

    let messages: Vec<u64> = stream::iter(0..960)
        .map(|i| {
            let (front, token) = (front.clone(), token.clone());
            async move {
                let r = front
                    .post(&format!("/applications/{token}/chats/9/messages"), json!({"body": format!("m{i}")}))
                    .await;
                assert_eq!(r.status, 201, "{r:?}");
                r.json["number"].as_u64().unwrap()
            }
        })
        .buffer_unordered(192)
        .collect()
        .await;
    let mut sorted = messages.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=960).collect::<Vec<_>>(), "message numbers are exactly 1..960");

    // every server took part, and everything reached the database exactly once
    for api in &cluster.apis {
        let metrics = api.get("/metrics").await.text;
        assert!(metrics.contains("chatsys_creates_total{kind=\"message\"}"), "a server took no message creates");
    }
    cluster.drained().await;
    let counts = format!(
        "SELECT (SELECT COUNT(*) FROM chats c JOIN applications a ON a.id = c.application_id WHERE a.token = '{token}'), \
                (SELECT COUNT(*) FROM messages m JOIN applications a ON a.id = m.application_id WHERE a.token = '{token}' AND m.chat_number = 9)"
    );
    assert_eq!(cluster.sql_eventually(&counts, &["576", "960"]).await, ["576", "960"]);
    let app = front.get(&format!("/applications/{token}")).await;
    assert_eq!(app.json["chats_count"], 576);
    let chat = front.get(&format!("/applications/{token}/chats/9")).await;
    assert_eq!(chat.json["messages_count"], 960);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_made_right_after_its_create_is_never_lost() {
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let front = Arc::new(Client::new(&cluster.base));
    let token = front.new_app().await;
    let chat = front.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let edited: Vec<u64> = stream::iter(0..40)
        .map(|i| {
            let (front, path) = (front.clone(), path.clone());
            async move {
                let created = front.post(&path, json!({"body": format!("first {i}")})).await;
                assert_eq!(created.status, 201);
                let n = created.json["number"].as_u64().unwrap();
                // at once: the create may not be in the database yet
                let r =
                    front.request("PUT", &format!("{path}/{n}"), Some(json!({"body": format!("second {i}")}))).await;
                assert_eq!((r.status, r.json["body"].as_str()), (200, Some(format!("second {i}").as_str())), "{r:?}");
                n
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    cluster.drained().await;
    // a worker may still hold the last deliveries: each check waits, with a bound
    for n in edited {
        let mut m = front.get(&format!("{path}/{n}")).await;
        for _ in 0..100 {
            if m.json["body"].as_str().is_some_and(|b| b.starts_with("second")) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            m = front.get(&format!("{path}/{n}")).await;
        }
        assert!(m.json["body"].as_str().unwrap().starts_with("second"), "{m:?}");
    }
    let counted = format!(
        "SELECT messages_count FROM chats c JOIN applications a ON a.id = c.application_id \
         WHERE a.token = '{token}' AND c.number = {chat}"
    );
    assert_eq!(cluster.sql_eventually(&counted, &["40"]).await, ["40"]);
    let c = front.get(&format!("/applications/{token}/chats/{chat}")).await;
    assert_eq!(c.json["messages_count"], 40);
}

#[tokio::test]
async fn without_elasticsearch_search_answers_503_and_readiness_says_so() {
    let Some(cluster) = Cluster::start(1, 1, false).await else { return };
    let front = Client::new(&cluster.base);
    let token = front.new_app().await;
    let chat = front.new_chat(&token).await;
    let r = front.get(&format!("/applications/{token}/chats/{chat}/messages/search?q=x")).await;
    assert!(r.is_problem(503), "{r:?}");
    assert!(r.json["detail"].as_str().unwrap().contains("search"), "{r:?}");
    let ready = front.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json["checks"]["search"], "not configured");
}
