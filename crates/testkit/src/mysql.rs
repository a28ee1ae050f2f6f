//! A database of a test's own on the MySQL server at `CHATSYS_TEST_MYSQL_URL`.

use sqlx::{Connection as _, MySqlConnection, Row as _};

use crate::{Service, unique_name};

/// A fresh database, dropped when this goes away.
pub struct Database {
    /// The URL of the database itself.
    pub url: String,
    pub name: String,
    server: String,
}

impl Database {
    /// A new database on the server; `None` (and one line) when the server does not answer.
    pub async fn create() -> Option<Self> {
        let server = crate::service(Service::MySql)?;
        Some(Self::create_on(&server, &unique_name("chatsys_t")).await)
    }

    pub async fn create_on(server: &str, name: &str) -> Self {
        let mut conn = MySqlConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the MySQL server at {server}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = match server.rfind('/') {
            Some(i) if i > "mysql://".len() => format!("{}/{name}", &server[..i]),
            _ => format!("{server}/{name}"),
        };
        Database { url, name: name.to_owned(), server: server.to_owned() }
    }

    /// Runs statements and returns the rows of the last one, every value as text.
    pub async fn sql(&self, statement: &str) -> Vec<Vec<String>> {
        let mut conn = MySqlConnection::connect(&self.url).await.expect("the test database answers");
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned())).fetch_all(&mut conn).await.unwrap();
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        row.try_get::<String, _>(i)
                            .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                            .or_else(|_| row.try_get::<bool, _>(i).map(|v| v.to_string()))
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // a runtime of its own: the test's may be shutting down
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = MySqlConnection::connect(&server).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
