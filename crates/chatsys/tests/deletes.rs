//! Deletes and erasure on the embedded binary: gone from every read, list, search, count and
//! stream; numbers never reused, across a restart too; erased text in no file of the data
//! directory within minutes (here: seconds).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use common::sse::Sse;
use serde_json::json;

/// Files under `dir` whose bytes contain `marker`.
fn files_holding(dir: &Path, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Waits (bounded) until a search finds something.
async fn searchable(server: &Server, search: &str) {
    for _ in 0..100 {
        if server.get(search).await.json.as_array().is_some_and(|hits| !hits.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{search} never found anything");
}

/// Waits (bounded) until no file under `dir` holds `marker`.
async fn erased_from_disk(dir: &Path, marker: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let holding = files_holding(dir, marker);
        if holding.is_empty() {
            return;
        }
        assert!(started.elapsed() < within, "{marker} is still in {holding:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_message_is_gone_everywhere_and_its_number_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    for i in 1..=6 {
        server.post(&path, json!({"body": format!("message {i} Zq8marker{i}")})).await;
    }
    // the last one with an Idempotency-Key: its kept answer holds the text too
    let keyed = server
        .http
        .post(server.url(&path))
        .header("idempotency-key", "seventh")
        .json(&json!({"body": "message 7 Zq8marker7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201);
    // committed to the search index first (which keeps grams, never the text itself)
    searchable(&server, &format!("{path}/search?q=Zq8marker7")).await;
    let events = server.url(&format!("/applications/{token}/chats/{chat}/events"));
    let mut live = Sse::open(&server.http, &events, None).await;
    let ready = live.next(Duration::from_secs(5)).await.unwrap();

    let r = server.request("DELETE", &format!("{path}/7"), None).await;
    assert_eq!(r.status, 204, "{r:?}");
    let deleted = live.next(Duration::from_secs(5)).await.expect("the delete is an event");
    assert_eq!(deleted.event, "deleted");
    assert_eq!(deleted.data, json!({"number": 7, "chat_number": chat}));
    assert!(deleted.id.unwrap() > ready.id.unwrap());
    assert!(server.get(&format!("{path}/7")).await.is_problem(404));
    assert!(server.request("DELETE", &format!("{path}/7"), None).await.is_problem(404), "a repeat answers 404");
    let edit = server.request("PUT", &format!("{path}/7"), Some(json!({"body": "back?"}))).await;
    assert!(edit.is_problem(404), "no edit brings it back: {edit:?}");
    let listed: Vec<u64> = server.all_pages(&path).await.iter().map(|m| m["number"].as_u64().unwrap()).collect();
    assert_eq!(listed, [1, 2, 3, 4, 5, 6]);
    let found = server.get(&format!("{path}/search?q=Zq8marker7")).await;
    assert_eq!(found.json, json!([]), "gone from search");
    assert_eq!(server.get(&format!("/applications/{token}/chats/{chat}")).await.json["messages_count"], 6);
    let next = server.post(&path, json!({"body": "eight"})).await;
    assert_eq!(next.json["number"], 8, "after deleting 7 of 7, the next is 8");
    // a replay carries the delete
    let mut replay = Sse::open(&server.http, &format!("{events}?after=0"), None).await;
    let mut kinds = Vec::new();
    while let Some(e) = replay.next(Duration::from_millis(500)).await {
        kinds.push((e.event, e.data["number"].as_u64().unwrap()));
    }
    assert!(kinds.contains(&("deleted".into(), 7)), "{kinds:?}");

    erased_from_disk(dir.path(), "Zq8marker7", Duration::from_secs(60)).await;
    assert!(!files_holding(dir.path(), "Zq8marker6").is_empty(), "the scan finds text that is not deleted");

    // across a restart too
    server.kill();
    let server = Server::start(dir.path());
    assert!(server.get(&format!("{path}/7")).await.is_problem(404));
    assert!(server.request("DELETE", &format!("{path}/7"), None).await.is_problem(404));
    assert_eq!(server.post(&path, json!({"body": "nine"})).await.json["number"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_chat_ends_its_streams_and_its_number_is_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    for _ in 0..3 {
        server.new_chat(&token).await;
    }
    let path = format!("/applications/{token}/chats/3");
    server.post(&format!("{path}/messages"), json!({"body": "in chat three Wq5marker"})).await;
    let mut live = Sse::open(&server.http, &server.url(&format!("{path}/events")), None).await;
    live.next(Duration::from_secs(5)).await.unwrap();

    assert_eq!(server.request("DELETE", &path, None).await.status, 204);
    let last = live.next(Duration::from_secs(5)).await.expect("a last event");
    assert_eq!((last.event.as_str(), &last.data), ("deleted", &json!({"chat_number": 3})));
    assert!(live.ended(Duration::from_secs(5)).await, "the stream ends after it");
    for gone in [path.clone(), format!("{path}/messages"), format!("{path}/messages/1"), format!("{path}/events")] {
        assert!(server.get(&gone).await.is_problem(404), "{gone}");
    }
    assert!(server.post(&format!("{path}/messages"), json!({"body": "x"})).await.is_problem(404));
    assert!(server.request("DELETE", &path, None).await.is_problem(404));
    let chats: Vec<u64> = server
        .all_pages(&format!("/applications/{token}/chats"))
        .await
        .iter()
        .map(|c| c["number"].as_u64().unwrap())
        .collect();
    assert_eq!(chats, [1, 2]);
    assert_eq!(server.get(&format!("/applications/{token}")).await.json["chats_count"], 2);
    assert_eq!(server.new_chat(&token).await, 4, "after deleting 3 of 3, the next is 4");
    erased_from_disk(dir.path(), "Wq5marker", Duration::from_secs(60)).await;
    server.kill();
    let server = Server::start(dir.path());
    assert!(server.get(&path).await.is_problem(404));
    assert_eq!(server.new_chat(&token).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erased_application_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let r = server.request("POST", "/applications", Some(json!({"name": "Kx7marker app"}))).await;
    let token = r.json["token"].as_str().unwrap().to_owned();
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let created = server
        .http
        .post(server.url(&path))
        .header("idempotency-key", "Kx7marker-key")
        .json(&json!({"body": "Kx7marker body"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut live =
        Sse::open(&server.http, &server.url(&format!("/applications/{token}/chats/{chat}/events")), None).await;
    live.next(Duration::from_secs(5)).await.unwrap();
    let keep = server.new_app().await;
    server.new_chat(&keep).await;

    assert_eq!(server.request("DELETE", &format!("/applications/{token}"), None).await.status, 204);
    for gone in [format!("/applications/{token}"), format!("/applications/{token}/chats"), path.clone()] {
        assert!(server.get(&gone).await.is_problem(404), "{gone}");
    }
    assert!(server.post(&path, json!({"body": "x"})).await.is_problem(404));
    assert!(server.request("DELETE", &format!("/applications/{token}"), None).await.is_problem(404));
    assert!(live.ended(Duration::from_secs(5)).await, "its streams end");
    assert_eq!(server.get(&format!("/applications/{keep}/chats/1")).await.status, 200, "others are untouched");
    erased_from_disk(dir.path(), "Kx7marker", Duration::from_secs(60)).await;
}
