//! The store contract against SQLite, plus what only SQLite can show (durability settings).

mod suite;

use std::sync::Arc;

use chatsys_core::ports::Store;
use chatsys_store::SqliteStore;
use tempfile::TempDir;

async fn open() -> Option<(Arc<dyn Store>, TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    Some((Arc::new(store), dir))
}

store_contract!(open);

#[tokio::test]
async fn reconcile_repairs_counts_that_drifted() {
    let (store, dir) = open().await.unwrap();
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
    let (_store, dir) = open().await.unwrap();
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("chatsys.db").display())).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
    assert_eq!(mode, "wal");
}

/// A database written by the previous schema (before positions, versions and tombstones)
/// opens with its data intact, positions given in number order and numbering going on.
#[tokio::test]
async fn an_existing_database_gains_positions_without_losing_data() {
    use chatsys_core::ports::ChatPosition;
    use chatsys_core::{ChatNumber, MessageNumber, Position};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("chatsys.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut migrator =
        sqlx::migrate::Migrator::new(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")))
            .await
            .unwrap();
    migrator.migrations = migrator.migrations.iter().filter(|m| m.version == 1).cloned().collect();
    migrator.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO applications (id, token, name, chats_count, created_at, updated_at) VALUES (1, 'tok', 'old', 2, 1, 1)",
        "INSERT INTO chats VALUES (1, 1, 2, 1, 1), (1, 2, 1, 1, 1)",
        "INSERT INTO messages VALUES (1, 1, 1, 'one', 1, 1, NULL, 1), (1, 1, 3, 'three, edited', 2, 9, 9, 1), \
         (1, 2, 1, 'other chat', 3, 3, NULL, 1)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(dir.path()).await.unwrap();
    let app = store.application(&chatsys_core::AppToken::parse("tok").unwrap()).await.unwrap().unwrap().id;
    let (c1, m3) = (ChatNumber::new(1).unwrap(), MessageNumber::new(3).unwrap());
    assert_eq!(store.message(app, c1, m3).await.unwrap().unwrap().body, "three, edited");
    let replay: Vec<(u64, u64)> = store
        .message_changes(app, c1, Position(0), 10)
        .await
        .unwrap()
        .iter()
        .map(|c| (c.position.get(), c.number.get()))
        .collect();
    assert_eq!(replay, [(1, 1), (3, 3)], "existing messages take their number as position");
    assert_eq!(
        store.chat_position(app, c1).await.unwrap(),
        Some(ChatPosition { position: Position(3), deleted: false })
    );
    let out = store.write_batch(&[suite::create_message(app, 1, 4, "four", 10)]).await.unwrap();
    assert_eq!(out.changed[0].position, Position(4), "positions go on above the migrated ones");
    store.write_batch(&[suite::edit_message(app, 1, 3, "three, edited again", 11, 1)]).await.unwrap();
    assert_eq!(store.message(app, c1, m3).await.unwrap().unwrap().body, "three, edited again");
    assert_eq!(store.chat(app, c1).await.unwrap().unwrap().messages_count, 3);
    assert_eq!(store.reconcile().await.unwrap().chats_fixed, 0);
}
