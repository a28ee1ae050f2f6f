//! The optional rate limit per application token (one process, and shared by the servers of
//! a cluster through Redis) and the optional CORS, against the real binary.

mod common;

use common::Server;
use common::cluster::Cluster;
use serde_json::json;

/// Requests to an application's own paths until the first 429; returns how many passed.
async fn passed_before_429(servers: &[&common::Client], token: &str) -> (usize, common::Reply) {
    for i in 0..100 {
        let r = servers[i % servers.len()].get(&format!("/applications/{token}")).await;
        if r.status == 429 {
            return (i, r);
        }
        assert_eq!(r.status, 200, "{r:?}");
    }
    panic!("no 429 in 100 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_application_over_its_rate_gets_429_with_retry_after_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_RATE_LIMIT", "10/min,5")]);
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await; // the first request of the allowance
    let (passed, limited) = passed_before_429(&[&server], &token).await;
    assert_eq!(passed, 4, "a burst of 5, one taken by the chat");
    assert!(limited.is_problem(429), "{limited:?}");
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "one request every 6 s: {retry}");
    assert_eq!(limited.headers["ratelimit-limit"], "5");
    assert_eq!(limited.headers["ratelimit-remaining"], "0");
    let create = server.post(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": "x"})).await;
    assert!(create.is_problem(429), "creates too: {create:?}");

    let other = server.new_app().await;
    assert_eq!(server.get(&format!("/applications/{other}")).await.status, 200, "another application goes on");
    assert_eq!(server.get("/healthz").await.status, 200, "paths without a token are not limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_of_a_cluster_share_one_allowance() {
    let Some(cluster) = Cluster::start_with(2, 1, false, &[("CHATSYS_RATE_LIMIT", "10/min,6")]).await else {
        return;
    };
    let servers: Vec<common::Client> = cluster.apis.iter().map(|a| common::Client::new(&a.base)).collect();
    let token = servers[0].new_app().await;
    let (passed, limited) = passed_before_429(&[&servers[0], &servers[1]], &token).await;
    assert_eq!(passed, 6, "six requests in all, whichever server took them");
    assert!(limited.is_problem(429));
    assert_eq!(servers[0].get(&format!("/applications/{token}")).await.status, 429, "on the other server too");
}

/// The limit protects the service and must not take it down: while Redis hangs, a request
/// that needs nothing else of Redis (a read) goes on at once, not after the 2 s that any
/// Redis command waits for its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_redis_holds_up_rate_limited_reads_for_a_moment_only() {
    use std::time::{Duration, Instant};

    let Some(mut cluster) = Cluster::start_with(0, 1, false, &[("CHATSYS_RATE_LIMIT", "10/min,20")]).await else {
        return;
    };
    let (redis, through) = cluster.proxied("CHATSYS_REDIS_URL").await;
    cluster.add_api_with(&[("CHATSYS_REDIS_URL", &through)]);
    let api = common::Client::new(&cluster.apis[0].base);
    let token = api.new_app().await;
    let path = format!("/applications/{token}");
    assert_eq!(api.get(&path).await.status, 200);

    redis.cut();
    let started = Instant::now();
    for _ in 0..5 {
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "the limit lets reads through while Redis hangs: {r:?}");
    }
    let took = started.elapsed();
    println!("five reads took {took:?} while Redis hung");
    assert!(took < Duration::from_secs(2), "five reads took {took:?} while Redis hung");

    redis.mend();
    // past the moment the limiter may rest after a failure
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (passed, limited) = passed_before_429(&[&api], &token).await;
    // a burst of 20: one read before Redis hung, and the first read's request, held back
    // while Redis hung, is answered once it does (unless the connection dropped it)
    assert!(limited.is_problem(429), "the limit holds again once Redis answers: {limited:?}");
    assert!((18..=19).contains(&passed), "{passed} reads passed after Redis came back");
}

#[tokio::test]
async fn cors_is_off_unless_configured_and_then_answers_preflights_for_those_origins() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Server::start(dir.path());
    let r = plain.http.get(plain.url("/healthz")).header("origin", "https://app.example.com").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "off by default");
    drop(plain);

    let server = Server::start_with(dir.path(), &[("CHATSYS_CORS_ORIGINS", "https://app.example.com")]);
    let token = server.new_app().await;
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url(&format!("/applications/{token}/chats")))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, idempotency-key")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{preflight:?}");
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example.com");
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
    assert!(allowed.contains("idempotency-key"), "{allowed}");

    let r = server.http.get(server.url("/healthz")).header("origin", "https://evil.example.net").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "an origin not listed gets nothing");
    let r = server.http.get(server.url("/healthz")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example.com");
}

#[test]
fn a_wrong_rate_or_origin_stops_the_server_with_a_clear_message() {
    for (name, value) in [("CHATSYS_RATE_LIMIT", "fast"), ("CHATSYS_CORS_ORIGINS", "app.example.com/path")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatsys"))
            .env(name, value)
            .env("CHATSYS_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(value) && stderr.contains("write"), "{stderr}");
    }
}
