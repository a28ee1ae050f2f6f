//! Live events (Server-Sent Events) of the embedded binary: the stream's shape, replays,
//! bounds (backlog, subscriber limit, heartbeat) and a clean end on shutdown.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Server;
use common::sse::Sse;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_starts_ready_carries_every_change_and_replays_from_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let (chat, other) = (server.new_chat(&token).await, server.new_chat(&token).await);
    let path = format!("/applications/{token}/chats/{chat}/messages");
    server.post(&path, json!({"body": "before"})).await;
    let events = server.url(&format!("/applications/{token}/chats/{chat}/events"));
    let mut live = Sse::open(&server.http, &events, None).await;
    assert_eq!(live.status, 200);
    assert_eq!(live.headers["content-type"], "text/event-stream");
    assert_eq!(live.headers["cache-control"], "no-store");
    let ready = live.next(WAIT).await.unwrap();
    assert_eq!((ready.event.as_str(), ready.id), ("ready", Some(1)), "starts at the chat's current position");

    server.post(&format!("/applications/{token}/chats/{other}/messages"), json!({"body": "elsewhere"})).await;
    for i in 0..5 {
        assert_eq!(server.post(&path, json!({"body": format!("m{i}")})).await.status, 201);
    }
    let edit = server.request("PUT", &format!("{path}/2"), Some(json!({"body": "m0, edited"}))).await;
    assert_eq!(edit.status, 200);
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let e = live.next(WAIT).await.expect("every change arrives");
        assert_eq!(e.event, "message");
        assert_eq!(e.data["chat_number"], chat, "only this chat's events");
        seen.push((e.id.unwrap(), e.data["number"].as_u64().unwrap(), e.data["body"].as_str().unwrap().to_owned()));
    }
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "positions only increase: {seen:?}");
    assert_eq!(seen.last().unwrap().1, 2, "the edit is the latest change");

    // a replay from 0 carries each message once, in its latest state, in position order
    let mut replay = Sse::open(&server.http, &format!("{events}?after=0"), None).await;
    let mut state = BTreeMap::new();
    let mut last = 0;
    while let Some(e) = replay.next(Duration::from_millis(500)).await {
        assert!(e.id.unwrap() > last);
        last = e.id.unwrap();
        assert!(state.insert(e.data["number"].as_u64().unwrap(), e.data["body"].clone()).is_none(), "once each");
    }
    assert_eq!(state.len(), 6);
    assert_eq!(state[&2], "m0, edited");
    // Last-Event-ID wins over after
    let mut resumed = Sse::open(&server.http, &format!("{events}?after=0"), Some(last - 1)).await;
    assert_eq!(resumed.next(WAIT).await.unwrap().id, Some(last));
}

#[tokio::test]
async fn bad_positions_are_400_and_unknown_chats_404_before_any_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let events = format!("/applications/{token}/chats/{chat}/events");
    for bad in ["?after=abc", "?after=-1", "?after=1.5", "?after=", "?after=99999999999999999999", "?after=1"] {
        let r = server.get(&format!("{events}{bad}")).await;
        assert!(r.is_problem(400), "{bad}: {r:?}");
    }
    let r = server.http.get(server.url(&events)).header("last-event-id", "x").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(server.get(&format!("/applications/{token}/chats/9/events")).await.is_problem(404));
    assert!(server.get("/applications/nosuchtoken/chats/1/events").await.is_problem(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_stops_reading_is_cut_off_and_loses_nothing_on_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_EVENTS_BACKLOG", "16")]);
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let events = server.url(&format!("/applications/{token}/chats/{chat}/events"));
    let mut slow = Sse::open(&server.http, &events, None).await;
    let ready = slow.next(WAIT).await.unwrap();
    // far more than the socket buffers hold, while the subscriber reads nothing
    let big = "x".repeat(9_000);
    for i in 0..800 {
        assert_eq!(server.post(&path, json!({"body": format!("{i} {big}")})).await.status, 201);
    }
    let metrics = server.get("/metrics").await.text;
    assert!(metrics.contains("chatsys_event_subscribers_cut_off_total"), "the slow subscriber was cut off");
    let mut last = ready.id.unwrap();
    let mut got: BTreeMap<u64, String> = BTreeMap::new();
    while let Some(e) = slow.next(WAIT).await {
        last = e.id.unwrap();
        got.insert(e.data["number"].as_u64().unwrap(), e.data["body"].as_str().unwrap().to_owned());
    }
    assert!(got.len() < 800, "the stream ended early ({} events)", got.len());
    let mut again = Sse::open(&server.http, &events, Some(last)).await;
    while let Some(e) = again.next(Duration::from_secs(2)).await {
        got.insert(e.data["number"].as_u64().unwrap(), e.data["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(got.len(), 800, "after the reconnect, every message is there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_the_subscriber_limit_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("CHATSYS_EVENTS_HEARTBEAT", "300ms"), ("CHATSYS_EVENTS_MAX_SUBSCRIBERS", "2")];
    let server = Server::start_with(dir.path(), &env);
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let events = server.url(&format!("/applications/{token}/chats/{chat}/events"));
    let mut first = Sse::open(&server.http, &events, None).await;
    let mut second = Sse::open(&server.http, &events, None).await;
    let third = Sse::open(&server.http, &events, None).await;
    assert_eq!(third.status, 503, "past the limit: {:?}", third.problem);
    assert!(third.headers.contains_key("retry-after"));
    assert!(first.next(WAIT).await.is_some() && second.next(WAIT).await.is_some());
    let idle = first.next(Duration::from_millis(1100)).await;
    assert!(idle.is_none(), "nothing but comments: {idle:?}");
    assert!(first.comments >= 2, "a comment line while idle ({} seen)", first.comments);
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = Sse::open(&server.http, &events, None).await;
    assert_eq!(fourth.status, 200, "a closed stream frees its seat");

    let started = std::time::Instant::now();
    let pid = server.pid();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(first.ended(Duration::from_secs(5)).await, "streams end on shutdown");
    assert_eq!(server.terminate_wait().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    drop(fourth);
}
