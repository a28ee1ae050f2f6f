//! Search against a hostile client or a noisy neighbour, with the real binary: a page and
//! its next link do not move when other applications write, cursors cannot be forged, and
//! worst-case searches neither stall the rest of the server nor run past their deadline.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Server};
use futures::stream::{self, StreamExt as _};
use serde_json::json;

/// Waits until a search finds `count` hits (the index commits every 500 ms by default).
async fn wait_for_hits(client: &Client, path: &str, count: usize) {
    for _ in 0..100 {
        if client.all_pages(path).await.len() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the search never found {count} hits: {path}");
}

fn numbers(page: &common::Reply) -> Vec<u64> {
    page.json.as_array().unwrap().iter().map(|h| h["number"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saved_next_link_gives_the_same_page_whatever_other_applications_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    // bodies of several lengths, some equal: the rank is (shorter body, then higher number)
    for i in 0..30 {
        let body = format!("needle{}", "x".repeat(i % 7));
        assert_eq!(server.post(&path, json!({"body": body})).await.status, 201);
    }
    let search = format!("{path}/search?q=needle&limit=10");
    wait_for_hits(&server, &search, 30).await;
    let first = server.get(&search).await;
    let next = first.link_next.clone().expect("a next link");
    let second = server.get(&next).await;
    let all: Vec<u64> = server.all_pages(&search).await.iter().map(|h| h["number"].as_u64().unwrap()).collect();
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 30, "every hit once: {all:?}");
    let lengths: Vec<usize> =
        server.all_pages(&search).await.iter().map(|h| h["body"].as_str().unwrap().chars().count()).collect();
    assert!(lengths.is_sorted(), "shorter bodies first: {lengths:?}");

    // another tenant writes a lot of text with the same word, and edits in this chat's
    // application change nothing about the hits already seen
    let other = server.new_app().await;
    let other_chat = server.new_chat(&other).await;
    let other_path = format!("/applications/{other}/chats/{other_chat}/messages");
    for i in 0..200 {
        let body = format!("needle needle needle {}", "needle ".repeat(i % 9));
        assert_eq!(server.post(&other_path, json!({"body": body})).await.status, 201);
    }
    wait_for_hits(&server, &format!("{other_path}/search?q=needle&limit=100"), 200).await;

    let again = server.get(&next).await;
    assert_eq!(numbers(&again), numbers(&second), "the saved next link gives the same page");
    assert_eq!(again.link_next, second.link_next, "and the same link onward");
    assert_eq!(numbers(&server.get(&search).await), numbers(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_cursor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    for i in 0..3 {
        server.post(&path, json!({"body": format!("word {i}")})).await;
    }
    let next = server.get(&format!("{path}?limit=1")).await.link_next.expect("a next link");
    assert_eq!(server.get(&next).await.status, 200);
    let (head, cursor) = next.split_once("after=").unwrap();
    let cursor = cursor.split('&').next().unwrap();
    // flip one character of the cursor, wherever it is
    for at in [0, cursor.len() / 2, cursor.len() - 1] {
        let mut forged: Vec<u8> = cursor.bytes().collect();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = format!("{head}after={}", String::from_utf8(forged).unwrap());
        let r = server.get(&forged).await;
        assert!(r.is_problem(400), "a forged cursor is refused: {r:?}");
    }
}

/// The search the issue measured: 256 × `a` over 100 bodies of 10,000 `a`.
async fn worst_case_chat(server: &Server) -> String {
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let body = "a".repeat(10_000);
    for _ in 0..100 {
        assert_eq!(server.post(&path, json!({"body": body})).await.status, 201);
    }
    format!("{path}/search?q={}&limit=100", "a".repeat(256))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_worst_case_searches_leave_healthz_fast() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path()));
    let search = worst_case_chat(&server).await;
    wait_for_hits(&server, &search, 100).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let searching: Vec<_> = (0..20)
        .map(|_| {
            let (server, search, stop) = (server.clone(), search.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    answered.push(server.get(&search).await.status);
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut took: Vec<Duration> = stream::iter(0..200)
        .then(|_| {
            let server = server.clone();
            async move {
                let started = Instant::now();
                assert_eq!(server.get("/healthz").await.status, 200);
                let took = started.elapsed();
                tokio::time::sleep(Duration::from_millis(10)).await;
                took
            }
        })
        .collect()
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = Vec::new();
    for task in searching {
        statuses.extend(task.await.unwrap());
    }
    took.sort_unstable();
    let p99 = took[took.len() * 99 / 100];
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    assert!(statuses.contains(&200), "the searches themselves are answered");
    assert!(p99 < Duration::from_millis(50), "/healthz p99 {p99:?} with 20 searches running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_past_its_deadline_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_SEARCH_TIMEOUT", "1ms")]);
    let search = worst_case_chat(&server).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the index commits every 500 ms
    let r = server.get(&search).await;
    assert!(r.is_problem(503), "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.json["detail"].as_str().unwrap().contains("longer than"), "{r:?}");
    assert_eq!(server.get("/healthz").await.status, 200);
}
