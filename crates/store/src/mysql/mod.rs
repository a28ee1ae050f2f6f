//! MySQL 8 (and MariaDB 10.11): the source of truth of distributed mode. Many API servers
//! read it and many workers write it; every write of the pipeline is idempotent on the
//! natural keys, so a redelivered batch changes nothing.
//!
//! Over 300 lines on purpose: the store port's reads and writes outside batches on one
//! pool; the batch primitives are in `batch.rs`.

mod batch;
mod write;

use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{BatchOutcome, ChangedMessage, ChatPosition, ChatSeed, MessageChange, Reconciled, Store};
use chatsys_core::{
    AppId, AppName, AppToken, Application, Chat, ChatNumber, Error, IdempotencyRecord, Message, MessageNumber,
    NewApplication, Position, Queued, Result, Timestamp, Version,
};
use chrono::{DateTime, NaiveDateTime};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{Executor as _, QueryBuilder, Row as _, query, query_as, query_scalar};

use crate::error::store_error;

pub struct MySqlStore {
    pool: MySqlPool,
}

/// How long a statement may wait for a row lock before it fails (and its batch is retried or
/// redelivered), instead of InnoDB's 50 s.
const LOCK_WAIT_SECONDS: u32 = 5;

pub(crate) fn to_datetime(t: Timestamp) -> NaiveDateTime {
    DateTime::from_timestamp_micros(t.as_micros()).unwrap_or_default().naive_utc()
}

pub(crate) fn from_datetime(t: NaiveDateTime) -> Timestamp {
    Timestamp::from_micros(t.and_utc().timestamp_micros())
}

impl MySqlStore {
    /// Connects and brings the schema up to date. Servers starting together are safe: the
    /// migrator holds a MySQL named lock while it runs.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options: MySqlConnectOptions = url
            .parse()
            .map_err(|e| Error::invalid("CHATSYS_DATABASE_URL is not a valid mysql:// URL").with_source(e))?;
        let options = options.charset("utf8mb4").timezone(Some(String::from("+00:00"))).statement_cache_capacity(256);
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"
                    )))
                    .await?;
                    // fewer gap locks between workers; the statement form works on both engines
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(store_error("connecting to mysql"))?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for the jobs that need a session of their own (the reconcile lock).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs the migrations holding a named lock, so that servers starting together take turns
/// (sqlx's own lock asks MariaDB for an infinite wait with -1, which MariaDB does not grant).
async fn migrate(pool: &MySqlPool) -> Result<()> {
    let err = || store_error("migrating the mysql schema");
    let mut conn = pool.acquire().await.map_err(err())?;
    let locked: Option<i64> =
        query_scalar("SELECT GET_LOCK('chatsys_migrate', 120)").fetch_one(&mut *conn).await.map_err(err())?;
    if locked != Some(1) {
        return Err(Error::unavailable("another server held the migration lock for two minutes"));
    }
    let mut migrator = sqlx::migrate!("migrations/mysql");
    migrator.set_locking(false);
    let result = migrator.run_direct(None, &mut *conn, false).await;
    let _ = query("SELECT RELEASE_LOCK('chatsys_migrate')").execute(&mut *conn).await;
    result.map_err(|e| Error::unavailable("cannot migrate the mysql schema").with_source(e))
}

fn application_from_row(row: MySqlRow) -> Result<Application> {
    let token: String = row.get("token");
    Ok(Application {
        id: AppId(row.get("id")),
        token: AppToken::parse(&token).map_err(|e| Error::internal("stored token is malformed").with_source(e))?,
        name: row.get("name"),
        chats_count: row.get::<i64, _>("chats_count") as u64,
        created_at: from_datetime(row.get("created_at")),
        updated_at: from_datetime(row.get("updated_at")),
    })
}

type ChatRow = (i64, i64, NaiveDateTime, NaiveDateTime);

fn chat_from_row((number, messages_count, created_at, updated_at): ChatRow) -> Result<Chat> {
    Ok(Chat {
        number: stored(number, ChatNumber::new)?,
        messages_count: messages_count as u64,
        created_at: from_datetime(created_at),
        updated_at: from_datetime(updated_at),
    })
}

type MessageRow = (i64, i64, String, NaiveDateTime, NaiveDateTime);

fn message_from_row((chat, number, body, created_at, updated_at): MessageRow) -> Result<Message> {
    Ok(Message {
        chat_number: stored(chat, ChatNumber::new)?,
        number: stored(number, MessageNumber::new)?,
        body,
        created_at: from_datetime(created_at),
        updated_at: from_datetime(updated_at),
    })
}

pub(crate) fn stored<T, E: std::error::Error + Send + Sync + 'static>(
    n: i64,
    make: impl FnOnce(u64) -> Result<T, E>,
) -> Result<T> {
    make(n as u64).map_err(|e| Error::internal("stored number is out of range").with_source(e))
}

const APPLICATION: &str = "SELECT id, token, name, chats_count, created_at, updated_at FROM applications";
const MESSAGE: &str = "SELECT chat_number, number, body, created_at, updated_at FROM messages";
/// The body of a message row, `NULL` for a tombstone.
const BODY_OR_NULL: &str = "IF(deleted, NULL, body)";

#[async_trait]
impl Store for MySqlStore {
    async fn ping(&self) -> Result<()> {
        query("SELECT 1").execute(&self.pool).await.map_err(store_error("pinging"))?;
        Ok(())
    }

    async fn create_application(
        &self,
        new: &NewApplication,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Application> {
        let err = || store_error("creating an application");
        let mut tx = self.pool.begin().await.map_err(err())?;
        let at = to_datetime(new.at);
        query("INSERT INTO applications (token, name, chats_count, created_at, updated_at) VALUES (?, ?, 0, ?, ?)")
            .bind(new.token.as_str())
            .bind(new.name.as_str())
            .bind(at)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
        if let Some(record) = idempotency {
            batch::insert_idempotency_records(&mut tx, std::slice::from_ref(record)).await?;
        }
        let row = query(sqlx::AssertSqlSafe(format!("{APPLICATION} WHERE token = ?")))
            .bind(new.token.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(err())?;
        tx.commit().await.map_err(err())?;
        application_from_row(row)
    }

    async fn rename_application(&self, token: &AppToken, name: &AppName, at: Timestamp) -> Result<Option<Application>> {
        let err = || store_error("renaming an application");
        let mut tx = self.pool.begin().await.map_err(err())?;
        query("UPDATE applications SET name = ?, updated_at = GREATEST(updated_at, ?) WHERE token = ?")
            .bind(name.as_str())
            .bind(to_datetime(at))
            .bind(token.as_str())
            .execute(&mut *tx)
            .await
            .map_err(err())?;
        let row = query(sqlx::AssertSqlSafe(format!("{APPLICATION} WHERE token = ?")))
            .bind(token.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(err())?;
        tx.commit().await.map_err(err())?;
        row.map(application_from_row).transpose()
    }

    async fn application(&self, token: &AppToken) -> Result<Option<Application>> {
        let row = query(sqlx::AssertSqlSafe(format!("{APPLICATION} WHERE token = ?")))
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error("reading an application"))?;
        row.map(application_from_row).transpose()
    }

    async fn list_applications(&self, after: Option<&(Timestamp, AppToken)>, limit: u32) -> Result<Vec<Application>> {
        let rows = match after {
            Some((at, token)) => {
                let at = to_datetime(*at);
                query(sqlx::AssertSqlSafe(format!(
                    "{APPLICATION} WHERE created_at > ? OR (created_at = ? AND token > ?) ORDER BY created_at, token LIMIT ?"
                )))
                .bind(at)
                .bind(at)
                .bind(token.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                query(sqlx::AssertSqlSafe(format!("{APPLICATION} ORDER BY created_at, token LIMIT ?")))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(store_error("listing applications"))?;
        rows.into_iter().map(application_from_row).collect()
    }

    async fn chat(&self, app: AppId, chat: ChatNumber) -> Result<Option<Chat>> {
        let row: Option<ChatRow> = query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ? AND number = ? AND NOT deleted",
        )
        .bind(app.0)
        .bind(chat.as_i64())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error("reading a chat"))?;
        row.map(chat_from_row).transpose()
    }

    async fn list_chats(&self, app: AppId, after: Option<ChatNumber>, limit: u32) -> Result<Vec<Chat>> {
        let rows: Vec<ChatRow> = query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ? AND number > ? AND NOT deleted ORDER BY number LIMIT ?",
        )
        .bind(app.0)
        .bind(after.map_or(0, ChatNumber::as_i64))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error("listing chats"))?;
        rows.into_iter().map(chat_from_row).collect()
    }

    async fn message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Message>> {
        let row: Option<MessageRow> = query_as(sqlx::AssertSqlSafe(format!(
            "{MESSAGE} WHERE application_id = ? AND chat_number = ? AND number = ? AND NOT deleted"
        )))
        .bind(app.0)
        .bind(chat.as_i64())
        .bind(number.as_i64())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error("reading a message"))?;
        row.map(message_from_row).transpose()
    }

    async fn list_messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<MessageNumber>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let rows: Vec<MessageRow> = query_as(sqlx::AssertSqlSafe(format!(
            "{MESSAGE} WHERE application_id = ? AND chat_number = ? AND number > ? AND NOT deleted \
             ORDER BY number LIMIT ?"
        )))
        .bind(app.0)
        .bind(chat.as_i64())
        .bind(after.map_or(0, MessageNumber::as_i64))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error("listing messages"))?;
        rows.into_iter().map(message_from_row).collect()
    }

    async fn messages_by_number(
        &self,
        app: AppId,
        chat: ChatNumber,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>> {
        let mut out = Vec::with_capacity(numbers.len());
        for chunk in crate::batch::pieces(numbers) {
            let mut qb = QueryBuilder::new(MESSAGE);
            qb.push(" WHERE application_id = ").push_bind(app.0);
            qb.push(" AND chat_number = ").push_bind(chat.as_i64()).push(" AND NOT deleted AND number IN (");
            let mut list = qb.separated(", ");
            for n in chunk {
                list.push_bind(n.as_i64());
            }
            qb.push(")");
            let rows: Vec<MessageRow> =
                qb.build_query_as().fetch_all(&self.pool).await.map_err(store_error("reading messages"))?;
            for row in rows {
                out.push(message_from_row(row)?);
            }
        }
        Ok(out)
    }

    async fn scan_messages(&self, after: Option<&ChangedMessage>, limit: u32) -> Result<Vec<ChangedMessage>> {
        let (app, chat, number) = after.map_or((i64::MIN, 0, 0), |m| (m.app.0, m.chat.as_i64(), m.number.as_i64()));
        let rows: Vec<(i64, i64, i64, Option<String>, i64)> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT application_id, chat_number, number, {BODY_OR_NULL}, position FROM messages \
             WHERE application_id > ? OR (application_id = ? AND (chat_number > ? OR (chat_number = ? AND number > ?))) \
             ORDER BY application_id, chat_number, number LIMIT ?"
        )))
        .bind(app)
        .bind(app)
        .bind(chat)
        .bind(chat)
        .bind(number)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error("scanning messages"))?;
        rows.into_iter()
            .map(|(app, chat, number, body, position)| {
                Ok(ChangedMessage {
                    app: AppId(app),
                    chat: stored(chat, ChatNumber::new)?,
                    number: stored(number, MessageNumber::new)?,
                    body,
                    position: Position(position as u64),
                    first_write: false,
                })
            })
            .collect()
    }

    async fn idempotency_record(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>> {
        let oldest =
            to_datetime(Timestamp::from_micros(Timestamp::now().as_micros() - IdempotencyRecord::RETENTION_MICROS));
        let row: Option<(String, String, String, i32, String, String, NaiveDateTime)> = query_as(
            "SELECT scope, idem_key, fingerprint, status, location, body, created_at FROM idempotency_keys \
             WHERE scope = ? AND idem_key = ? AND created_at > ?",
        )
        .bind(scope)
        .bind(key)
        .bind(oldest)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error("reading an idempotency key"))?;
        Ok(row.map(|(scope, key, fingerprint, status, location, body, created_at)| IdempotencyRecord {
            scope,
            key,
            fingerprint,
            status: status as u16,
            location,
            body,
            created_at: from_datetime(created_at),
        }))
    }

    async fn highest_chat_number(&self, app: AppId) -> Result<Option<u64>> {
        let n: Option<Option<i64>> = query_scalar(
            "SELECT (SELECT MAX(number) FROM chats c WHERE c.application_id = a.id) FROM applications a WHERE a.id = ?",
        )
        .bind(app.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error("reading the highest chat number"))?;
        Ok(n.map(|n| n.unwrap_or(0) as u64))
    }

    async fn chat_seed(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatSeed>> {
        let live: Option<i64> =
            query_scalar("SELECT number FROM chats WHERE application_id = ? AND number = ? AND NOT deleted")
                .bind(app.0)
                .bind(chat.as_i64())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error("reading a chat"))?;
        if live.is_none() {
            return Ok(None);
        }
        let (number, version): (Option<i64>, Option<i64>) =
            query_as("SELECT MAX(number), MAX(version) FROM messages WHERE application_id = ? AND chat_number = ?")
                .bind(app.0)
                .bind(chat.as_i64())
                .fetch_one(&self.pool)
                .await
                .map_err(store_error("reading the highest message number"))?;
        Ok(Some(ChatSeed {
            highest_message: number.unwrap_or(0) as u64,
            highest_version: Version(version.unwrap_or(0) as u64),
        }))
    }

    async fn chat_position(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatPosition>> {
        let row: Option<(i64, bool)> =
            query_as("SELECT last_position, deleted FROM chats WHERE application_id = ? AND number = ?")
                .bind(app.0)
                .bind(chat.as_i64())
                .fetch_optional(&self.pool)
                .await
                .map_err(store_error("reading a chat's position"))?;
        Ok(row.map(|(position, deleted)| ChatPosition { position: Position(position as u64), deleted }))
    }

    async fn chat_positions(&self, chats: &[(AppId, ChatNumber)]) -> Result<Vec<(AppId, ChatNumber, ChatPosition)>> {
        let mut out = Vec::with_capacity(chats.len());
        for piece in crate::batch::pieces(chats) {
            let mut qb = QueryBuilder::<sqlx::MySql>::new(
                "SELECT application_id, number, last_position, deleted FROM chats WHERE (application_id, number) IN (",
            );
            let mut list = qb.separated(", ");
            for (app, chat) in piece {
                list.push("(").push_bind_unseparated(app.0).push_unseparated(", ");
                list.push_bind_unseparated(chat.as_i64()).push_unseparated(")");
            }
            qb.push(")");
            let rows: Vec<(i64, i64, i64, bool)> =
                qb.build_query_as().fetch_all(&self.pool).await.map_err(store_error("reading chats' positions"))?;
            for (app, chat, position, deleted) in rows {
                let position = ChatPosition { position: Position(position as u64), deleted };
                out.push((AppId(app), stored(chat, ChatNumber::new)?, position));
            }
        }
        Ok(out)
    }

    async fn message_changes(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Position,
        limit: u32,
    ) -> Result<Vec<MessageChange>> {
        let rows: Vec<(i64, i64, Option<String>, NaiveDateTime, NaiveDateTime)> =
            query_as(sqlx::AssertSqlSafe(format!(
                "SELECT position, number, {BODY_OR_NULL}, created_at, updated_at FROM messages \
             WHERE application_id = ? AND chat_number = ? AND position > ? ORDER BY position LIMIT ?"
            )))
            .bind(app.0)
            .bind(chat.as_i64())
            .bind(after.as_i64())
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(store_error("reading a chat's changes"))?;
        rows.into_iter()
            .map(|(position, number, body, created_at, updated_at)| {
                let number = stored(number, MessageNumber::new)?;
                let message = body.map(|body| Message {
                    chat_number: chat,
                    number,
                    body,
                    created_at: from_datetime(created_at),
                    updated_at: from_datetime(updated_at),
                });
                Ok(MessageChange { position: Position(position as u64), number, message })
            })
            .collect()
    }

    async fn write_batch(&self, batch: &[Queued]) -> Result<BatchOutcome> {
        write::write_batch(&self.pool, batch).await
    }

    async fn reconcile(&self) -> Result<Reconciled> {
        write::reconcile(&self.pool).await
    }

    async fn erase_application(&self, app: AppId, token: &AppToken) -> Result<bool> {
        write::erase_application(&self.pool, app, token).await
    }
}
