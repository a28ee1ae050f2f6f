//! The numbering contract against the in-process counters, plus their seeding from the store.

mod suite;

use std::sync::Arc;

use chatsys_core::ports::{Numbering, Store};
use chatsys_counters::InProcessNumbering;
use chatsys_store::SqliteStore;
use tempfile::TempDir;

async fn open() -> Option<(Arc<dyn Numbering>, Arc<dyn Store>, TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    Some((Arc::new(InProcessNumbering::in_process(store.clone())), store, dir))
}

/// A restart: the counters are gone, the store stays.
async fn lose(dir: &TempDir) -> Arc<dyn Numbering> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    Arc::new(InProcessNumbering::in_process(store))
}

numbering_contract!(open, lose);
