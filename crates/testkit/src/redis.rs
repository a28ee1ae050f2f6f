//! Keys of a test's own (one prefix) on the Redis server at `CHATSYS_TEST_REDIS_URL`.

use redis::AsyncCommands as _;

use crate::Service;

/// Removes every key under `prefix:` (a data loss, for that deployment only).
pub async fn delete_prefix(prefix: &str) {
    let client = redis::Client::open(Service::Redis.url()).expect("a redis:// URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("Redis answers");
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = conn.del(keys).await;
    }
}
