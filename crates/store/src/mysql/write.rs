//! The writes on MySQL that are not batches: the periodic recount.

use chatsys_core::ports::{BatchOutcome, Reconciled};
use chatsys_core::{AppId, AppToken, IdempotencyRecord, Queued, Result, Timestamp};
use sqlx::mysql::{MySql, MySqlPool};
use sqlx::{Acquire as _, query, query_as, query_scalar};

use super::batch::MySqlBatch;
use super::to_datetime;
use crate::batch::ChatKey;
use crate::error::store_error;

pub(crate) async fn write_batch(pool: &MySqlPool, batch: &[Queued]) -> Result<BatchOutcome> {
    crate::batch::write(MySqlBatch::begin(pool).await?, batch, 0).await
}

/// Recounts under a MySQL named lock, so one worker at a time does it. Candidates are found
/// without locks; each is then recounted with its parent row locked, which serializes with
/// the batches (they move a count in the same transaction as its rows).
pub(crate) async fn reconcile(pool: &MySqlPool) -> Result<Reconciled> {
    let err = || store_error("reconciling counts");
    let mut session = pool.acquire().await.map_err(err())?;
    let locked: Option<i64> =
        query_scalar("SELECT GET_LOCK('chatsys_reconcile', 0)").fetch_one(&mut *session).await.map_err(err())?;
    if locked != Some(1) {
        tracing::info!("another process is reconciling the counts");
        return Ok(Reconciled::default());
    }
    let result = recount(&mut session).await;
    let _ = query("SELECT RELEASE_LOCK('chatsys_reconcile')").execute(&mut *session).await;
    result
}

async fn recount(session: &mut sqlx::pool::PoolConnection<MySql>) -> Result<Reconciled> {
    let err = || store_error("reconciling counts");
    let mut out = Reconciled::default();
    let apps: Vec<(i64,)> = query_as(
        "SELECT a.id FROM applications a \
         WHERE a.chats_count <> (SELECT COUNT(*) FROM chats c WHERE c.application_id = a.id AND NOT c.deleted)",
    )
    .fetch_all(&mut **session)
    .await
    .map_err(err())?;
    for (app,) in apps {
        let mut tx = session.begin().await.map_err(err())?;
        query("SELECT id FROM applications WHERE id = ? FOR UPDATE").bind(app).execute(&mut *tx).await.map_err(err())?;
        let fixed = query(
            "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats WHERE application_id = ? AND NOT deleted) \
             WHERE id = ? AND chats_count <> (SELECT COUNT(*) FROM chats WHERE application_id = ? AND NOT deleted)",
        )
        .bind(app)
        .bind(app)
        .bind(app)
        .execute(&mut *tx)
        .await
        .map_err(err())?
        .rows_affected();
        tx.commit().await.map_err(err())?;
        out.applications_fixed += fixed;
    }
    let chats: Vec<ChatKey> = query_as(
        "SELECT c.application_id, c.number FROM chats c WHERE c.messages_count <> \
         (SELECT COUNT(*) FROM messages m \
          WHERE m.application_id = c.application_id AND m.chat_number = c.number AND NOT m.deleted)",
    )
    .fetch_all(&mut **session)
    .await
    .map_err(err())?;
    for (app, chat) in chats {
        let mut tx = session.begin().await.map_err(err())?;
        query("SELECT number FROM chats WHERE application_id = ? AND number = ? FOR UPDATE")
            .bind(app)
            .bind(chat)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
        let count: i64 =
            query_scalar("SELECT COUNT(*) FROM messages WHERE application_id = ? AND chat_number = ? AND NOT deleted")
                .bind(app)
                .bind(chat)
                .fetch_one(&mut *tx)
                .await
                .map_err(err())?;
        let fixed = query(
            "UPDATE chats SET messages_count = ? WHERE application_id = ? AND number = ? AND messages_count <> ?",
        )
        .bind(count)
        .bind(app)
        .bind(chat)
        .bind(count)
        .execute(&mut *tx)
        .await
        .map_err(err())?
        .rows_affected();
        tx.commit().await.map_err(err())?;
        out.chats_fixed += fixed;
    }
    let oldest =
        to_datetime(Timestamp::from_micros(Timestamp::now().as_micros() - IdempotencyRecord::RETENTION_MICROS));
    out.idempotency_records_expired = query("DELETE FROM idempotency_keys WHERE created_at <= ?")
        .bind(oldest)
        .execute(&mut **session)
        .await
        .map_err(err())?
        .rows_affected();
    Ok(out)
}

/// Deletes everything of the application in one transaction: its row first (locked, so a
/// batch that would insert a chat of it waits and then finds it gone), then its chats and
/// messages, and the idempotency records of its creates.
pub(crate) async fn erase_application(pool: &MySqlPool, app: AppId, token: &AppToken) -> Result<bool> {
    let err = || store_error("erasing an application");
    let mut tx = pool.begin().await.map_err(err())?;
    let found: Option<i64> = query_scalar("SELECT id FROM applications WHERE id = ? FOR UPDATE")
        .bind(app.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err())?;
    for table in ["messages", "chats"] {
        query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE application_id = ?")))
            .bind(app.0)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
    }
    let path = format!("/applications/{token}");
    query("DELETE FROM idempotency_keys WHERE LEFT(scope, CHAR_LENGTH(?) + 1) = CONCAT(?, '/') OR location = ?")
        .bind(&path)
        .bind(&path)
        .bind(&path)
        .execute(&mut *tx)
        .await
        .map_err(err())?;
    query("DELETE FROM applications WHERE id = ?").bind(app.0).execute(&mut *tx).await.map_err(err())?;
    tx.commit().await.map_err(err())?;
    Ok(found.is_some())
}
