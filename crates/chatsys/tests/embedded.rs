//! The embedded binary end to end: durability across SIGKILL, racing creates, graceful
//! shutdown, idempotent creates across a restart.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::Server;
use futures::stream::{self, StreamExt as _};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_message_survives_sigkill_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path()));
    let token = server.new_app().await;
    let chats: Vec<u64> = stream::iter(0..8).then(|_| server.new_chat(&token)).collect().await;

    // 2,000 messages from 32 concurrent clients, spread over the chats.
    let acknowledged: Vec<(u64, u64, String)> = stream::iter(0..2000)
        .map(|i| {
            let (server, token) = (server.clone(), token.clone());
            let chat = chats[i % chats.len()];
            async move {
                let body = format!("message {i} in chat {chat} ✓");
                let r =
                    server.post(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": body})).await;
                assert_eq!(r.status, 201, "{r:?}");
                (chat, r.json["number"].as_u64().unwrap(), body)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // right after the last 201
    Arc::into_inner(server).expect("no other handle").kill();

    let server = Server::start(dir.path());
    let mut per_chat: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    for (chat, number, body) in acknowledged {
        assert!(per_chat.entry(chat).or_default().insert(number, body).is_none(), "number {number} given twice");
    }
    for (chat, expected) in &per_chat {
        let stored = server.all_pages(&format!("/applications/{token}/chats/{chat}/messages?limit=1000")).await;
        let stored: BTreeMap<u64, String> =
            stored.iter().map(|m| (m["number"].as_u64().unwrap(), m["body"].as_str().unwrap().to_owned())).collect();
        assert_eq!(&stored, expected, "chat {chat} holds exactly the acknowledged messages");
        let c = server.get(&format!("/applications/{token}/chats/{chat}")).await;
        assert_eq!(c.json["messages_count"].as_u64(), Some(expected.len() as u64), "messages_count of chat {chat}");
        let next = server.post(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": "after"})).await;
        assert_eq!(next.json["number"].as_u64(), Some(expected.len() as u64 + 1), "numbering continues");
    }
    let app = server.get(&format!("/applications/{token}")).await;
    assert_eq!(app.json["chats_count"], 8);
    assert_eq!(server.new_chat(&token).await, 9, "chat numbering continues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_racing_clients_get_exactly_one_to_n() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path()));
    let token = server.new_app().await;

    let chats: Vec<u64> = stream::iter(0..640)
        .map(|_| {
            let (server, token) = (server.clone(), token.clone());
            async move { server.new_chat(&token).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut sorted = chats.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=640).collect::<Vec<_>>(), "chat numbers are exactly 1..640");

    let messages: Vec<u64> = stream::iter(0..1280)
        .map(|i| {
            let (server, token) = (server.clone(), token.clone());
            async move {
                let r = server
                    .post(&format!("/applications/{token}/chats/7/messages"), json!({"body": format!("m{i}")}))
                    .await;
                assert_eq!(r.status, 201, "{r:?}");
                r.json["number"].as_u64().unwrap()
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut sorted = messages.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=1280).collect::<Vec<_>>(), "message numbers are exactly 1..1280");

    let listed = server.all_pages(&format!("/applications/{token}/chats/7/messages?limit=100")).await;
    let listed: Vec<u64> = listed.iter().map(|m| m["number"].as_u64().unwrap()).collect();
    assert_eq!(listed, (1..=1280).collect::<Vec<_>>(), "the list shows each once, in order");
    let chat = server.get(&format!("/applications/{token}/chats/7")).await;
    assert_eq!(chat.json["messages_count"], 1280);
    let app = server.get(&format!("/applications/{token}")).await;
    assert_eq!(app.json["chats_count"], 640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_creates_in_flight_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path()));
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;

    // Keep creating while the signal arrives; every 201 must be stored afterwards.
    let load = {
        let (server, token) = (server.clone(), token.clone());
        tokio::spawn(async move {
            stream::iter(0..3000)
                .map(|i| {
                    let (server, token) = (server.clone(), token.clone());
                    async move {
                        let url = server.url(&format!("/applications/{token}/chats/{chat}/messages"));
                        let sent = server.http.post(url).json(&json!({"body": format!("m{i}")})).send().await;
                        match sent {
                            Ok(r) if r.status() == 201 => {
                                let m: serde_json::Value = r.json().await.unwrap();
                                Some(m["number"].as_u64().unwrap())
                            }
                            _ => None, // refused once the server stopped accepting
                        }
                    }
                })
                .buffer_unordered(16)
                .filter_map(|n| async move { n })
                .collect::<Vec<u64>>()
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let server = {
        // the load task holds clones; signal through the pid and wait for it below
        let pid = server.pid();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        server
    };
    let acknowledged = load.await.unwrap();
    let status = Arc::into_inner(server).expect("load finished").terminate_wait();
    assert!(status.success(), "exit status {status:?}");
    assert!(!acknowledged.is_empty(), "some creates were acknowledged before the signal");

    let server = Server::start(dir.path());
    let stored = server.all_pages(&format!("/applications/{token}/chats/{chat}/messages?limit=1000")).await;
    let stored: std::collections::BTreeSet<u64> = stored.iter().map(|m| m["number"].as_u64().unwrap()).collect();
    for n in &acknowledged {
        assert!(stored.contains(n), "acknowledged message {n} is stored");
    }
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let send = |server: &Server, body: &str, key: &str| {
        server.http.post(server.url(&path)).header("Idempotency-Key", key).json(&json!({"body": body})).send()
    };
    let first = common::Reply::from(send(&server, "hello", "key-1").await.unwrap()).await;
    assert_eq!(first.status, 201);
    let again = common::Reply::from(send(&server, "hello", "key-1").await.unwrap()).await;
    assert_eq!((again.status, &again.json), (201, &first.json), "a repeat gets the first answer");
    assert_eq!(again.headers["location"], first.headers["location"]);
    let other = common::Reply::from(send(&server, "other body", "key-1").await.unwrap()).await;
    assert!(other.is_problem(422), "{other:?}");
    server.kill();

    let server = Server::start(dir.path());
    let after_restart = common::Reply::from(send(&server, "hello", "key-1").await.unwrap()).await;
    assert_eq!((after_restart.status, &after_restart.json), (201, &first.json));
    let fresh = server.post(&path, json!({"body": "next"})).await;
    assert_eq!(fresh.json["number"], 2, "the repeats created nothing");

    // Racing repeats: one creates, the others replay it or are told it is in flight.
    let server = Arc::new(server);
    let replies: Vec<common::Reply> = stream::iter(0..16)
        .map(|_| {
            let server = server.clone();
            let url = server.url(&path);
            async move {
                let sent =
                    server.http.post(url).header("Idempotency-Key", "key-2").json(&json!({"body": "same"})).send();
                common::Reply::from(sent.await.unwrap()).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let created: std::collections::BTreeSet<_> =
        replies.iter().filter(|r| r.status == 201).map(|r| r.json["number"].as_u64().unwrap()).collect();
    assert_eq!(created, [3].into(), "every 201 names the one message created");
    assert!(replies.iter().all(|r| r.status == 201 || r.is_problem(409)), "{replies:?}");
    let next = server.post(&path, json!({"body": "last"})).await;
    assert_eq!(next.json["number"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_reflects_every_acknowledged_create_and_edit_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // a long commit interval: nothing reaches the index's disk before the kill
    let server = Arc::new(Server::start_with(dir.path(), &[("CHATSYS_SEARCH_COMMIT_INTERVAL", "1h")]));
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let created: Vec<u64> = stream::iter(0..300)
        .map(|i| {
            let (server, path) = (server.clone(), path.clone());
            async move {
                let r = server.post(&path, json!({"body": format!("original words {i}")})).await;
                assert_eq!(r.status, 201);
                r.json["number"].as_u64().unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let edited: Vec<u64> = created.iter().copied().filter(|n| n % 3 == 0).collect();
    stream::iter(edited.clone())
        .for_each_concurrent(16, |n| {
            let (server, path) = (server.clone(), path.clone());
            async move {
                let r = server
                    .request("PUT", &format!("{path}/{n}"), Some(json!({"body": format!("replaced text {n}")})))
                    .await;
                assert_eq!(r.status, 200, "{r:?}");
            }
        })
        .await;
    Arc::into_inner(server).unwrap().kill();

    let server = Server::start(dir.path());
    let found = |q: &'static str| {
        let server = &server;
        let path = format!("{path}/search?q={q}&limit=1000");
        async move {
            let r = server.get(&path).await;
            assert_eq!(r.status, 200, "{r:?}");
            let mut numbers: Vec<u64> =
                r.json.as_array().unwrap().iter().map(|h| h["number"].as_u64().unwrap()).collect();
            numbers.sort_unstable();
            numbers
        }
    };
    let mut originals: Vec<u64> = created.iter().copied().filter(|n| n % 3 != 0).collect();
    originals.sort_unstable();
    let mut edited = edited;
    edited.sort_unstable();
    assert_eq!(found("original").await, originals, "every create is findable, edited ones only by their new text");
    assert_eq!(found("replaced").await, edited, "every edit is findable");
}
