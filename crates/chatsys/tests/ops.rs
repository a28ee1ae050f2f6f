//! What operators see: metrics that move, request ids, JSON logs without secrets, the
//! OpenAPI document and the offline docs page.

mod common;

use common::Server;
use serde_json::{Value, json};

/// The value of the first sample of `metric` whose labels include every `label`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_move_with_creates_batches_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    for i in 0..5 {
        assert_eq!(server.post(&path, json!({"body": format!("metric words {i}")})).await.status, 201);
    }
    assert_eq!(server.get(&format!("{path}/search?q=words")).await.status, 200);
    assert_eq!(server.get(&format!("{path}/search?q=")).await.status, 400);

    let r = server.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/plain"), "{}", r.content_type);
    let text = r.text;
    assert_eq!(sample(&text, "chatsys_creates_total", &["kind=\"message\""]), Some(5.0), "{text}");
    assert_eq!(sample(&text, "chatsys_creates_total", &["kind=\"chat\""]), Some(1.0));
    assert_eq!(sample(&text, "chatsys_creates_total", &["kind=\"application\""]), Some(1.0));
    assert!(sample(&text, "chatsys_batches_total", &["outcome=\"written\""]).unwrap_or(0.0) >= 1.0);
    assert!(sample(&text, "chatsys_batch_commands_count", &[]).unwrap_or(0.0) >= 1.0);
    assert!(sample(&text, "chatsys_create_commit_lag_seconds_count", &[]).unwrap_or(0.0) >= 6.0);
    assert_eq!(sample(&text, "chatsys_search_duration_seconds_count", &[]), Some(1.0));
    let route = "route=\"/applications/{token}/chats/{chat}/messages\"";
    assert_eq!(sample(&text, "http_requests_total", &[route, "method=\"POST\"", "status=\"201\""]), Some(5.0));
    let search = "route=\"/applications/{token}/chats/{chat}/messages/search\"";
    assert_eq!(sample(&text, "http_requests_total", &[search, "status=\"400\""]), Some(1.0));
    assert!(sample(&text, "http_request_duration_seconds_count", &[route]).unwrap_or(0.0) >= 5.0);
    assert!(!text.contains(&token), "metrics never carry tokens");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_and_logs_hold_no_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_LOG_FORMAT", "json"), ("RUST_LOG", "info")]);
    let token = server.new_app().await;
    let sent = server.http.get(server.url("/healthz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(sent.headers()["x-request-id"], "trace-me-42");
    let made = server.http.get(server.url("/healthz")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let chat = server.new_chat(&token).await;
    server.post(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": "secret body text"})).await;
    server.get(&format!("/applications/{token}/chats/99")).await;

    let logs = server.logs.lock().unwrap().clone();
    assert!(logs.len() >= 3, "{logs:?}");
    for line in &logs {
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string() && parsed["message"].is_string(), "{line}");
        assert!(!line.contains(&token), "a token reached the log: {line}");
        assert!(!line.contains("secret body text"), "a message body reached the log: {line}");
    }
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_page_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let r = server.get("/openapi.json").await;
    assert_eq!(r.status, 200);
    assert!(r.json["openapi"].as_str().unwrap().starts_with("3.1"));
    let page = server.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<base href=\"/docs/\">"), "{}", page.text);
    // every asset the page names is served by this binary
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-initializer.js"] {
        assert!(page.text.contains(asset) || asset == "swagger-initializer.js", "{asset} not linked");
        let r = server.get(&format!("/docs/{asset}")).await;
        assert_eq!(r.status, 200, "/docs/{asset}");
    }
    let init = server.get("/docs/swagger-initializer.js").await;
    assert!(init.text.contains("/openapi.json"), "{}", init.text);
}

/// Under creates that never pause, SQLite's write-ahead log must still be started over:
/// a checkpoint beside the writer never catches up with it, and the log grew by gigabytes
/// a minute (and every page lookup walked all of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_write_ahead_log_stays_bounded_under_creates_that_never_pause() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(Server::start(dir.path()));
    let token = server.new_app().await;
    for _ in 0..400 {
        server.new_chat(&token).await;
    }
    let wal = dir.path().join("chatsys.db-wal");
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..48u64)
        .map(|client| {
            let (server, token, stop, created) = (server.clone(), token.clone(), stop.clone(), created.clone());
            tokio::spawn(async move {
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let chat = i * 7919 % 400 + 1;
                    let path = format!("/applications/{token}/chats/{chat}/messages");
                    let r = server.post(&path, json!({"body": format!("sustained {i}")})).await;
                    assert_eq!(r.status, 201, "{r:?}");
                    created.fetch_add(1, Ordering::Relaxed);
                    i += 48;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut largest = 0;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let created = created.load(Ordering::Relaxed);
    println!("{created} creates in 20 s; the write-ahead log peaked at {} MiB", largest >> 20);
    assert!(created > 5_000, "the load was real: {created} creates");
    assert!(largest <= 80 << 20, "the write-ahead log grew to {} MiB over {created} creates", largest >> 20);
}
