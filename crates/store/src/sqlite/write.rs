//! The writes, each run on the writer's connection (`writer.rs`): batches, and the writes
//! that are not batches: applications (written directly: rare, and their token must
//! resolve at once), the periodic recount, erasure and the readiness probe.

use chatsys_core::ports::{BatchOutcome, Reconciled};
use chatsys_core::{AppId, AppName, AppToken, IdempotencyRecord, NewApplication, Queued, Result, Timestamp};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::batch::{SqliteBatch, insert_idempotency_records};
use super::{ApplicationColumns, application_columns};
use crate::error::sqlite_error;

pub(crate) fn write_batch(conn: &mut Connection, batch: &[Queued]) -> Result<BatchOutcome> {
    let (tx, rev) = SqliteBatch::begin(conn)?;
    // nothing in the SQLite primitives waits: this runs the batch algorithm to its end
    futures::executor::block_on(crate::batch::write(tx, batch, rev))
}

pub(crate) fn create_application(
    conn: &mut Connection,
    new: &NewApplication,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<ApplicationColumns> {
    let err = || sqlite_error("creating an application");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err())?;
    let row = tx
        .prepare_cached(
            "INSERT INTO applications (token, name, chats_count, created_at, updated_at) \
             VALUES (?1, ?2, 0, ?3, ?3) RETURNING id, token, name, chats_count, created_at, updated_at",
        )
        .and_then(|mut s| {
            s.query_row(params![new.token.as_str(), new.name.as_str(), new.at.as_micros()], application_columns)
        })
        .map_err(err())?;
    if let Some(record) = idempotency {
        insert_idempotency_records(&tx, std::slice::from_ref(record))?;
    }
    tx.commit().map_err(err())?;
    Ok(row)
}

pub(crate) fn rename_application(
    conn: &mut Connection,
    token: &AppToken,
    name: &AppName,
    at: Timestamp,
) -> Result<Option<ApplicationColumns>> {
    conn.prepare_cached(
        "UPDATE applications SET name = ?1, updated_at = max(updated_at, ?2) WHERE token = ?3 \
         RETURNING id, token, name, chats_count, created_at, updated_at",
    )
    .and_then(|mut s| {
        s.query_row(params![name.as_str(), at.as_micros(), token.as_str()], application_columns).optional()
    })
    .map_err(sqlite_error("renaming an application"))
}

pub(crate) fn reconcile(conn: &mut Connection) -> Result<Reconciled> {
    let err = || sqlite_error("reconciling counts");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err())?;
    let applications_fixed = tx
        .execute(
            "UPDATE applications SET chats_count = t.n \
             FROM (SELECT a.id AS id, (SELECT count(*) FROM chats c WHERE c.application_id = a.id AND NOT c.deleted) AS n \
                   FROM applications a) AS t \
             WHERE applications.id = t.id AND applications.chats_count <> t.n",
            [],
        )
        .map_err(err())? as u64;
    let chats_fixed = tx
        .execute(
            "UPDATE chats SET messages_count = t.n \
             FROM (SELECT c.application_id AS a, c.number AS c, \
                          (SELECT count(*) FROM messages m \
                           WHERE m.application_id = c.application_id AND m.chat_number = c.number AND NOT m.deleted) AS n \
                   FROM chats c) AS t \
             WHERE chats.application_id = t.a AND chats.number = t.c AND chats.messages_count <> t.n",
            [],
        )
        .map_err(err())? as u64;
    let oldest = Timestamp::now().as_micros() - IdempotencyRecord::RETENTION_MICROS;
    let idempotency_records_expired =
        tx.execute("DELETE FROM idempotency_keys WHERE created_at <= ?1", [oldest]).map_err(err())? as u64;
    tx.commit().map_err(err())?;
    Ok(Reconciled { applications_fixed, chats_fixed, idempotency_records_expired })
}

/// Deletes everything of the application in one transaction, and records the erasure for
/// the search index (which catches up from it after a crash).
pub(crate) fn erase_application(conn: &mut Connection, app: AppId, token: &AppToken) -> Result<bool> {
    let err = || sqlite_error("erasing an application");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err())?;
    for table in ["messages", "chats"] {
        tx.execute(&format!("DELETE FROM {table} WHERE application_id = ?1"), [app.0]).map_err(err())?;
    }
    // the records of its creates: scoped under its path, and its own (named by its location)
    let path = format!("/applications/{token}");
    tx.execute(
        "DELETE FROM idempotency_keys WHERE substr(scope, 1, length(?1) + 1) = ?1 || '/' OR location = ?1",
        [&path],
    )
    .map_err(err())?;
    let erased = tx.execute("DELETE FROM applications WHERE id = ?1", [app.0]).map_err(err())?;
    let rev: i64 = tx
        .query_row("UPDATE store_meta SET value = value + 1 WHERE name = 'rev' RETURNING value", [], |row| row.get(0))
        .map_err(err())?;
    tx.execute("INSERT INTO erasures (rev, application_id, chat_number) VALUES (?1, ?2, NULL)", [rev, app.0])
        .map_err(err())?;
    tx.commit().map_err(err())?;
    Ok(erased == 1)
}

/// One small write, so that readiness sees whether writes succeed.
pub(crate) fn probe(conn: &mut Connection) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO store_meta (name, value) VALUES ('probe', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute([Timestamp::now().as_micros()]))
    .map(|_| ())
    .map_err(sqlite_error("probing writes"))
}
