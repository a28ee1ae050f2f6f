//! The batch primitives on SQLite, run on the writer's own connection (`writer.rs`). One
//! connection writes (every write of the process goes through it), so "locking" a row is
//! reading it: nothing else can change it meanwhile. The primitives are the port's async
//! ones, but nothing in them waits: the writer thread drives a batch with `block_on`.
//!
//! Each primitive runs a one-row statement once per row, from the connection's statement
//! cache: on SQLite a statement is a function call, not a round trip (MySQL's primitives
//! send many rows per statement for that reason). A multi-row statement here cost more: its
//! `IN (VALUES …)` or `RETURNING` built a temporary table at every run, and a batch of 15
//! rows ran in six pieces of the fixed sizes (`crate::batch::pieces`).

use std::collections::BTreeSet;

use async_trait::async_trait;
use chatsys_core::{IdempotencyRecord, Result, Timestamp};
use rusqlite::{Connection, OptionalExtension as _, Params, Row};

use crate::batch::{BatchTx, ChatKey, ChatRow, MessageKey, MessageRow};
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

/// Runs the one-row statement `sql` for each key (its parameters): the rows that exist.
fn rows_by_key<K: Params + Copy, R>(
    conn: &Connection,
    keys: &[K],
    context: &'static str,
    sql: &str,
    row: impl Fn(&Row<'_>) -> rusqlite::Result<R>,
) -> Result<Vec<(K, R)>> {
    let read = || -> rusqlite::Result<Vec<(K, R)>> {
        let mut statement = conn.prepare_cached(sql)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.extend(statement.query_row(*key, &row).optional()?.map(|found| (*key, found)));
        }
        Ok(out)
    };
    read().map_err(sqlite_error(context))
}

/// Runs the one-row statement `sql` once for each item, with the parameters `values` makes
/// of it; `changed` learns how many rows each run changed.
fn execute_each<'a, T, P: Params>(
    conn: &Connection,
    context: &'static str,
    sql: &str,
    items: &'a [T],
    values: impl Fn(&'a T) -> P,
    mut changed: impl FnMut(&'a T, usize),
) -> Result<()> {
    let mut write = || -> rusqlite::Result<()> {
        let mut statement = conn.prepare_cached(sql)?;
        for item in items {
            changed(item, statement.execute(values(item))?);
        }
        Ok(())
    };
    write().map_err(sqlite_error(context))
}

/// A message row's parameters, for its insert and its update alike: the key (?1–?3), then
/// body, version, position, deleted, created_at, updated_at and the batch (?4–?10).
type MessageValues<'r> = (i64, i64, i64, &'r str, i64, i64, bool, i64, i64, i64);

fn message_values(((app, chat, number), row): &(MessageKey, MessageRow), rev: i64) -> MessageValues<'_> {
    let body = row.body.as_deref().unwrap_or_default();
    let (created, updated) = (row.created_at.as_micros(), row.updated_at.as_micros());
    (*app, *chat, *number, body, row.version, row.position, row.body.is_none(), created, updated, rev)
}

/// A chat row's parameters, for its insert and its update alike: the key (?1–?2), then
/// messages_count, last_position, deleted, created_at and updated_at (?3–?7).
type ChatValues = (i64, i64, i64, i64, bool, i64, i64);

fn chat_values(((app, number), row): &(ChatKey, ChatRow)) -> ChatValues {
    let (created, updated) = (row.created_at.as_micros(), row.updated_at.as_micros());
    (*app, *number, row.messages_count, row.last_position, row.deleted, created, updated)
}

/// For a statement whose change count tells nothing the batch needs.
fn unchanged<T>(_: &T, _: usize) {}

#[async_trait]
impl BatchTx for SqliteBatch<'_> {
    async fn lock_chats(&mut self, keys: &[ChatKey]) -> Result<Vec<(ChatKey, ChatRow)>> {
        let sql = "SELECT last_position, messages_count, deleted, created_at, updated_at FROM chats \
                   WHERE application_id = ?1 AND number = ?2";
        rows_by_key(self.conn, keys, "reading chats", sql, |row| {
            Ok(ChatRow {
                last_position: row.get(0)?,
                messages_count: row.get(1)?,
                deleted: row.get(2)?,
                created_at: Timestamp::from_micros(row.get(3)?),
                updated_at: Timestamp::from_micros(row.get(4)?),
            })
        })
    }

    async fn lock_applications(&mut self, apps: &[i64]) -> Result<BTreeSet<i64>> {
        let sql = "SELECT 1 FROM applications WHERE id = ?1";
        let keys: Vec<[i64; 1]> = apps.iter().map(|&app| [app]).collect();
        let found = rows_by_key(self.conn, &keys, "reading applications", sql, |_| Ok(()))?;
        Ok(found.into_iter().map(|([app], ())| app).collect())
    }

    async fn insert_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<BTreeSet<ChatKey>> {
        let mut inserted = BTreeSet::new();
        let sql = "INSERT INTO chats (application_id, number, messages_count, last_position, deleted, created_at, \
                   updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING";
        execute_each(self.conn, "inserting chats", sql, rows, chat_values, |(key, _), changed| {
            if changed == 1 {
                inserted.insert(*key);
            }
        })?;
        Ok(inserted)
    }

    async fn messages(&mut self, keys: &[MessageKey]) -> Result<Vec<(MessageKey, MessageRow)>> {
        let sql = "SELECT CASE WHEN deleted THEN NULL ELSE body END, version, position, created_at, updated_at \
                   FROM messages WHERE application_id = ?1 AND chat_number = ?2 AND number = ?3";
        rows_by_key(self.conn, keys, "reading messages", sql, |row| {
            Ok(MessageRow {
                body: row.get(0)?,
                version: row.get(1)?,
                position: row.get(2)?,
                created_at: Timestamp::from_micros(row.get(3)?),
                updated_at: Timestamp::from_micros(row.get(4)?),
            })
        })
    }

    async fn insert_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        let sql = "INSERT INTO messages (application_id, chat_number, number, body, version, position, deleted, \
                   created_at, updated_at, rev) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
        let rev = self.rev;
        execute_each(self.conn, "inserting messages", sql, rows, |message| message_values(message, rev), unchanged)
    }

    async fn update_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        let sql = "UPDATE messages SET body = ?4, version = ?5, position = ?6, deleted = ?7, created_at = ?8, \
                   updated_at = ?9, rev = ?10 WHERE application_id = ?1 AND chat_number = ?2 AND number = ?3";
        let rev = self.rev;
        execute_each(self.conn, "updating messages", sql, rows, |message| message_values(message, rev), unchanged)
    }

    async fn erase_messages(&mut self, chats: &[ChatKey]) -> Result<()> {
        let sql = "DELETE FROM messages WHERE application_id = ?1 AND chat_number = ?2";
        execute_each(self.conn, "erasing messages", sql, chats, |key| *key, unchanged)?;
        let sql = "INSERT INTO erasures (rev, application_id, chat_number) VALUES (?1, ?2, ?3)";
        let rev = self.rev;
        execute_each(self.conn, "recording an erasure", sql, chats, |(app, chat)| (rev, *app, *chat), unchanged)
    }

    async fn update_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<()> {
        let sql = "UPDATE chats SET messages_count = ?3, last_position = ?4, deleted = ?5, created_at = ?6, \
                   updated_at = ?7 WHERE application_id = ?1 AND number = ?2";
        execute_each(self.conn, "updating chats", sql, rows, chat_values, unchanged)
    }

    async fn add_chats_counts(&mut self, deltas: &[(i64, i64)]) -> Result<()> {
        let sql = "UPDATE applications SET chats_count = chats_count + ?2 WHERE id = ?1";
        execute_each(self.conn, "updating counts", sql, deltas, |delta| *delta, unchanged)
    }

    async fn insert_idempotency_records(&mut self, records: &[IdempotencyRecord]) -> Result<()> {
        insert_idempotency_records(self.conn, records)
    }

    async fn erase_answers(&mut self, paths: &[String]) -> Result<()> {
        let sql = "DELETE FROM idempotency_keys WHERE location = ?1 OR substr(location, 1, length(?1) + 1) = ?1 || '/'";
        execute_each(self.conn, "erasing idempotency records", sql, paths, |path| [path], unchanged)
    }

    async fn commit(self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(sqlite_error("committing a batch"))
    }
}

/// Records answered idempotent creates; a record past its retention is replaced.
pub(crate) fn insert_idempotency_records(conn: &Connection, records: &[IdempotencyRecord]) -> Result<()> {
    let sql = "INSERT INTO idempotency_keys (scope, key, fingerprint, status, location, body, created_at) \
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (scope, key) DO UPDATE SET \
               fingerprint = excluded.fingerprint, status = excluded.status, location = excluded.location, \
               body = excluded.body, created_at = excluded.created_at \
               WHERE idempotency_keys.created_at <= excluded.created_at - ?8";
    let retention = IdempotencyRecord::RETENTION_MICROS;
    execute_each(
        conn,
        "recording idempotency keys",
        sql,
        records,
        |r| (&r.scope, &r.key, &r.fingerprint, r.status, &r.location, &r.body, r.created_at.as_micros(), retention),
        unchanged,
    )
}
