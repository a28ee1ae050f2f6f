//! The rate-limit contract, run on both limiters: in this process, and in the real Redis on
//! this machine (`CHATSYS_TEST_REDIS_URL`; skipped with a line when it does not answer),
//! where two servers draw from one allowance.

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::AppId;
use chatsys_core::ports::{Rate, RateLimiter};
use chatsys_counters::rate_limit::{InProcessRateLimiter, RedisRateLimiter};

const RATE: Rate = Rate { per_second: 10.0, burst: 3 };

/// `servers` draw from one allowance: the burst passes, the next is refused with a wait of
/// at most one interval, another application is not affected, and after the wait one more
/// passes.
async fn contract(servers: &[Arc<dyn RateLimiter>]) {
    let (a, b) = (AppId(1), AppId(2));
    for i in 0..3 {
        assert_eq!(servers[i % servers.len()].take(a).await.unwrap(), None, "request {i} of the burst");
    }
    let wait = servers[0].take(a).await.unwrap().expect("over the burst");
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
    assert!(servers[servers.len() - 1].take(a).await.unwrap().is_some(), "on every server");
    assert_eq!(servers[0].take(b).await.unwrap(), None, "another application has its own allowance");
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert_eq!(servers[0].take(a).await.unwrap(), None, "allowed again after the wait");
    assert!(servers[0].take(a).await.unwrap().is_some(), "and only one");
}

#[tokio::test]
async fn in_process() {
    contract(&[Arc::new(InProcessRateLimiter::new(RATE))]).await;
}

#[tokio::test]
async fn redis_shared_by_two_servers() {
    let Some(url) = chatsys_testkit::service(chatsys_testkit::Service::Redis) else { return };
    let prefix = chatsys_testkit::unique_name("chatsys-test");
    let server = |_| async {
        let redis = chatsys_counters::redis::connect(&url).await.unwrap();
        Arc::new(RedisRateLimiter::new(RATE, redis, prefix.clone())) as Arc<dyn RateLimiter>
    };
    let servers = [server(0).await, server(1).await];
    contract(&servers).await;
    chatsys_testkit::redis::delete_prefix(&prefix).await;
}
