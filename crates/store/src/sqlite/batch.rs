//! The batch primitives on SQLite, run on the writer's own connection (`writer.rs`). One
//! connection writes (every write of the process goes through it), so "locking" a row is
//! reading it: nothing else can change it meanwhile. The primitives are the port's async
//! ones, but nothing in them waits: the writer thread drives a batch with `block_on`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chatsys_core::{IdempotencyRecord, Result, Timestamp};
use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, Connection, Row};

use crate::batch::{BatchTx, ChatKey, ChatRow, MessageKey, MessageRow, pieces};
use crate::error::sqlite_error;

/// A batch's open transaction. A batch that fails is rolled back by the writer, which does
/// that after every failed write (`writer.rs`).
pub(crate) struct SqliteBatch<'c> {
    conn: &'c mut Connection,
    rev: i64,
}

impl<'c> SqliteBatch<'c> {
    /// Opens the transaction and takes the batch's number in the change feed.
    pub(crate) fn begin(conn: &'c mut Connection) -> Result<(Self, u64)> {
        let err = || sqlite_error("writing a batch");
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err())?;
        let rev: i64 = conn
            .prepare_cached("UPDATE store_meta SET value = value + 1 WHERE name = 'rev' RETURNING value")
            .and_then(|mut s| s.query_row([], |row| row.get(0)))
            .map_err(err())?;
        Ok((Self { conn, rev }, rev as u64))
    }
}

/// `n` groups of `width` placeholders: `(?, ?), (?, ?)`.
pub(super) fn groups(n: usize, width: usize) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    vec![group; n].join(", ")
}

/// Binds a statement's values in order.
pub(super) struct Binder<'s, 'c> {
    statement: &'s mut CachedStatement<'c>,
    next: usize,
}

impl Binder<'_, '_> {
    pub(super) fn put(&mut self, value: impl ToSql) -> rusqlite::Result<&mut Self> {
        self.next += 1;
        self.statement.raw_bind_parameter(self.next, value)?;
        Ok(self)
    }
}

/// Runs `sql` over `items` in pieces of the fixed sizes (`sql(n)`: the statement for `n`
/// items), each item binding its values; `each_row` takes the rows the statements return.
pub(super) fn in_pieces<T>(
    conn: &Connection,
    items: &[T],
    context: &'static str,
    sql: impl Fn(usize) -> String,
    bind: impl Fn(&T, &mut Binder) -> rusqlite::Result<()>,
    mut each_row: impl FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> Result<()> {
    for piece in pieces(items) {
        let mut run = || -> rusqlite::Result<()> {
            let mut statement = conn.prepare_cached(&sql(piece.len()))?;
            let mut binder = Binder { statement: &mut statement, next: 0 };
            for item in piece {
                bind(item, &mut binder)?;
            }
            let mut rows = statement.raw_query();
            while let Some(row) = rows.next()? {
                each_row(row)?;
            }
            Ok(())
        };
        run().map_err(sqlite_error(context))?;
    }
    Ok(())
}

/// A statement that returns no rows.
fn no_rows(_: &Row<'_>) -> rusqlite::Result<()> {
    Ok(())
}

#[async_trait]
impl BatchTx for SqliteBatch<'_> {
    async fn lock_chats(&mut self, keys: &[ChatKey]) -> Result<Vec<(ChatKey, ChatRow)>> {
        let mut out = Vec::with_capacity(keys.len());
        in_pieces(
            self.conn,
            keys,
            "reading chats",
            |n| {
                format!(
                    "SELECT application_id, number, last_position, messages_count, deleted, created_at, updated_at \
                     FROM chats WHERE (application_id, number) IN (VALUES {})",
                    groups(n, 2)
                )
            },
            |(app, chat), b| b.put(app)?.put(chat).map(drop),
            |row| {
                let chat = ChatRow {
                    last_position: row.get(2)?,
                    messages_count: row.get(3)?,
                    deleted: row.get(4)?,
                    created_at: Timestamp::from_micros(row.get(5)?),
                    updated_at: Timestamp::from_micros(row.get(6)?),
                };
                out.push(((row.get(0)?, row.get(1)?), chat));
                Ok(())
            },
        )?;
        Ok(out)
    }

    async fn lock_applications(&mut self, apps: &[i64]) -> Result<BTreeSet<i64>> {
        let mut out = BTreeSet::new();
        in_pieces(
            self.conn,
            apps,
            "reading applications",
            |n| format!("SELECT id FROM applications WHERE id IN ({})", vec!["?"; n].join(", ")),
            |app, b| b.put(app).map(drop),
            |row| {
                out.insert(row.get(0)?);
                Ok(())
            },
        )?;
        Ok(out)
    }

    async fn insert_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<BTreeSet<ChatKey>> {
        let mut inserted = BTreeSet::new();
        in_pieces(
            self.conn,
            rows,
            "inserting chats",
            |n| {
                format!(
                    "INSERT INTO chats (application_id, number, messages_count, last_position, deleted, created_at, \
                     updated_at) VALUES {} ON CONFLICT DO NOTHING RETURNING application_id, number",
                    groups(n, 7)
                )
            },
            |((app, number), row), b| {
                b.put(app)?.put(number)?.put(row.messages_count)?.put(row.last_position)?.put(row.deleted)?;
                b.put(row.created_at.as_micros())?.put(row.updated_at.as_micros()).map(drop)
            },
            |row| {
                inserted.insert((row.get(0)?, row.get(1)?));
                Ok(())
            },
        )?;
        Ok(inserted)
    }

    async fn messages(&mut self, keys: &[MessageKey]) -> Result<Vec<(MessageKey, MessageRow)>> {
        let mut out = Vec::new();
        in_pieces(
            self.conn,
            keys,
            "reading messages",
            |n| {
                format!(
                    "SELECT application_id, chat_number, number, CASE WHEN deleted THEN NULL ELSE body END, \
                     version, position, created_at, updated_at FROM messages \
                     WHERE (application_id, chat_number, number) IN (VALUES {})",
                    groups(n, 3)
                )
            },
            |(app, chat, number), b| b.put(app)?.put(chat)?.put(number).map(drop),
            |row| {
                let message = MessageRow {
                    body: row.get(3)?,
                    version: row.get(4)?,
                    position: row.get(5)?,
                    created_at: Timestamp::from_micros(row.get(6)?),
                    updated_at: Timestamp::from_micros(row.get(7)?),
                };
                out.push(((row.get(0)?, row.get(1)?, row.get(2)?), message));
                Ok(())
            },
        )?;
        Ok(out)
    }

    async fn insert_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        let rev = self.rev;
        in_pieces(
            self.conn,
            rows,
            "inserting messages",
            |n| {
                format!(
                    "INSERT INTO messages (application_id, chat_number, number, body, version, position, deleted, \
                     created_at, updated_at, rev) VALUES {}",
                    groups(n, 10)
                )
            },
            |((app, chat, number), row), b| {
                b.put(app)?.put(chat)?.put(number)?.put(row.body.as_deref().unwrap_or_default())?;
                b.put(row.version)?.put(row.position)?.put(row.body.is_none())?;
                b.put(row.created_at.as_micros())?.put(row.updated_at.as_micros())?.put(rev)?;
                Ok(())
            },
            no_rows,
        )
    }

    async fn update_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        for ((app, chat, number), row) in rows {
            let values: [&dyn ToSql; 10] = [
                &row.body.as_deref().unwrap_or_default(),
                &row.version,
                &row.position,
                &row.body.is_none(),
                &row.created_at.as_micros(),
                &row.updated_at.as_micros(),
                &self.rev,
                app,
                chat,
                number,
            ];
            self.conn
                .prepare_cached(
                    "UPDATE messages SET body = ?1, version = ?2, position = ?3, deleted = ?4, created_at = ?5, \
                     updated_at = ?6, rev = ?7 WHERE application_id = ?8 AND chat_number = ?9 AND number = ?10",
                )
                .and_then(|mut s| s.execute(values))
                .map_err(sqlite_error("updating messages"))?;
        }
        Ok(())
    }

    async fn erase_messages(&mut self, chats: &[ChatKey]) -> Result<()> {
        for (app, chat) in chats {
            self.conn
                .prepare_cached("DELETE FROM messages WHERE application_id = ?1 AND chat_number = ?2")
                .and_then(|mut s| s.execute([app, chat]))
                .map_err(sqlite_error("erasing messages"))?;
            self.conn
                .prepare_cached("INSERT INTO erasures (rev, application_id, chat_number) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute([&self.rev, app, chat]))
                .map_err(sqlite_error("recording an erasure"))?;
        }
        Ok(())
    }

    async fn update_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<()> {
        in_pieces(
            self.conn,
            rows,
            "updating chats",
            |n| {
                format!(
                    "WITH d(a, n, p, m, x, c, u) AS (VALUES {}) UPDATE chats SET last_position = d.p, \
                     messages_count = d.m, deleted = d.x, created_at = d.c, updated_at = d.u \
                     FROM d WHERE chats.application_id = d.a AND chats.number = d.n",
                    groups(n, 7)
                )
            },
            |((app, number), row), b| {
                b.put(app)?.put(number)?.put(row.last_position)?.put(row.messages_count)?.put(row.deleted)?;
                b.put(row.created_at.as_micros())?.put(row.updated_at.as_micros())?;
                Ok(())
            },
            no_rows,
        )
    }

    async fn add_chats_counts(&mut self, deltas: &[(i64, i64)]) -> Result<()> {
        in_pieces(
            self.conn,
            deltas,
            "updating counts",
            |n| {
                format!(
                    "WITH d(a, n) AS (VALUES {}) UPDATE applications SET chats_count = chats_count + d.n \
                     FROM d WHERE applications.id = d.a",
                    groups(n, 2)
                )
            },
            |(app, delta), b| {
                b.put(app)?.put(delta)?;
                Ok(())
            },
            no_rows,
        )
    }

    async fn insert_idempotency_records(&mut self, records: &[IdempotencyRecord]) -> Result<()> {
        insert_idempotency_records(self.conn, records)
    }

    async fn erase_answers(&mut self, paths: &[String]) -> Result<()> {
        for path in paths {
            self.conn
                .prepare_cached(
                    "DELETE FROM idempotency_keys \
                     WHERE location = ?1 OR substr(location, 1, length(?1) + 1) = ?1 || '/'",
                )
                .and_then(|mut s| s.execute([path]))
                .map_err(sqlite_error("erasing idempotency records"))?;
        }
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(sqlite_error("committing a batch"))
    }
}

/// Records answered idempotent creates; a record past its retention is replaced.
pub(crate) fn insert_idempotency_records(conn: &Connection, records: &[IdempotencyRecord]) -> Result<()> {
    in_pieces(
        conn,
        records,
        "recording idempotency keys",
        |n| {
            format!(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, status, location, body, created_at) \
                 VALUES {} ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                 status = excluded.status, location = excluded.location, body = excluded.body, \
                 created_at = excluded.created_at \
                 WHERE idempotency_keys.created_at <= excluded.created_at - {}",
                groups(n, 7),
                IdempotencyRecord::RETENTION_MICROS
            )
        },
        |r, b| {
            b.put(r.scope.as_str())?.put(r.key.as_str())?.put(r.fingerprint.as_str())?.put(i64::from(r.status))?;
            b.put(r.location.as_str())?.put(r.body.as_str())?.put(r.created_at.as_micros())?;
            Ok(())
        },
        no_rows,
    )
}
