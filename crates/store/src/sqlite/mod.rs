//! SQLite (WAL, `synchronous=FULL`): one writer connection that group-commits batches
//! (`writer.rs`, on a thread of its own), a pool of readers that never wait for it
//! (`readers.rs`), and the WAL checkpoints after its commits (`checkpointer.rs`, on a thread
//! of their own).
//!
//! Over 300 lines on purpose: the store port's reads, the settings every connection shares
//! and readiness after failed writes belong to one set of SQLite connections; the batch
//! primitives are in `batch.rs`.

mod batch;
mod checkpointer;
mod readers;
mod write;
mod writer;

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{
    BatchOutcome, ChangeFeed, ChangedMessage, ChatPosition, ChatSeed, Erasure, MessageChange, Reconciled, Store,
};
use chatsys_core::{
    AppId, AppName, AppToken, Application, Chat, ChatNumber, Error, ErrorKind, IdempotencyRecord, Message,
    MessageNumber, NewApplication, Position, Queued, Result, Timestamp, Version,
};
use rusqlite::{Connection, OptionalExtension as _, Row};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use self::checkpointer::Checkpointer;
use self::readers::Readers;
use self::writer::Writer;
use crate::error::{sqlite_error, store_error};

pub struct SqliteStore {
    /// Exactly one connection: every write (batches, applications, reconcile) is serialized
    /// here, so SQLite never has to arbitrate between writers.
    writer: Writer,
    readers: Readers,
    /// Told of every commit, and of every erasure: it starts right after a commit.
    checkpointer: Checkpointer,
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
        let readers = Readers::open(&file)?;
        let checkpointer = Checkpointer::start(&file)?;
        Ok(Self { writer, readers, checkpointer, writes_failing: AtomicBool::new(false) })
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
        self.write_erasing(work, |_| false).await
    }

    /// [`Self::write`] for a write that may delete text: `erases` tells from its outcome
    /// whether the WAL must be emptied, before the checkpointer hears of the commit.
    async fn write_erasing<T, F>(&self, work: F, erases: impl FnOnce(&Result<T>) -> bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        let result = self.writer.run(work).await;
        let erased = erases(&result);
        if result.is_ok() {
            self.checkpointer.committed(erased);
        } else if erased {
            self.checkpointer.erased();
        }
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
        self.checkpointer.close().await;
        self.readers.close();
    }
}

/// What every connection of the store sets, the writer's own (`writer.rs`) included.
const PRAGMAS: [(&str, &str); 7] = [
    ("journal_mode", "WAL"),
    // a 201 must survive power loss, not only a process crash
    ("synchronous", "FULL"),
    ("foreign_keys", "OFF"),
    // checkpoints are a thread's of their own (`checkpointer.rs`), so that a batch's commit
    // does not wait for the WAL to be copied back; the writer's own last resort is in
    // `writer.rs`
    ("wal_autocheckpoint", "0"),
    // a WAL that was started over is cut back to this size (64 MiB)
    ("journal_size_limit", "67108864"),
    // deleted content is overwritten with zeros, not left in free space
    ("secure_delete", "on"),
    // a statement that changes many rows and may fail half-way (the recount) keeps the
    // pages it changes in a statement journal: in memory, not in a temporary file (writing
    // that file was 8 % of the server's CPU under creates spread over many chats, when the
    // batch's inserts were multi-row statements)
    ("temp_store", "MEMORY"),
];

/// The statements that set up a `rusqlite` connection: [`PRAGMAS`], then its own settings
/// (the later setting wins).
fn pragmas(own: &[(&str, &str)]) -> String {
    PRAGMAS.iter().chain(own).map(|(name, value)| format!("PRAGMA {name} = {value}; ")).collect()
}

/// A `rusqlite` connection to the store's file, opened with `flags`, waiting up to `busy`
/// for a lock another connection holds, set up by [`pragmas`] with its `own` settings;
/// `opening` and `configuring` name its errors.
fn connect(
    file: &Path,
    flags: rusqlite::OpenFlags,
    busy: Duration,
    own: &[(&str, &str)],
    opening: &'static str,
    configuring: &'static str,
) -> Result<Connection> {
    let conn = Connection::open_with_flags(file, flags).map_err(sqlite_error(opening))?;
    conn.busy_timeout(busy).map_err(sqlite_error(configuring))?;
    conn.execute_batch(&pragmas(own)).map_err(sqlite_error(configuring))?;
    Ok(conn)
}

/// Waits for one of the store's threads to end (off the runtime's threads), and says so if
/// it failed.
async fn join(thread: &Mutex<Option<JoinHandle<()>>>, name: &str) {
    let thread = thread.lock().expect("thread lock").take();
    if let Some(thread) = thread
        && !matches!(tokio::task::spawn_blocking(move || thread.join()).await, Ok(Ok(())))
    {
        tracing::error!("the sqlite {name} thread failed");
    }
}

/// How long a connection waits for a lock another one holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`APPLICATION_COLUMNS`] as read.
type ApplicationColumns = (i64, String, String, i64, i64, i64);

fn application_columns(row: &Row<'_>) -> rusqlite::Result<ApplicationColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
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

const CHAT_COLUMNS: &str = "number, messages_count, created_at, updated_at";

fn chat_columns(row: &Row<'_>) -> rusqlite::Result<(i64, i64, i64, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn chat_from((number, messages_count, created_at, updated_at): (i64, i64, i64, i64)) -> Result<Chat> {
    Ok(Chat {
        number: stored_number(number, ChatNumber::new)?,
        messages_count: messages_count as u64,
        created_at: Timestamp::from_micros(created_at),
        updated_at: Timestamp::from_micros(updated_at),
    })
}

const MESSAGE_COLUMNS: &str = "chat_number, number, body, created_at, updated_at";

type MessageColumns = (i64, i64, String, i64, i64);

fn message_columns(row: &Row<'_>) -> rusqlite::Result<MessageColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn message_from((chat, number, body, created_at, updated_at): MessageColumns) -> Result<Message> {
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

/// Every row `sql` returns for `params`, as `columns` reads them.
fn all_rows<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    columns: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, columns)?.collect()
}

/// The row `sql` returns for `params`, if any.
fn one_row<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    columns: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    conn.prepare_cached(sql)?.query_row(params, columns).optional()
}

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
        let sql = format!(
            "SELECT rev, application_id, chat_number, number, {BODY_OR_NULL}, position FROM messages \
             WHERE rev > ?1 AND (rev, application_id, chat_number, number) > (?2, ?3, ?4, ?5) \
             ORDER BY rev, application_id, chat_number, number LIMIT ?6"
        );
        let rows = self.readers.read("reading changed messages", |conn| {
            all_rows(conn, &sql, (rev as i64, after_rev, app, chat, number, i64::from(limit)), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
            })
        })?;
        rows.into_iter()
            .map(|(rev, app, chat, number, body, position): (i64, i64, i64, i64, Option<String>, i64)| {
                Ok((rev as u64, stored_change(app, chat, number, body, position)?))
            })
            .collect()
    }

    async fn erasures_since(&self, rev: u64) -> Result<Vec<(u64, Erasure)>> {
        let sql = "SELECT rev, application_id, chat_number FROM erasures WHERE rev > ?1 ORDER BY rev";
        let rows = self.readers.read("reading erasures", |conn| {
            all_rows(conn, sql, [rev as i64], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        })?;
        rows.into_iter()
            .map(|(rev, app, chat): (i64, i64, Option<i64>)| match chat {
                Some(chat) => Ok((rev as u64, Erasure::Chat(AppId(app), stored_number(chat, ChatNumber::new)?))),
                None => Ok((rev as u64, Erasure::Application(AppId(app)))),
            })
            .collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.readers.read("pinging", |conn| conn.prepare_cached("SELECT 1")?.query_row([], |_| Ok(())))?;
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
        let sql = format!("SELECT {APPLICATION_COLUMNS} FROM applications WHERE token = ?1");
        let row = self
            .readers
            .read("reading an application", |conn| one_row(conn, &sql, [token.as_str()], application_columns))?;
        row.map(application_from).transpose()
    }

    async fn list_applications(&self, after: Option<&(Timestamp, AppToken)>, limit: u32) -> Result<Vec<Application>> {
        let (at, token) = after.map_or((i64::MIN, ""), |(at, token)| (at.as_micros(), token.as_str()));
        let sql = format!(
            "SELECT {APPLICATION_COLUMNS} FROM applications WHERE (created_at, token) > (?1, ?2) \
             ORDER BY created_at, token LIMIT ?3"
        );
        let rows = self.readers.read("listing applications", |conn| {
            all_rows(conn, &sql, (at, token, i64::from(limit)), application_columns)
        })?;
        rows.into_iter().map(application_from).collect()
    }

    async fn chat(&self, app: AppId, chat: ChatNumber) -> Result<Option<Chat>> {
        let sql = format!("SELECT {CHAT_COLUMNS} FROM chats WHERE application_id = ?1 AND number = ?2 AND NOT deleted");
        let row =
            self.readers.read("reading a chat", |conn| one_row(conn, &sql, [app.0, chat.as_i64()], chat_columns))?;
        row.map(chat_from).transpose()
    }

    async fn list_chats(&self, app: AppId, after: Option<ChatNumber>, limit: u32) -> Result<Vec<Chat>> {
        let sql = format!(
            "SELECT {CHAT_COLUMNS} FROM chats \
             WHERE application_id = ?1 AND number > ?2 AND NOT deleted ORDER BY number LIMIT ?3"
        );
        let params = [app.0, after.map_or(0, ChatNumber::as_i64), i64::from(limit)];
        let rows = self.readers.read("listing chats", |conn| all_rows(conn, &sql, params, chat_columns))?;
        rows.into_iter().map(chat_from).collect()
    }

    async fn message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE application_id = ?1 AND chat_number = ?2 AND number = ?3 AND NOT deleted"
        );
        let params = [app.0, chat.as_i64(), number.as_i64()];
        let row = self.readers.read("reading a message", |conn| one_row(conn, &sql, params, message_columns))?;
        row.map(message_from).transpose()
    }

    async fn list_messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<MessageNumber>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE application_id = ?1 AND chat_number = ?2 AND number > ?3 AND NOT deleted \
             ORDER BY number LIMIT ?4"
        );
        let params = [app.0, chat.as_i64(), after.map_or(0, MessageNumber::as_i64), i64::from(limit)];
        let rows = self.readers.read("listing messages", |conn| all_rows(conn, &sql, params, message_columns))?;
        rows.into_iter().map(message_from).collect()
    }

    async fn messages_by_number(
        &self,
        app: AppId,
        chat: ChatNumber,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>> {
        let mut rows = Vec::with_capacity(numbers.len());
        self.readers.read_with(|conn| {
            readers::in_pieces(
                conn,
                numbers,
                "reading messages",
                |n| {
                    format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages \
                         WHERE (application_id, chat_number, number) IN (VALUES {}) AND NOT deleted",
                        readers::groups(n, 3)
                    )
                },
                |number, b| b.put(app.0)?.put(chat.as_i64())?.put(number.as_i64()).map(drop),
                |row| {
                    rows.push(message_columns(row)?);
                    Ok(())
                },
            )
        })?;
        rows.into_iter().map(message_from).collect()
    }

    async fn scan_messages(&self, after: Option<&ChangedMessage>, limit: u32) -> Result<Vec<ChangedMessage>> {
        let (app, chat, number) = after.map_or((i64::MIN, 0, 0), |m| (m.app.0, m.chat.as_i64(), m.number.as_i64()));
        let sql = format!(
            "SELECT application_id, chat_number, number, {BODY_OR_NULL}, position FROM messages \
             WHERE (application_id, chat_number, number) > (?1, ?2, ?3) \
             ORDER BY application_id, chat_number, number LIMIT ?4"
        );
        let rows = self.readers.read("scanning messages", |conn| {
            all_rows(conn, &sql, (app, chat, number, i64::from(limit)), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
            })
        })?;
        rows.into_iter()
            .map(|(app, chat, number, body, position): (i64, i64, i64, Option<String>, i64)| {
                stored_change(app, chat, number, body, position)
            })
            .collect()
    }

    async fn idempotency_record(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>> {
        let oldest = Timestamp::now().as_micros() - IdempotencyRecord::RETENTION_MICROS;
        let sql = "SELECT scope, key, fingerprint, status, location, body, created_at FROM idempotency_keys \
                   WHERE scope = ?1 AND key = ?2 AND created_at > ?3";
        self.readers.read("reading an idempotency key", |conn| {
            one_row(conn, sql, (scope, key, oldest), |row| {
                Ok(IdempotencyRecord {
                    scope: row.get(0)?,
                    key: row.get(1)?,
                    fingerprint: row.get(2)?,
                    status: row.get(3)?,
                    location: row.get(4)?,
                    body: row.get(5)?,
                    created_at: Timestamp::from_micros(row.get(6)?),
                })
            })
        })
    }

    async fn highest_chat_number(&self, app: AppId) -> Result<Option<u64>> {
        let sql = "SELECT (SELECT max(number) FROM chats c WHERE c.application_id = a.id) FROM applications a \
                   WHERE a.id = ?1";
        let n = self.readers.read("reading the highest chat number", |conn| {
            one_row(conn, sql, [app.0], |row| row.get::<_, Option<i64>>(0))
        })?;
        Ok(n.map(|n| n.unwrap_or(0) as u64))
    }

    async fn chat_seed(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatSeed>> {
        let sql = "SELECT coalesce(max(m.number), 0), coalesce(max(m.version), 0) \
                   FROM chats c LEFT JOIN messages m ON m.application_id = c.application_id AND m.chat_number = c.number \
                   WHERE c.application_id = ?1 AND c.number = ?2 AND NOT c.deleted GROUP BY c.number";
        let seed = self.readers.read("reading the highest message number", |conn| {
            one_row(conn, sql, [app.0, chat.as_i64()], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
        })?;
        Ok(seed.map(|(number, version)| ChatSeed {
            highest_message: number as u64,
            highest_version: Version(version as u64),
        }))
    }

    async fn chat_position(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatPosition>> {
        let sql = "SELECT last_position, deleted FROM chats WHERE application_id = ?1 AND number = ?2";
        let row = self.readers.read("reading a chat's position", |conn| {
            one_row(conn, sql, [app.0, chat.as_i64()], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?)))
        })?;
        Ok(row.map(|(position, deleted)| ChatPosition { position: Position(position as u64), deleted }))
    }

    async fn chat_positions(&self, chats: &[(AppId, ChatNumber)]) -> Result<Vec<(AppId, ChatNumber, ChatPosition)>> {
        let mut rows = Vec::with_capacity(chats.len());
        self.readers.read_with(|conn| {
            readers::in_pieces(
                conn,
                chats,
                "reading chats' positions",
                |n| {
                    format!(
                        "SELECT application_id, number, last_position, deleted FROM chats \
                         WHERE (application_id, number) IN (VALUES {})",
                        readers::groups(n, 2)
                    )
                },
                |(app, chat), b| b.put(app.0)?.put(chat.as_i64()).map(drop),
                |row| {
                    rows.push((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get(3)?));
                    Ok(())
                },
            )
        })?;
        rows.into_iter()
            .map(|(app, chat, position, deleted)| {
                let position = ChatPosition { position: Position(position as u64), deleted };
                Ok((AppId(app), stored_number(chat, ChatNumber::new)?, position))
            })
            .collect()
    }

    async fn message_changes(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Position,
        limit: u32,
    ) -> Result<Vec<MessageChange>> {
        let sql = format!(
            "SELECT position, number, {BODY_OR_NULL}, created_at, updated_at FROM messages \
             WHERE application_id = ?1 AND chat_number = ?2 AND position > ?3 ORDER BY position LIMIT ?4"
        );
        let params = [app.0, chat.as_i64(), after.as_i64(), i64::from(limit)];
        let rows = self.readers.read("reading a chat's changes", |conn| {
            all_rows(conn, &sql, params, |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
        })?;
        rows.into_iter()
            .map(|(position, number, body, created_at, updated_at): (i64, i64, Option<String>, i64, i64)| {
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
        self.write_erasing(
            move |conn| write::write_batch(conn, &batch),
            |result| result.as_ref().is_ok_and(|outcome| outcome.messages_deleted > 0 || outcome.chats_deleted > 0),
        )
        .await
    }

    async fn erase_application(&self, app: AppId, token: &AppToken) -> Result<bool> {
        let token = token.clone();
        // even a failed erasure may have committed (the writer answers late), so the WAL is
        // emptied either way
        self.write_erasing(move |conn| write::erase_application(conn, app, &token), |_| true).await
    }

    async fn reconcile(&self) -> Result<Reconciled> {
        self.write(write::reconcile).await
    }
}
