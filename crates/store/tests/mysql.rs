//! The store contract against MySQL/MariaDB: the real server on this machine
//! (`CHATSYS_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/test`). Each test gets a
//! database of its own, dropped afterwards.

mod suite;

use std::sync::Arc;

use chatsys_core::ports::Store;
use chatsys_store::MySqlStore;
use rand::Rng as _;
use sqlx::Connection as _;

pub fn server_url() -> String {
    std::env::var("CHATSYS_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A fresh database on the test server, dropped when this goes away.
pub struct Database {
    pub url: String,
    name: String,
}

impl Database {
    pub async fn create() -> Self {
        let name = format!("chatsys_test_{:016x}", rand::rng().random::<u64>());
        let base = server_url();
        let mut conn = sqlx::MySqlConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("the MySQL server at {base} must be running for these tests: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = match base.rfind('/') {
            Some(i) if i > "mysql://".len() => format!("{}/{name}", &base[..i]),
            _ => format!("{base}/{name}"),
        };
        Database { url, name }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (base, name) = (server_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::MySqlConnection::connect(&base).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

async fn open() -> (Arc<dyn Store>, Database) {
    let db = Database::create().await;
    let store = MySqlStore::connect(&db.url, 4).await.unwrap();
    (Arc::new(store), db)
}

store_contract!(open);

#[tokio::test]
async fn reconcile_repairs_counts_that_drifted() {
    let (store, db) = open().await;
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
    let db = Database::create().await;
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
