//! The write side on MySQL: one transaction per batch. MySQL has no `RETURNING` for inserts
//! (MariaDB does; MySQL 8 does not), so a batch learns which of its rows were new from the
//! affected-row count: `ON DUPLICATE KEY UPDATE seen = seen + 1, seen_by = <batch>` counts 1
//! per insert and 2 per row already there, and only when some were there does it ask which
//! (`seen_by` names them).

use std::collections::{BTreeMap, BTreeSet};

use chatsys_core::ports::{BatchOutcome, Reconciled};
use chatsys_core::{Error, IdempotencyRecord, Queued, Result, Timestamp};
use rand::Rng as _;
use sqlx::mysql::{MySql, MySqlPool};
use sqlx::{Acquire as _, QueryBuilder, Transaction, query, query_as, query_scalar};

use super::to_datetime;
use crate::error::store_error;
use crate::plan::{ChatKey, MessageKey, Plan, changed, count_by};

/// Multi-row statements come in these sizes only (a batch's rows are cut into the largest
/// pieces that fit). sqlx caches prepared statements per SQL text; with any row count
/// allowed, the cache churns, and each eviction sends a COM_STMT_CLOSE, which gets no reply:
/// the next command then waits for Nagle's algorithm and the server's delayed ACK, 40 ms,
/// because sqlx sets no TCP_NODELAY on MySQL sockets. A few sizes stay cached.
const STATEMENT_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// `items` cut into pieces of the sizes above, largest first.
pub(crate) fn pieces<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in STATEMENT_SIZES {
        while items.len() >= size {
            let (piece, rest) = items.split_at(size);
            out.push(piece);
            items = rest;
        }
    }
    out
}

type Tx = Transaction<'static, MySql>;

pub(crate) async fn write_batch(pool: &MySqlPool, batch: &[Queued]) -> Result<BatchOutcome> {
    let err = || store_error("writing a batch");
    let plan = Plan::of(batch);
    let batch_id: i64 = rand::rng().random_range(1..i64::MAX);
    let mut tx = pool.begin().await.map_err(err())?;

    // Chats: insert the ones not there yet (usually none: messages go to existing chats).
    let keys: Vec<ChatKey> = plan.chats.keys().copied().collect();
    let existing = existing_chats(&mut tx, &keys).await?;
    let missing: Vec<(ChatKey, Timestamp)> =
        plan.chats.iter().filter(|(k, _)| !existing.contains(k)).map(|(k, (at, _))| (*k, *at)).collect();
    let mut inserted_chats: BTreeSet<ChatKey> = BTreeSet::new();
    for chunk in pieces(&missing) {
        let mut qb = QueryBuilder::<MySql>::new(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) ",
        );
        qb.push_values(chunk, |mut row, ((app, number), at)| {
            row.push_bind(*app).push_bind(*number).push("0").push_bind(to_datetime(*at)).push_bind(to_datetime(*at));
        });
        qb.push(" ON DUPLICATE KEY UPDATE seen = seen + 1, seen_by = ").push_bind(batch_id);
        let affected = qb.build().execute(&mut *tx).await.map_err(err())?.rows_affected();
        let keys: Vec<ChatKey> = chunk.iter().map(|(k, _)| *k).collect();
        inserted_chats.extend(new_rows(&mut tx, "chats", "(application_id, number)", &keys, affected, batch_id).await?);
    }
    // A chat row written earlier on behalf of a message carries that message's time; its
    // create sets the real one. On a redelivery this matches nothing.
    for (key, (at, explicit)) in &plan.chats {
        if *explicit && !inserted_chats.contains(key) {
            query("UPDATE chats SET created_at = ?, updated_at = ? WHERE application_id = ? AND number = ? AND created_at <> ?")
                .bind(to_datetime(*at))
                .bind(to_datetime(*at))
                .bind(key.0)
                .bind(key.1)
                .bind(to_datetime(*at))
                .execute(&mut *tx)
                .await
                .map_err(err())?;
        }
    }

    // Message creates.
    let mut inserted_messages: BTreeSet<MessageKey> = BTreeSet::new();
    for chunk in pieces(&plan.creates) {
        let mut qb = QueryBuilder::<MySql>::new(
            "INSERT INTO messages (application_id, chat_number, number, body, created_at, updated_at) ",
        );
        qb.push_values(chunk, |mut row, ((app, chat, number), body, at)| {
            let at = to_datetime(*at);
            row.push_bind(*app).push_bind(*chat).push_bind(*number).push_bind(*body).push_bind(at).push_bind(at);
        });
        qb.push(" ON DUPLICATE KEY UPDATE seen = seen + 1, seen_by = ").push_bind(batch_id);
        let affected = qb.build().execute(&mut *tx).await.map_err(err())?.rows_affected();
        let keys: Vec<MessageKey> = chunk.iter().map(|(k, _, _)| *k).collect();
        inserted_messages.extend(
            new_rows(&mut tx, "messages", "(application_id, chat_number, number)", &keys, affected, batch_id).await?,
        );
    }
    let mut changes: BTreeMap<MessageKey, (&str, Timestamp)> = BTreeMap::new();
    for (key, body, at) in &plan.creates {
        if inserted_messages.contains(key) {
            changes.insert(*key, (body, *at));
        } else {
            // a redelivery (matches nothing), or an edit that got here first
            query(
                "UPDATE messages SET created_at = ? \
                 WHERE application_id = ? AND chat_number = ? AND number = ? AND created_at <> ?",
            )
            .bind(to_datetime(*at))
            .bind(key.0)
            .bind(key.1)
            .bind(key.2)
            .bind(to_datetime(*at))
            .execute(&mut *tx)
            .await
            .map_err(err())?;
        }
    }

    // Edits: newest wins, and any edit wins over the create.
    let mut edits_applied = 0;
    for (key, body, edited) in &plan.edits {
        let at = to_datetime(*edited);
        let updated = query(
            "UPDATE messages SET body = ?, updated_at = ?, edited_at = ? \
             WHERE application_id = ? AND chat_number = ? AND number = ? AND (edited_at IS NULL OR edited_at < ?)",
        )
        .bind(*body)
        .bind(at)
        .bind(at)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(err())?
        .rows_affected();
        let mut applied = updated == 1;
        if !applied {
            // The edit overtook its create: write the row now (1 affected row); if it is
            // there already, a newer edit is applied (2: only `seen` moved).
            let affected = query(
                "INSERT INTO messages (application_id, chat_number, number, body, created_at, updated_at, edited_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE seen = seen + 1",
            )
            .bind(key.0)
            .bind(key.1)
            .bind(key.2)
            .bind(*body)
            .bind(at)
            .bind(at)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(err())?
            .rows_affected();
            applied = affected == 1;
            if applied {
                inserted_messages.insert(*key);
            }
        }
        if applied {
            edits_applied += 1;
            changes.insert(*key, (body, *edited));
        }
    }

    let messages_added = count_by(inserted_messages.iter().copied(), |(app, chat, _)| (app, chat));
    add_counts(&mut tx, "chats", "messages_count", "t.application_id = d.a AND t.number = d.c", &messages_added)
        .await?;
    let chats_added = count_by(inserted_chats.iter().copied(), |(app, _)| (app, 0));
    add_counts(&mut tx, "applications", "chats_count", "t.id = d.a", &chats_added).await?;
    insert_idempotency_records(&mut tx, &plan.records).await?;
    tx.commit().await.map_err(err())?;

    Ok(BatchOutcome {
        rev: 0,
        chats_created: inserted_chats.len() as u64,
        messages_created: inserted_messages.len() as u64,
        edits_applied,
        changed: changed(changes, &inserted_messages),
    })
}

async fn existing_chats(tx: &mut Tx, keys: &[ChatKey]) -> Result<BTreeSet<ChatKey>> {
    let mut found = BTreeSet::new();
    for chunk in pieces(keys) {
        let mut qb =
            QueryBuilder::<MySql>::new("SELECT application_id, number FROM chats WHERE (application_id, number) IN (");
        let mut list = qb.separated(", ");
        for (app, number) in chunk {
            list.push("(")
                .push_bind_unseparated(*app)
                .push_unseparated(", ")
                .push_bind_unseparated(*number)
                .push_unseparated(")");
        }
        qb.push(")");
        let rows: Vec<ChatKey> =
            qb.build_query_as().fetch_all(&mut **tx).await.map_err(store_error("reading chats"))?;
        found.extend(rows);
    }
    Ok(found)
}

/// Keys of a multi-row upsert that were inserted: all of them when the affected-row count
/// says so (1 per insert, 2 per existing row), else all but those this batch marked.
async fn new_rows<K: Copy + Ord + Send + Unpin + KeyBinds + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>>(
    tx: &mut Tx,
    table: &'static str,
    columns: &'static str,
    keys: &[K],
    affected: u64,
    batch_id: i64,
) -> Result<Vec<K>> {
    let rows = keys.len() as u64;
    if affected == rows {
        return Ok(keys.to_vec());
    }
    if affected < rows || affected > 2 * rows {
        return Err(Error::internal(format!("unexpected affected-row count {affected} for {rows} rows in {table}")));
    }
    let mut qb =
        QueryBuilder::<MySql>::new(format!("SELECT {} FROM {table} WHERE seen_by = ", &columns[1..columns.len() - 1]));
    qb.push_bind(batch_id).push(format!(" AND {columns} IN ("));
    let mut list = qb.separated(", ");
    for key in keys {
        key.push_into(&mut list);
    }
    qb.push(")");
    let seen: BTreeSet<K> = qb
        .build_query_as::<K>()
        .fetch_all(&mut **tx)
        .await
        .map_err(store_error("reading redelivered rows"))?
        .into_iter()
        .collect();
    Ok(keys.iter().copied().filter(|k| !seen.contains(k)).collect())
}

/// A natural key written as a row value `(a, b, …)` into a query.
trait KeyBinds {
    fn push_into(&self, list: &mut sqlx::query_builder::Separated<'_, MySql, &'static str>);
}

impl KeyBinds for ChatKey {
    fn push_into(&self, list: &mut sqlx::query_builder::Separated<'_, MySql, &'static str>) {
        list.push("(")
            .push_bind_unseparated(self.0)
            .push_unseparated(", ")
            .push_bind_unseparated(self.1)
            .push_unseparated(")");
    }
}

impl KeyBinds for MessageKey {
    fn push_into(&self, list: &mut sqlx::query_builder::Separated<'_, MySql, &'static str>) {
        list.push("(")
            .push_bind_unseparated(self.0)
            .push_unseparated(", ")
            .push_bind_unseparated(self.1)
            .push_unseparated(", ")
            .push_bind_unseparated(self.2)
            .push_unseparated(")");
    }
}

/// Adds `n` to `column` of the rows matched by `(a, c)` (for applications, `c` is unused),
/// in key order so that concurrent batches lock rows in the same order.
async fn add_counts(
    tx: &mut Tx,
    table: &'static str,
    column: &'static str,
    matching: &'static str,
    deltas: &BTreeMap<ChatKey, i64>,
) -> Result<()> {
    let deltas: Vec<_> = deltas.iter().collect();
    for chunk in pieces(&deltas) {
        let mut qb = QueryBuilder::<MySql>::new(format!("UPDATE {table} t JOIN ("));
        for (i, ((a, c), n)) in chunk.iter().enumerate() {
            qb.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
            qb.push_bind(*a).push(" AS a, ").push_bind(*c).push(" AS c, ").push_bind(**n).push(" AS n");
        }
        qb.push(format!(") d ON {matching} SET t.{column} = t.{column} + d.n"));
        qb.build().execute(&mut **tx).await.map_err(store_error("updating counts"))?;
    }
    Ok(())
}

pub(crate) async fn insert_idempotency_records(tx: &mut Tx, records: &[IdempotencyRecord]) -> Result<()> {
    for chunk in pieces(records) {
        let mut qb = QueryBuilder::<MySql>::new(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, location, body, created_at) ",
        );
        qb.push_values(chunk, |mut row, r| {
            row.push_bind(r.scope.as_str())
                .push_bind(r.key.as_str())
                .push_bind(r.fingerprint.as_str())
                .push_bind(i32::from(r.status))
                .push_bind(r.location.as_str())
                .push_bind(r.body.as_str())
                .push_bind(to_datetime(r.created_at));
        });
        qb.push(" ON DUPLICATE KEY UPDATE idem_key = idem_key");
        qb.build().execute(&mut **tx).await.map_err(store_error("recording idempotency keys"))?;
    }
    Ok(())
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
         WHERE a.chats_count <> (SELECT COUNT(*) FROM chats c WHERE c.application_id = a.id)",
    )
    .fetch_all(&mut **session)
    .await
    .map_err(err())?;
    for (app,) in apps {
        let mut tx = session.begin().await.map_err(err())?;
        query("SELECT id FROM applications WHERE id = ? FOR UPDATE").bind(app).execute(&mut *tx).await.map_err(err())?;
        let fixed = query(
            "UPDATE applications SET chats_count = (SELECT COUNT(*) FROM chats WHERE application_id = ?) \
             WHERE id = ? AND chats_count <> (SELECT COUNT(*) FROM chats WHERE application_id = ?)",
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
         (SELECT COUNT(*) FROM messages m WHERE m.application_id = c.application_id AND m.chat_number = c.number)",
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
        let count: i64 = query_scalar("SELECT COUNT(*) FROM messages WHERE application_id = ? AND chat_number = ?")
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
