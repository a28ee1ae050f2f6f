//! Idempotency keys for a single process: claims held in memory, answered requests read
//! from the store (the record is written in the same transaction as the item it created).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatsys_core::ports::{Claim, IdempotencyKeys, Store};
use chatsys_core::{Error, IdempotencyRecord, Result};

pub struct LocalIdempotencyKeys {
    store: Arc<dyn Store>,
    in_flight: Mutex<HashSet<(String, String)>>,
}

impl LocalIdempotencyKeys {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, in_flight: Mutex::default() }
    }
}

#[async_trait]
impl IdempotencyKeys for LocalIdempotencyKeys {
    async fn claim(&self, scope: &str, key: &str) -> Result<Claim> {
        if let Some(record) = self.store.idempotency_record(scope, key).await? {
            return Ok(Claim::Done(record));
        }
        if !self.in_flight.lock().expect("poisoned").insert((scope.to_owned(), key.to_owned())) {
            return Ok(Claim::InFlight);
        }
        // The first request may have finished between the lookup and the claim.
        match self.store.idempotency_record(scope, key).await {
            Ok(Some(record)) => {
                self.release(scope, key).await;
                Ok(Claim::Done(record))
            }
            Ok(None) => Ok(Claim::Claimed),
            Err(e) => {
                self.release(scope, key).await;
                Err(e)
            }
        }
    }

    async fn complete(&self, record: &IdempotencyRecord) -> Result<()> {
        self.release(&record.scope, &record.key).await;
        Ok(())
    }

    async fn release(&self, scope: &str, key: &str) {
        self.in_flight.lock().expect("poisoned").remove(&(scope.to_owned(), key.to_owned()));
    }

    async fn forget_under(&self, _: &str) -> Result<()> {
        // answers live only in the store here, which erases them with what they created
        Ok(())
    }
}

/// Idempotency keys shared by every API server through Redis. The answer is kept in Redis
/// for 24 hours from the moment it was given, and in the store once the worker has written
/// the item (the record travels with the command), which also covers a Redis data loss.
pub struct RedisIdempotencyKeys {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    store: Arc<dyn Store>,
}

/// How long a claim lives if its holder dies before answering.
const CLAIM_MS: u64 = 60_000;
const IN_FLIGHT: &str = "in-flight";

impl RedisIdempotencyKeys {
    pub fn new(redis: redis::aio::ConnectionManager, prefix: String, store: Arc<dyn Store>) -> Self {
        Self { redis, prefix, store }
    }

    fn key(&self, scope: &str, key: &str) -> String {
        // scopes hold tokens: keep them out of key names (and out of `KEYS` output)
        let digest = sha_hex(&format!("{scope}\n{key}"));
        format!("{}:idem:{digest}", self.prefix)
    }

    /// The set of the answers at or under a path (an application, a chat, a message), so a
    /// delete or an erasure can find them.
    fn under(&self, path: &str) -> String {
        format!("{}:idem-under:{}", self.prefix, sha_hex(path))
    }
}

/// A location and each path above it below `/applications`: `/applications/T`,
/// `/applications/T/chats/1`, `/applications/T/chats/1/messages/5`.
fn paths_of(location: &str) -> Vec<&str> {
    let Some(rest) = location.strip_prefix("/applications/") else { return Vec::new() };
    let segments = rest.split('/').count();
    (0..segments)
        .step_by(2)
        .map(|i| {
            let end = rest.split('/').take(i + 1).map(str::len).sum::<usize>() + i;
            &location[.."/applications/".len() + end]
        })
        .collect()
}

fn sha_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl IdempotencyKeys for RedisIdempotencyKeys {
    async fn claim(&self, scope: &str, key: &str) -> Result<Claim> {
        use redis::AsyncCommands as _;
        let name = self.key(scope, key);
        let mut redis = self.redis.clone();
        // a few rounds: another server may claim or answer between our reads
        for _ in 0..3 {
            let seen: Option<String> = redis.get(&name).await.map_err(crate::redis::redis_error)?;
            match seen.as_deref() {
                Some(IN_FLIGHT) => return Ok(Claim::InFlight),
                Some(json) => match serde_json::from_str::<IdempotencyRecord>(json) {
                    Ok(record) => return Ok(Claim::Done(record)),
                    Err(e) => {
                        // not ours to read (another version, a manual edit): the store keeps
                        // the answered record too, so this copy can go
                        tracing::warn!(error = %e, "unreadable idempotency record in redis: removed");
                        let _: () = redis.del(&name).await.map_err(crate::redis::redis_error)?;
                    }
                },
                None => {}
            }
            if let Some(record) = self.store.idempotency_record(scope, key).await? {
                return Ok(Claim::Done(record));
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&name)
                .arg(IN_FLIGHT)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_MS)
                .query_async(&mut redis)
                .await
                .map_err(crate::redis::redis_error)?;
            if claimed.is_some() {
                return Ok(Claim::Claimed);
            }
        }
        Err(Error::unavailable("this Idempotency-Key is contended; retry shortly"))
    }

    async fn complete(&self, record: &IdempotencyRecord) -> Result<()> {
        let json =
            serde_json::to_string(record).map_err(|e| Error::internal("cannot encode a record").with_source(e))?;
        let ttl = (IdempotencyRecord::RETENTION_MICROS / 1_000_000) as u64;
        let name = self.key(&record.scope, &record.key);
        let mut pipe = redis::pipe();
        pipe.set_ex(&name, json, ttl).ignore();
        for path in paths_of(&record.location) {
            let set = self.under(path);
            pipe.sadd(&set, &name).ignore().expire(&set, ttl as i64).ignore();
        }
        let _: () = pipe.query_async(&mut self.redis.clone()).await.map_err(crate::redis::redis_error)?;
        Ok(())
    }

    async fn forget_under(&self, path: &str) -> Result<()> {
        use redis::AsyncCommands as _;
        let set = self.under(path);
        let mut redis = self.redis.clone();
        let names: Vec<String> = redis.smembers(&set).await.map_err(crate::redis::redis_error)?;
        let mut doomed = names;
        doomed.push(set);
        let _: () = redis.del(doomed).await.map_err(crate::redis::redis_error)?;
        Ok(())
    }

    async fn release(&self, scope: &str, key: &str) {
        let script = redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end");
        let released: redis::RedisResult<()> =
            script.key(self.key(scope, key)).arg(IN_FLIGHT).invoke_async(&mut self.redis.clone()).await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "idempotency claim not released; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_location_names_every_path_above_it() {
        assert_eq!(super::paths_of("/applications/T"), ["/applications/T"]);
        assert_eq!(
            super::paths_of("/applications/T/chats/12/messages/5"),
            ["/applications/T", "/applications/T/chats/12", "/applications/T/chats/12/messages/5"]
        );
        assert!(super::paths_of("/elsewhere").is_empty());
    }
}
