//! SQLite (WAL, `synchronous=FULL`): one writer connection that group-commits batches
//! (`writer.rs`, on a thread of its own), and a pool of readers that never wait for it.
//!
//! Over 300 lines on purpose: the store port's reads, the settings every connection shares,
//! readiness after failed writes and the checkpoints belong to one set of SQLite
//! connections; the batch primitives are in `batch.rs`, the writer's thread in `writer.rs`.

mod batch;
mod write;
mod writer;

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{
    BatchOutcome, ChangeFeed, ChangedMessage, ChatPosition, ChatSeed, Erasure, MessageChange, Reconciled, Store,
};
use chatsys_core::{
    AppId, AppName, AppToken, Application, Chat, ChatNumber, Error, ErrorKind, IdempotencyRecord, Message,
    MessageNumber, NewApplication, Position, Queued, Result, Timestamp, Version,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Connection as _, Row as _, query, query_as, query_scalar};

use self::writer::Writer;
use crate::error::store_error;

pub struct SqliteStore {
    /// Exactly one connection: every write (batches, applications, reconcile) is serialized
    /// here, so SQLite never has to arbitrate between writers.
    writer: Writer,
    readers: SqlitePool,
    /// The background checkpointer's connection.
    checkpoints: SqlitePool,
    checkpointer: tokio::task::JoinHandle<()>,
    /// Something was deleted since the WAL was last emptied: its old pages may still hold
    /// the erased text, so the checkpointer truncates the WAL.
    erased: Arc<AtomicBool>,
    /// The last write failed for a passing reason (a full disk, an I/O error): readiness
    /// says so until a write succeeds again.
    writes_failing: AtomicBool,
}

const APPLICATION_COLUMNS: &str = "id, token, name, chats_count, created_at, updated_at";

impl SqliteStore {
    /// Opens (creating if needed) `chatsys.db` in `dir` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::unavailable(format!("cannot create the data directory {}", dir.display())).with_source(e)
        })?;
        let file = dir.join("chatsys.db");
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(store_error("configuring sqlite"))?
            .filename(&file)
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT);
        let options = PRAGMAS.iter().fold(options, |options, (name, value)| options.pragma(*name, *value));
        let mut migrating =
            SqliteConnection::connect_with(&options).await.map_err(store_error("opening the database"))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&mut migrating)
            .await
            .map_err(|e| Error::internal("cannot migrate the sqlite schema").with_source(e))?;
        migrating.close().await.map_err(store_error("opening the database"))?;
        let writer = Writer::start(&file)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone().read_only(true).pragma("cache_size", READER_CACHE_KIB))
            .await
            .map_err(store_error("opening the database"))?;
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.pragma("cache_size", CHECKPOINT_CACHE_KIB))
            .await
            .map_err(store_error("opening the database"))?;
        let erased = Arc::new(AtomicBool::new(false));
        let checkpointer = tokio::spawn(checkpoint_periodically(checkpoints.clone(), erased.clone()));
        Ok(Self { writer, readers, checkpoints, checkpointer, erased, writes_failing: AtomicBool::new(false) })
    }

    /// Keeps readiness in step with the last write: a write that failed for a passing reason
    /// (a full disk, an I/O error) makes the store not ready until one succeeds again.
    fn settle<T>(&self, result: &Result<T>) {
        match result {
            Ok(_) => {
                if self.writes_failing.swap(false, Ordering::SeqCst) {
                    tracing::info!("the store accepts writes again");
                    metrics::gauge!("chatsys_store_writes_failing").set(0.0);
                }
            }
            Err(e) => {
                if e.kind() == ErrorKind::Unavailable && !self.writes_failing.swap(true, Ordering::SeqCst) {
                    let cause = std::error::Error::source(e).map(ToString::to_string);
                    tracing::error!(error = %e, cause, "the store cannot write");
                    metrics::gauge!("chatsys_store_writes_failing").set(1.0);
                }
            }
        }
    }

    /// Runs one write on the writer's connection, and settles readiness by its outcome.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let result = self.writer.run(work).await;
        self.settle(&result);
        result
    }

    /// While writes fail, readiness tries one small write, so that it recovers by itself.
    async fn probe_write(&self) -> Result<()> {
        self.write(write::probe).await.map_err(|e| Error::unavailable(format!("the store cannot write ({e})")))
    }

    /// Checkpoints and closes the connections (on shutdown, after the last batch).
    pub async fn close(&self) {
        self.writer.stop().await;
        self.checkpointer.abort();
        if let Err(e) = query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.checkpoints).await {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        self.checkpoints.close().await;
        self.readers.close().await;
    }
}

/// Page cache per connection, in KiB (negative: SQLite's unit for a size): readers and the
/// checkpointer find what they miss in the operating system's file cache (the writer's is
/// in `writer.rs`).
const READER_CACHE_KIB: &str = "-2048";
const CHECKPOINT_CACHE_KIB: &str = "-512";

/// What every connection of the store sets, the writer's own (`writer.rs`) included.
const PRAGMAS: [(&str, &str); 6] = [
    ("journal_mode", "WAL"),
    // a 201 must survive power loss, not only a process crash
    ("synchronous", "FULL"),
    ("foreign_keys", "OFF"),
    // checkpoints are a background task's, so that a batch's commit does not wait for the
    // WAL to be copied back; the writer's own last resort is in `writer.rs`
    ("wal_autocheckpoint", "0"),
    // a WAL that was started over is cut back to this size (64 MiB)
    ("journal_size_limit", "67108864"),
    // deleted content is overwritten with zeros, not left in free space
    ("secure_delete", "on"),
];

/// How long a connection waits for a lock another one holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon the next checkpoint runs. While commits keep coming, soon: each checkpoint then
/// copies little and often finishes between two commits, and SQLite starts the WAL over at
/// the next commit, so that the writer need not checkpoint itself (`writer.rs`: a checkpoint
/// in the writer holds up every create of the batch whose commit triggered it). Otherwise
/// rarely.
const CHECKPOINT_BUSY_INTERVAL: Duration = Duration::from_millis(20);
const CHECKPOINT_IDLE_INTERVAL: Duration = Duration::from_millis(500);

/// Copies committed pages from the WAL into the database, beside the writer rather than in
/// its commits (PASSIVE: it never blocks the writer or the readers). After a delete, the
/// WAL's older frames still hold the deleted text: a TRUNCATE checkpoint (which waits for
/// readers) copies everything back and empties the file, retried until it completes.
async fn checkpoint_periodically(pool: SqlitePool, erased: Arc<AtomicBool>) {
    let mut wait = CHECKPOINT_IDLE_INTERVAL;
    // the WAL's length in frames at the last checkpoint
    let mut last_frames = -1;
    loop {
        tokio::time::sleep(wait).await;
        wait = CHECKPOINT_IDLE_INTERVAL;
        if erased.swap(false, Ordering::SeqCst) {
            match query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&pool).await {
                Ok((0, _, _)) => continue,
                Ok(_) => tracing::debug!("the wal could not be emptied yet (busy): trying again"),
                Err(e) => tracing::warn!(error = %e, "wal checkpoint failed"),
            }
            erased.store(true, Ordering::SeqCst);
        } else {
            match query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await {
                Ok((_, frames, _)) => {
                    if frames != last_frames {
                        wait = CHECKPOINT_BUSY_INTERVAL;
                    }
                    last_frames = frames;
                }
                Err(e) => tracing::warn!(error = %e, "wal checkpoint failed"),
            }
        }
    }
}

/// [`APPLICATION_COLUMNS`] as read.
type ApplicationColumns = (i64, String, String, i64, i64, i64);

fn application_from_row(row: SqliteRow) -> Result<Application> {
    application_from((
        row.get("id"),
        row.get("token"),
        row.get("name"),
        row.get("chats_count"),
        row.get("created_at"),
        row.get("updated_at"),
    ))
}

fn application_from((id, token, name, chats_count, created_at, updated_at): ApplicationColumns) -> Result<Application> {
    Ok(Application {
        id: AppId(id),
        token: AppToken::parse(&token).map_err(|e| Error::internal("stored token is malformed").with_source(e))?,
        name,
        chats_count: chats_count as u64,
        created_at: Timestamp::from_micros(created_at),
        updated_at: Timestamp::from_micros(updated_at),
    })
}

fn chat_from_row((number, messages_count, created_at, updated_at): (i64, i64, i64, i64)) -> Result<Chat> {
    Ok(Chat {
        number: stored_number(number, ChatNumber::new)?,
        messages_count: messages_count as u64,
        created_at: Timestamp::from_micros(created_at),
        updated_at: Timestamp::from_micros(updated_at),
    })
}

type MessageRow = (i64, i64, String, i64, i64);

fn message_from_row((chat, number, body, created_at, updated_at): MessageRow) -> Result<Message> {
    Ok(Message {
        chat_number: stored_number(chat, ChatNumber::new)?,
        number: stored_number(number, MessageNumber::new)?,
        body,
        created_at: Timestamp::from_micros(created_at),
        updated_at: Timestamp::from_micros(updated_at),
    })
}

fn stored_number<T, E: std::error::Error + Send + Sync + 'static>(
    n: i64,
    make: impl FnOnce(u64) -> Result<T, E>,
) -> Result<T> {
    make(n as u64).map_err(|e| Error::internal("stored number is out of range").with_source(e))
}

/// A stored message as the search index wants it (a stored row may be indexed already);
/// a tombstone has no body.
fn stored_change(app: i64, chat: i64, number: i64, body: Option<String>, position: i64) -> Result<ChangedMessage> {
    Ok(ChangedMessage {
        app: AppId(app),
        chat: stored_number(chat, ChatNumber::new)?,
        number: stored_number(number, MessageNumber::new)?,
        body,
        position: Position(position as u64),
        first_write: false,
    })
}

/// The body of a message row, `NULL` for a tombstone.
const BODY_OR_NULL: &str = "CASE WHEN deleted THEN NULL ELSE body END";

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn changes_since(
        &self,
        rev: u64,
        after: Option<&(u64, ChangedMessage)>,
        limit: u32,
    ) -> Result<Vec<(u64, ChangedMessage)>> {
        let (after_rev, app, chat, number) = after.map_or((rev as i64, i64::MAX, i64::MAX, i64::MAX), |(r, m)| {
            (*r as i64, m.app.0, m.chat.as_i64(), m.number.as_i64())
        });
        let rows: Vec<(i64, i64, i64, i64, Option<String>, i64)> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT rev, application_id, chat_number, number, {BODY_OR_NULL}, position FROM messages \
             WHERE rev > ?1 AND (rev, application_id, chat_number, number) > (?2, ?3, ?4, ?5) \
             ORDER BY rev, application_id, chat_number, number LIMIT ?6"
        )))
        .bind(rev as i64)
        .bind(after_rev)
        .bind(app)
        .bind(chat)
        .bind(number)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(store_error("reading changed messages"))?;
        rows.into_iter()
            .map(|(rev, app, chat, number, body, position)| {
                Ok((rev as u64, stored_change(app, chat, number, body, position)?))
            })
            .collect()
    }

    async fn erasures_since(&self, rev: u64) -> Result<Vec<(u64, Erasure)>> {
        let rows: Vec<(i64, i64, Option<i64>)> =
            query_as("SELECT rev, application_id, chat_number FROM erasures WHERE rev > ?1 ORDER BY rev")
                .bind(rev as i64)
                .fetch_all(&self.readers)
                .await
                .map_err(store_error("reading erasures"))?;
        rows.into_iter()
            .map(|(rev, app, chat)| match chat {
                Some(chat) => Ok((rev as u64, Erasure::Chat(AppId(app), stored_number(chat, ChatNumber::new)?))),
                None => Ok((rev as u64, Erasure::Application(AppId(app)))),
            })
            .collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        query("SELECT 1").execute(&self.readers).await.map_err(store_error("pinging"))?;
        if self.writes_failing.load(Ordering::SeqCst) {
            self.probe_write().await?;
        }
        Ok(())
    }

    async fn create_application(
        &self,
        new: &NewApplication,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Application> {
        let (new, idempotency) = (new.clone(), idempotency.cloned());
        application_from(self.write(move |conn| write::create_application(conn, &new, idempotency.as_ref())).await?)
    }

    async fn rename_application(&self, token: &AppToken, name: &AppName, at: Timestamp) -> Result<Option<Application>> {
        let (token, name) = (token.clone(), name.clone());
        self.write(move |conn| write::rename_application(conn, &token, &name, at))
            .await?
            .map(application_from)
            .transpose()
    }

    async fn application(&self, token: &AppToken) -> Result<Option<Application>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {APPLICATION_COLUMNS} FROM applications WHERE token = ?1"));
        let row = query(sql)
            .bind(token.as_str())
            .fetch_optional(&self.readers)
            .await
            .map_err(store_error("reading an application"))?;
        row.map(application_from_row).transpose()
    }

    async fn list_applications(&self, after: Option<&(Timestamp, AppToken)>, limit: u32) -> Result<Vec<Application>> {
        let (at, token) = after.map_or((i64::MIN, ""), |(at, token)| (at.as_micros(), token.as_str()));
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {APPLICATION_COLUMNS} FROM applications WHERE (created_at, token) > (?1, ?2) \
             ORDER BY created_at, token LIMIT ?3"
        ));
        let rows = query(sql)
            .bind(at)
            .bind(token)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await
            .map_err(store_error("listing applications"))?;
        rows.into_iter().map(application_from_row).collect()
    }

    async fn chat(&self, app: AppId, chat: ChatNumber) -> Result<Option<Chat>> {
        let row = query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ?1 AND number = ?2 AND NOT deleted",
        )
        .bind(app.0)
        .bind(chat.as_i64())
        .fetch_optional(&self.readers)
        .await
        .map_err(store_error("reading a chat"))?;
        row.map(chat_from_row).transpose()
    }

    async fn list_chats(&self, app: AppId, after: Option<ChatNumber>, limit: u32) -> Result<Vec<Chat>> {
        let rows = query_as(
            "SELECT number, messages_count, created_at, updated_at FROM chats \
             WHERE application_id = ?1 AND number > ?2 AND NOT deleted ORDER BY number LIMIT ?3",
        )
        .bind(app.0)
        .bind(after.map_or(0, ChatNumber::as_i64))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(store_error("listing chats"))?;
        rows.into_iter().map(chat_from_row).collect()
    }

    async fn message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Message>> {
        let row: Option<MessageRow> = query_as(
            "SELECT chat_number, number, body, created_at, updated_at FROM messages \
             WHERE application_id = ?1 AND chat_number = ?2 AND number = ?3 AND NOT deleted",
        )
        .bind(app.0)
        .bind(chat.as_i64())
        .bind(number.as_i64())
        .fetch_optional(&self.readers)
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
        let rows: Vec<MessageRow> = query_as(
            "SELECT chat_number, number, body, created_at, updated_at FROM messages \
             WHERE application_id = ?1 AND chat_number = ?2 AND number > ?3 AND NOT deleted \
             ORDER BY number LIMIT ?4",
        )
        .bind(app.0)
        .bind(chat.as_i64())
        .bind(after.map_or(0, MessageNumber::as_i64))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
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
        for chunk in numbers.chunks(500) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT chat_number, number, body, created_at, updated_at FROM messages WHERE application_id = ",
            );
            qb.push_bind(app.0).push(" AND chat_number = ").push_bind(chat.as_i64());
            qb.push(" AND NOT deleted AND number IN (");
            let mut list = qb.separated(", ");
            for n in chunk {
                list.push_bind(n.as_i64());
            }
            qb.push(")");
            let rows: Vec<MessageRow> =
                qb.build_query_as().fetch_all(&self.readers).await.map_err(store_error("reading messages"))?;
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
             WHERE (application_id, chat_number, number) > (?1, ?2, ?3) \
             ORDER BY application_id, chat_number, number LIMIT ?4"
        )))
        .bind(app)
        .bind(chat)
        .bind(number)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(store_error("scanning messages"))?;
        rows.into_iter()
            .map(|(app, chat, number, body, position)| stored_change(app, chat, number, body, position))
            .collect()
    }

    async fn idempotency_record(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>> {
        let oldest = Timestamp::now().as_micros() - IdempotencyRecord::RETENTION_MICROS;
        let row: Option<(String, String, String, i64, String, String, i64)> = query_as(
            "SELECT scope, key, fingerprint, status, location, body, created_at FROM idempotency_keys \
             WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
        )
        .bind(scope)
        .bind(key)
        .bind(oldest)
        .fetch_optional(&self.readers)
        .await
        .map_err(store_error("reading an idempotency key"))?;
        Ok(row.map(|(scope, key, fingerprint, status, location, body, created_at)| IdempotencyRecord {
            scope,
            key,
            fingerprint,
            status: status as u16,
            location,
            body,
            created_at: Timestamp::from_micros(created_at),
        }))
    }

    async fn highest_chat_number(&self, app: AppId) -> Result<Option<u64>> {
        let n: Option<Option<i64>> = query_scalar(
            "SELECT (SELECT max(number) FROM chats c WHERE c.application_id = a.id) FROM applications a WHERE a.id = ?1",
        )
        .bind(app.0)
        .fetch_optional(&self.readers)
        .await
        .map_err(store_error("reading the highest chat number"))?;
        Ok(n.map(|n| n.unwrap_or(0) as u64))
    }

    async fn chat_seed(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatSeed>> {
        let seed: Option<(i64, i64)> = query_as(
            "SELECT coalesce(max(m.number), 0), coalesce(max(m.version), 0) \
             FROM chats c LEFT JOIN messages m ON m.application_id = c.application_id AND m.chat_number = c.number \
             WHERE c.application_id = ?1 AND c.number = ?2 AND NOT c.deleted GROUP BY c.number",
        )
        .bind(app.0)
        .bind(chat.as_i64())
        .fetch_optional(&self.readers)
        .await
        .map_err(store_error("reading the highest message number"))?;
        Ok(seed.map(|(number, version)| ChatSeed {
            highest_message: number as u64,
            highest_version: Version(version as u64),
        }))
    }

    async fn chat_position(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatPosition>> {
        let row: Option<(i64, bool)> =
            query_as("SELECT last_position, deleted FROM chats WHERE application_id = ?1 AND number = ?2")
                .bind(app.0)
                .bind(chat.as_i64())
                .fetch_optional(&self.readers)
                .await
                .map_err(store_error("reading a chat's position"))?;
        Ok(row.map(|(position, deleted)| ChatPosition { position: Position(position as u64), deleted }))
    }

    async fn chat_positions(&self, chats: &[(AppId, ChatNumber)]) -> Result<Vec<(AppId, ChatNumber, ChatPosition)>> {
        let mut out = Vec::with_capacity(chats.len());
        for piece in crate::batch::pieces(chats) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT application_id, number, last_position, deleted FROM chats WHERE (application_id, number) IN (VALUES ",
            );
            let mut list = qb.separated(", ");
            for (app, chat) in piece {
                list.push("(").push_bind_unseparated(app.0).push_unseparated(", ");
                list.push_bind_unseparated(chat.as_i64()).push_unseparated(")");
            }
            qb.push(")");
            let rows: Vec<(i64, i64, i64, bool)> =
                qb.build_query_as().fetch_all(&self.readers).await.map_err(store_error("reading chats' positions"))?;
            for (app, chat, position, deleted) in rows {
                let position = ChatPosition { position: Position(position as u64), deleted };
                out.push((AppId(app), stored_number(chat, ChatNumber::new)?, position));
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
        let rows: Vec<(i64, i64, Option<String>, i64, i64)> = query_as(sqlx::AssertSqlSafe(format!(
            "SELECT position, number, {BODY_OR_NULL}, created_at, updated_at FROM messages \
             WHERE application_id = ?1 AND chat_number = ?2 AND position > ?3 ORDER BY position LIMIT ?4"
        )))
        .bind(app.0)
        .bind(chat.as_i64())
        .bind(after.as_i64())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(store_error("reading a chat's changes"))?;
        rows.into_iter()
            .map(|(position, number, body, created_at, updated_at)| {
                let number = stored_number(number, MessageNumber::new)?;
                let message = body.map(|body| Message {
                    chat_number: chat,
                    number,
                    body,
                    created_at: Timestamp::from_micros(created_at),
                    updated_at: Timestamp::from_micros(updated_at),
                });
                Ok(MessageChange { position: Position(position as u64), number, message })
            })
            .collect()
    }

    async fn write_batch(&self, batch: &[Queued]) -> Result<BatchOutcome> {
        let batch = batch.to_vec();
        let result = self.write(move |conn| write::write_batch(conn, &batch)).await;
        if let Ok(outcome) = &result
            && (outcome.messages_deleted > 0 || outcome.chats_deleted > 0)
        {
            self.erased.store(true, Ordering::SeqCst);
        }
        result
    }

    async fn erase_application(&self, app: AppId, token: &AppToken) -> Result<bool> {
        let token = token.clone();
        let result = self.write(move |conn| write::erase_application(conn, app, &token)).await;
        self.erased.store(true, Ordering::SeqCst);
        result
    }

    async fn reconcile(&self) -> Result<Reconciled> {
        self.write(write::reconcile).await
    }
}
