//! The write side: one transaction per batch, idempotent on natural keys, counts moved by the
//! rows actually inserted (`INSERT … ON CONFLICT DO NOTHING RETURNING` names them).

use std::collections::{BTreeMap, BTreeSet};

use chatsys_core::ports::{BatchOutcome, Reconciled};
use chatsys_core::{IdempotencyRecord, Queued, Result, Timestamp};
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::{QueryBuilder, Transaction, query, query_scalar};

use crate::error::store_error;
use crate::plan::{ChatKey, MessageKey, Plan, changed, count_by};

/// Rows per multi-row statement: far below SQLite's 32,766 bound variables.
const ROWS_PER_STATEMENT: usize = 500;

pub(crate) async fn write_batch(writer: &SqlitePool, batch: &[Queued]) -> Result<BatchOutcome> {
    let err = || store_error("writing a batch");
    let plan = Plan::of(batch);
    let mut tx = writer.begin().await.map_err(err())?;
    let rev: i64 = query_scalar("UPDATE store_meta SET value = value + 1 WHERE name = 'rev' RETURNING value")
        .fetch_one(&mut *tx)
        .await
        .map_err(err())?;

    // Chats first: a message may reach the store before its chat's create.
    let rows: Vec<(ChatKey, i64)> = plan.chats.iter().map(|(k, (at, _))| (*k, at.as_micros())).collect();
    let mut inserted_chats: BTreeSet<ChatKey> = BTreeSet::new();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO chats (application_id, number, messages_count, created_at, updated_at) ",
        );
        qb.push_values(chunk, |mut row, ((app, number), at)| {
            row.push_bind(*app).push_bind(*number).push("0").push_bind(*at).push_bind(*at);
        });
        qb.push(" ON CONFLICT DO NOTHING RETURNING application_id, number");
        let inserted: Vec<ChatKey> = qb.build_query_as().fetch_all(&mut *tx).await.map_err(err())?;
        inserted_chats.extend(inserted);
    }
    // A chat row written earlier on behalf of a message carries that message's time; its
    // create sets the real one. On a redelivery this matches nothing.
    for (key, (at, explicit)) in &plan.chats {
        if *explicit && !inserted_chats.contains(key) {
            query(
                "UPDATE chats SET created_at = ?1, updated_at = ?1 \
                 WHERE application_id = ?2 AND number = ?3 AND created_at <> ?1",
            )
            .bind(at.as_micros())
            .bind(key.0)
            .bind(key.1)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
        }
    }

    // Message creates: insert if absent.
    let mut inserted_messages: BTreeSet<MessageKey> = BTreeSet::new();
    for chunk in plan.creates.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (application_id, chat_number, number, body, created_at, updated_at, rev) ",
        );
        qb.push_values(chunk, |mut row, ((app, chat, number), body, at)| {
            let at = at.as_micros();
            row.push_bind(*app)
                .push_bind(*chat)
                .push_bind(*number)
                .push_bind(*body)
                .push_bind(at)
                .push_bind(at)
                .push_bind(rev);
        });
        qb.push(" ON CONFLICT DO NOTHING RETURNING application_id, chat_number, number");
        let inserted: Vec<MessageKey> = qb.build_query_as().fetch_all(&mut *tx).await.map_err(err())?;
        inserted_messages.extend(inserted);
    }
    let mut changes: BTreeMap<MessageKey, (&str, Timestamp)> = BTreeMap::new();
    for (key, body, at) in &plan.creates {
        if inserted_messages.contains(key) {
            changes.insert(*key, (body, *at));
        } else {
            // Either a redelivery (matches nothing) or an edit got here first and wrote the
            // row with its own time: the create knows when the message was created.
            query(
                "UPDATE messages SET created_at = ?1 \
                 WHERE application_id = ?2 AND chat_number = ?3 AND number = ?4 AND created_at <> ?1",
            )
            .bind(at.as_micros())
            .bind(key.0)
            .bind(key.1)
            .bind(key.2)
            .execute(&mut *tx)
            .await
            .map_err(err())?;
        }
    }

    // Edits: newest wins, and any edit wins over the create.
    let mut edits_applied = 0;
    for (key, body, edited) in &plan.edits {
        let at = edited.as_micros();
        let updated = query(
            "UPDATE messages SET body = ?1, updated_at = ?2, edited_at = ?2, rev = ?3 \
             WHERE application_id = ?4 AND chat_number = ?5 AND number = ?6 \
               AND (edited_at IS NULL OR edited_at < ?2)",
        )
        .bind(*body)
        .bind(at)
        .bind(rev)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .execute(&mut *tx)
        .await
        .map_err(err())?
        .rows_affected();
        // The edit overtook its create: write the row now; the create will only set
        // created_at. If the row exists, a newer edit is already applied.
        let applied = updated == 1
            || query(
                "INSERT INTO messages (application_id, chat_number, number, body, created_at, updated_at, edited_at, rev) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, ?6) ON CONFLICT DO NOTHING",
            )
            .bind(key.0)
            .bind(key.1)
            .bind(key.2)
            .bind(*body)
            .bind(at)
            .bind(rev)
            .execute(&mut *tx)
            .await
            .map_err(err())?
            .rows_affected()
                == 1
                && inserted_messages.insert(*key);
        if applied {
            edits_applied += 1;
            changes.insert(*key, (body, *edited));
        }
    }

    let messages_added = count_by(inserted_messages.iter().copied(), |(app, chat, _)| (app, chat));
    add_counts(&mut tx, "chats", "messages_count", "application_id = d.a AND number = d.c", &messages_added).await?;
    let chats_added = count_by(inserted_chats.iter().copied(), |(app, _)| (app, 0));
    add_counts(&mut tx, "applications", "chats_count", "id = d.a", &chats_added).await?;
    insert_idempotency_records(&mut tx, &plan.records).await?;
    tx.commit().await.map_err(err())?;

    Ok(BatchOutcome {
        rev: rev as u64,
        chats_created: inserted_chats.len() as u64,
        messages_created: inserted_messages.len() as u64,
        edits_applied,
        changed: changed(changes, &inserted_messages),
    })
}

/// Adds `n` to `column` of the rows matched by `(a, c)` (for applications, `c` is unused).
async fn add_counts(
    tx: &mut Transaction<'static, Sqlite>,
    table: &'static str,
    column: &'static str,
    matching: &'static str,
    deltas: &BTreeMap<ChatKey, i64>,
) -> Result<()> {
    let deltas: Vec<_> = deltas.iter().collect();
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new("WITH d(a, c, n) AS (");
        qb.push_values(chunk, |mut row, ((a, c), n)| {
            row.push_bind(*a).push_bind(*c).push_bind(**n);
        });
        qb.push(format!(") UPDATE {table} SET {column} = {column} + d.n FROM d WHERE {matching}"));
        qb.build().execute(&mut **tx).await.map_err(store_error("updating counts"))?;
    }
    Ok(())
}

pub(crate) async fn insert_idempotency_records(
    tx: &mut Transaction<'static, Sqlite>,
    records: &[IdempotencyRecord],
) -> Result<()> {
    for chunk in records.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, status, location, body, created_at) ",
        );
        qb.push_values(chunk, |mut row, r| {
            row.push_bind(r.scope.as_str())
                .push_bind(r.key.as_str())
                .push_bind(r.fingerprint.as_str())
                .push_bind(i64::from(r.status))
                .push_bind(r.location.as_str())
                .push_bind(r.body.as_str())
                .push_bind(r.created_at.as_micros());
        });
        qb.push(" ON CONFLICT DO NOTHING");
        qb.build().execute(&mut **tx).await.map_err(store_error("recording idempotency keys"))?;
    }
    Ok(())
}

pub(crate) async fn reconcile(writer: &SqlitePool) -> Result<Reconciled> {
    let err = || store_error("reconciling counts");
    let mut tx = writer.begin().await.map_err(err())?;
    let applications_fixed = query(
        "UPDATE applications SET chats_count = t.n \
         FROM (SELECT a.id AS id, (SELECT count(*) FROM chats c WHERE c.application_id = a.id) AS n \
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
                       WHERE m.application_id = c.application_id AND m.chat_number = c.number) AS n \
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
