//! When the queue cannot make a create durable: 503 with Retry-After, the number is skipped,
//! and a skipped chat never comes into being. When the client does not wait for the answer:
//! the create is settled all the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chatsys_api::{AppState, Services, router};
use chatsys_core::ports::{CreateQueue, Durability, Store};
use chatsys_core::{Error, Queued, Result};
use chatsys_counters::{InProcessNumbering, LocalIdempotencyKeys};
use chatsys_queue::in_process::{self, InProcessQueue};
use chatsys_store::SqliteStore;
use chatsys_worker::{BatchConfig, Consumer};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The real embedded queue, made to fail its next `failures` submits as a broker outage
/// would, and to hold every submit while its gate is closed (counting those it held).
struct Faulty {
    inner: InProcessQueue,
    failures: AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
    held: AtomicUsize,
}

impl Faulty {
    fn new(inner: InProcessQueue) -> Self {
        Self {
            inner,
            failures: AtomicUsize::new(0),
            open: tokio::sync::watch::Sender::new(true),
            held: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl CreateQueue for Faulty {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn submit(&self, command: Queued) -> Result<()> {
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::unavailable("the create queue is down"));
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        self.inner.submit(command).await
    }

    fn durability(&self) -> Durability {
        self.inner.durability()
    }

    async fn backlog(&self) -> Result<u64> {
        self.inner.backlog().await
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(path);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_create_that_cannot_be_made_durable_answers_503_and_its_chat_never_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(dir.path()).await;
    let outage = Arc::new(Faulty::new(queue));
    let app = router(AppState::new(services(store.clone(), outage.clone())));

    let (status, _, a) = call(&app, "POST", "/applications", Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = a["token"].as_str().unwrap().to_owned();
    let chats = format!("/applications/{token}/chats");
    assert_eq!(call(&app, "POST", &chats, None).await.2["number"], 1);

    outage.failures.store(2, Ordering::SeqCst);
    let (status, headers, problem) = call(&app, "POST", &chats, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(problem["status"], 503);
    let (status, _, _) = call(&app, "POST", &format!("{chats}/1/messages"), Some(json!({"body": "lost"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // After the outage: chat 2 was skipped and stays void, message 1 of chat 1 was skipped.
    let (status, _, c) = call(&app, "POST", &chats, None).await;
    assert_eq!((status, c["number"].as_u64()), (StatusCode::CREATED, Some(3)));
    let (status, _, _) = call(&app, "POST", &format!("{chats}/2/messages"), Some(json!({"body": "hello?"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a chat whose create failed does not exist");
    let (status, _, _) = call(&app, "GET", &format!("{chats}/2/messages"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, m) = call(&app, "POST", &format!("{chats}/1/messages"), Some(json!({"body": "kept"}))).await;
    assert_eq!((status, m["number"].as_u64()), (StatusCode::CREATED, Some(2)));
    let (status, _, _) = call(&app, "PUT", &format!("{chats}/1/messages/1"), Some(json!({"body": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a message whose create failed cannot be edited into being");

    let (_, _, listed) = call(&app, "GET", &chats, None).await;
    let numbers: Vec<u64> = listed.as_array().unwrap().iter().map(|c| c["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 3]);
    let (_, _, a) = call(&app, "GET", &format!("/applications/{token}"), None).await;
    assert_eq!(a["chats_count"], 2);
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let (queue, source) = in_process::channel(100, Duration::from_secs(1));
    let app = router(AppState::new(services(store.clone(), Arc::new(queue))));
    assert_eq!(call(&app, "GET", "/readyz", None).await.0, StatusCode::OK);
    drop(source); // the writer is gone
    let (status, headers, problem) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(problem["detail"].as_str().unwrap().starts_with("queue"), "{problem}");
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK, "the process itself is up");
}

#[tokio::test]
async fn a_create_whose_client_goes_away_midway_is_stored_all_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (store, queue) = embedded(dir.path()).await;
    let gate = Arc::new(Faulty::new(queue));
    let app = router(AppState::new(services(store.clone(), gate.clone())));
    let (_, _, a) = call(&app, "POST", "/applications", Some(json!({"name": "x"}))).await;
    let chats = format!("/applications/{}/chats", a["token"].as_str().unwrap());
    assert_eq!(call(&app, "POST", &chats, None).await.2["number"], 1);
    let messages = format!("{chats}/1/messages");

    // the client leaves while its message waits for the queue (number 1 is handed out)
    gate.open.send_replace(false);
    let held = gate.held.load(Ordering::SeqCst);
    let request = tokio::spawn({
        let (app, messages) = (app.clone(), messages.clone());
        async move { call(&app, "POST", &messages, Some(json!({"body": "nobody waits for me"}))).await }
    });
    for _ in 0..500 {
        if gate.held.load(Ordering::SeqCst) > held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.held.load(Ordering::SeqCst), held + 1, "the create reached the queue");
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    gate.open.send_replace(true);

    // its number ends as a stored message, not as a gap nobody settles
    let mut stored = None;
    for _ in 0..500 {
        let (status, _, m) = call(&app, "GET", &format!("{messages}/1"), None).await;
        if status == StatusCode::OK {
            stored = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored.expect("message 1 is stored")["body"], "nobody waits for me");
    let (status, _, m) = call(&app, "POST", &messages, Some(json!({"body": "next"}))).await;
    assert_eq!((status, m["number"].as_u64()), (StatusCode::CREATED, Some(2)));
}

/// The embedded store in `dir`, and its queue with the writer consuming it.
async fn embedded(dir: &std::path::Path) -> (Arc<SqliteStore>, InProcessQueue) {
    let store = Arc::new(SqliteStore::open(dir).await.unwrap());
    let (queue, source) = in_process::channel(100, Duration::from_secs(1));
    let batches = BatchConfig { max_commands: 1000, linger: Duration::from_micros(500) };
    tokio::spawn(Consumer::new(Box::new(source), store.clone(), batches).run());
    (store, queue)
}

/// The embedded services around `store`, with `queue` as the create queue.
fn services(store: Arc<dyn Store>, queue: Arc<dyn CreateQueue>) -> Services {
    Services {
        numbering: Arc::new(InProcessNumbering::in_process(store.clone())),
        queue,
        idempotency: Arc::new(LocalIdempotencyKeys::new(store.clone())),
        store,
        search: None,
        admin_token: None,
        rate_limiter: None,
        cors_origins: Vec::new(),
        body_limit: 256 * 1024,
        page_bytes: 1 << 20,
        search_limits: chatsys_api::SearchLimits { timeout: std::time::Duration::from_secs(5), threads: 1 },
        request_limits: chatsys_api::RequestLimits {
            body_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(30),
        },
        bulletin: Arc::new(chatsys_bulletin::InProcessBulletin::default()),
        live: chatsys_api::live::LiveLimits {
            max_subscribers: 10,
            backlog: 16,
            heartbeat: std::time::Duration::from_secs(15),
        },
    }
}
