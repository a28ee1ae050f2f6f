//! The store contract against MySQL/MariaDB: the real server on this machine
//! (`CHATSYS_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`; skipped with a
//! line when it does not answer). Each test gets a database of its own, dropped afterwards.

mod suite;

use std::sync::Arc;

use chatsys_core::ports::Store;
use chatsys_store::MySqlStore;
use chatsys_testkit::mysql::Database;
use sqlx::Connection as _;

async fn open() -> Option<(Arc<dyn Store>, Database)> {
    let db = Database::create().await?;
    let store = MySqlStore::connect(&db.url, 4).await.unwrap();
    Some((Arc::new(store), db))
}

store_contract!(open);

#[tokio::test]
async fn reconcile_repairs_counts_that_drifted() {
    let Some((store, db)) = open().await else { return };
    let app = suite::new_app(store.as_ref()).await;
    store.write_batch(&[suite::create_chat(app, 1, 1), suite::create_message(app, 1, 1, "x", 2)]).await.unwrap();
    let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE chats SET messages_count = 42").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE applications SET chats_count = 7").execute(&mut conn).await.unwrap();
    let r = store.reconcile().await.unwrap();
    assert_eq!((r.applications_fixed, r.chats_fixed), (1, 1));
    let chat = store.chat(app, chatsys_core::ChatNumber::new(1).unwrap()).await.unwrap().unwrap();
    assert_eq!(chat.messages_count, 1);
}

#[tokio::test]
async fn servers_starting_together_migrate_once() {
    let Some(db) = Database::create().await else { return };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { MySqlStore::connect(&url, 2).await.map(|_| ()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().expect("every server starts");
    }
    let store = MySqlStore::connect(&db.url, 2).await.unwrap();
    store.ping().await.unwrap();
}

/// A database written by the previous schema (before positions, versions and tombstones)
/// opens with its data intact, positions given in number order and numbering going on.
#[tokio::test]
async fn an_existing_database_gains_positions_without_losing_data() {
    use chatsys_core::ports::ChatPosition;
    use chatsys_core::{ChatNumber, MessageNumber, Position};

    let Some(db) = Database::create().await else { return };
    let pool = sqlx::MySqlPool::connect(&db.url).await.unwrap();
    let mut migrator =
        sqlx::migrate::Migrator::new(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/mysql")))
            .await
            .unwrap();
    migrator.migrations = migrator.migrations.iter().filter(|m| m.version == 1).cloned().collect();
    migrator.set_locking(false);
    migrator.run(&pool).await.unwrap();
    let t = "'2026-11-01 10:00:00.000000'";
    for sql in [
        format!(
            "INSERT INTO applications (id, token, name, chats_count, created_at, updated_at) VALUES (1, 'tok', 'old', 2, {t}, {t})"
        ),
        format!(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) VALUES (1, 1, 2, {t}, {t}), (1, 2, 1, {t}, {t})"
        ),
        format!(
            "INSERT INTO messages (application_id, chat_number, number, body, created_at, updated_at, edited_at) VALUES \
                 (1, 1, 1, 'one', {t}, {t}, NULL), (1, 1, 3, 'three, edited', {t}, {t}, {t}), (1, 2, 1, 'other chat', {t}, {t}, NULL)"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = MySqlStore::connect(&db.url, 2).await.unwrap();
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
