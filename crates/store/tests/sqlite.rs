//! The store contract against SQLite, plus what only SQLite can show (durability settings).

mod suite;

use std::sync::Arc;

use chatsys_core::ports::Store;
use chatsys_store::SqliteStore;
use tempfile::TempDir;

async fn open() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    (Arc::new(store), dir)
}

store_contract!(open);

#[tokio::test]
async fn reconcile_repairs_counts_that_drifted() {
    let (store, dir) = open().await;
    let app = suite::new_app(store.as_ref()).await;
    store.write_batch(&[suite::create_chat(app, 1, 1), suite::create_message(app, 1, 1, "x", 2)]).await.unwrap();
    // a manual edit (or a bug) breaks the counts
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("chatsys.db").display())).await.unwrap();
    sqlx::query("UPDATE chats SET messages_count = 42").execute(&pool).await.unwrap();
    sqlx::query("UPDATE applications SET chats_count = 7").execute(&pool).await.unwrap();
    let r = store.reconcile().await.unwrap();
    assert_eq!((r.applications_fixed, r.chats_fixed), (1, 1));
    let chat = store.chat(app, chatsys_core::ChatNumber::new(1).unwrap()).await.unwrap().unwrap();
    assert_eq!(chat.messages_count, 1);
    assert_eq!(store.list_applications(None, 10).await.unwrap()[0].chats_count, 1);
}

#[tokio::test]
async fn the_database_runs_in_wal_mode() {
    let (_store, dir) = open().await;
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("chatsys.db").display())).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
    assert_eq!(mode, "wal");
}
