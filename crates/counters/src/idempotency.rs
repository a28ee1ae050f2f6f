//! Idempotency keys for a single process: claims held in memory, answered requests read
//! from the store (the record is written in the same transaction as the item it created).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatsys_core::ports::{Claim, IdempotencyKeys, Store};
use chatsys_core::{IdempotencyRecord, Result};

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
}
