//! The writes that are not batches: applications (written directly: rare, and their token
//! must resolve at once) and the periodic recount.

use chatsys_core::ports::{BatchOutcome, Reconciled};
use chatsys_core::{AppId, AppToken, IdempotencyRecord, NewApplication, Queued, Result, Timestamp};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Connection as _, query};

use super::batch::{SqliteBatch, insert_idempotency_records};
use crate::error::store_error;

pub(crate) async fn write_batch(conn: &mut SqliteConnection, batch: &[Queued]) -> Result<BatchOutcome> {
    let (tx, rev) = SqliteBatch::begin(conn).await?;
    crate::batch::write(tx, batch, rev).await
}

pub(crate) async fn create_application(
    conn: &mut SqliteConnection,
    new: &NewApplication,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<SqliteRow> {
    let err = || store_error("creating an application");
    let mut tx = conn.begin().await.map_err(err())?;
    let row = query(
        "INSERT INTO applications (token, name, chats_count, created_at, updated_at) \
         VALUES (?1, ?2, 0, ?3, ?3) RETURNING id, token, name, chats_count, created_at, updated_at",
    )
    .bind(new.token.as_str())
    .bind(new.name.as_str())
    .bind(new.at.as_micros())
    .fetch_one(&mut *tx)
    .await
    .map_err(err())?;
    if let Some(record) = idempotency {
        insert_idempotency_records(&mut tx, std::slice::from_ref(record)).await?;
    }
    tx.commit().await.map_err(err())?;
    Ok(row)
}

pub(crate) async fn reconcile(conn: &mut SqliteConnection) -> Result<Reconciled> {
    let err = || store_error("reconciling counts");
    let mut tx = conn.begin().await.map_err(err())?;
    let applications_fixed = query(
        "UPDATE applications SET chats_count = t.n \
         FROM (SELECT a.id AS id, (SELECT count(*) FROM chats c WHERE c.application_id = a.id AND NOT c.deleted) AS n \
               FROM applications a) AS t \
         WHERE applications.id = t.id AND applications.chats_count <> t.n",
    )
    .execute(&mut *tx)
    .await
    .map_err(err())?
    .rows_affected();
    let chats_fixed = query(
        "UPDATE chats SET messages_count = t.n \
         FROM (SELECT c.application_id AS a, c.number AS c, \
                      (SELECT count(*) FROM messages m \
                       WHERE m.application_id = c.application_id AND m.chat_number = c.number AND NOT m.deleted) AS n \
               FROM chats c) AS t \
         WHERE chats.application_id = t.a AND chats.number = t.c AND chats.messages_count <> t.n",
    )
    .execute(&mut *tx)
    .await
    .map_err(err())?
    .rows_affected();
    let oldest = Timestamp::now().as_micros() - IdempotencyRecord::RETENTION_MICROS;
    let idempotency_records_expired = query("DELETE FROM idempotency_keys WHERE created_at <= ?1")
        .bind(oldest)
        .execute(&mut *tx)
        .await
        .map_err(err())?
        .rows_affected();
    tx.commit().await.map_err(err())?;
    Ok(Reconciled { applications_fixed, chats_fixed, idempotency_records_expired })
}

/// Deletes everything of the application in one transaction, and records the erasure for
/// the search index (which catches up from it after a crash).
pub(crate) async fn erase_application(conn: &mut SqliteConnection, app: AppId, token: &AppToken) -> Result<bool> {
    let err = || store_error("erasing an application");
    let mut tx = conn.begin().await.map_err(err())?;
    for table in ["messages", "chats"] {
        query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE application_id = ?1")))
            .bind(app.0)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
    }
    // the records of its creates: scoped under its path, and its own (named by its location)
    let path = format!("/applications/{token}");
    query("DELETE FROM idempotency_keys WHERE substr(scope, 1, length(?1) + 1) = ?1 || '/' OR location = ?1")
        .bind(&path)
        .execute(&mut *tx)
        .await
        .map_err(err())?;
    let erased = query("DELETE FROM applications WHERE id = ?1").bind(app.0).execute(&mut *tx).await.map_err(err())?;
    let rev: i64 = sqlx::query_scalar("UPDATE store_meta SET value = value + 1 WHERE name = 'rev' RETURNING value")
        .fetch_one(&mut *tx)
        .await
        .map_err(err())?;
    query("INSERT INTO erasures (rev, application_id, chat_number) VALUES (?1, ?2, NULL)")
        .bind(rev)
        .bind(app.0)
        .execute(&mut *tx)
        .await
        .map_err(err())?;
    tx.commit().await.map_err(err())?;
    Ok(erased.rows_affected() == 1)
}
