//! The batch primitives on MySQL (and MariaDB), under READ COMMITTED. Chat rows are locked
//! with `SELECT … FOR UPDATE` in key order; every writer of a chat's messages holds that
//! lock, so the message rows a batch reads stay as read until it commits. MySQL has no
//! `RETURNING` for inserts: a chat insert learns which rows were there already from the
//! affected-row count (`ON DUPLICATE KEY UPDATE seen = seen + 1, seen_by = <batch>` counts 1
//! per insert and 2 per existing row) and, only when some were, from `seen_by`.
//!
//! Over 300 lines on purpose: every batch primitive of one engine side by side, as in
//! `sqlite/batch.rs`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chatsys_core::{Error, IdempotencyRecord, Result};
use chrono::NaiveDateTime;
use rand::Rng as _;
use sqlx::mysql::{MySql, MySqlPool};
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Transaction, query};

use super::{from_datetime, to_datetime};
use crate::batch::{BatchTx, ChatKey, ChatRow, MessageKey, MessageRow, pieces};
use crate::error::store_error;

pub(crate) struct MySqlBatch {
    tx: Transaction<'static, MySql>,
    /// Marks the rows this batch found already there (see the module's text).
    id: i64,
}

impl MySqlBatch {
    pub(crate) async fn begin(pool: &MySqlPool) -> Result<Self> {
        let tx = pool.begin().await.map_err(store_error("writing a batch"))?;
        Ok(Self { tx, id: rand::rng().random_range(1..i64::MAX) })
    }
}

type ChatRecord = (i64, i64, i64, i64, bool, NaiveDateTime, NaiveDateTime);
type MessageRecord = (i64, i64, i64, Option<String>, i64, i64, NaiveDateTime, NaiveDateTime);

/// `(a, b) IN ((?, ?), …)` over the keys.
fn push_chat_keys(qb: &mut QueryBuilder<MySql>, keys: &[ChatKey]) {
    qb.push("(application_id, number) IN (");
    let mut list = qb.separated(", ");
    for key in keys {
        push_row(&mut list, &[key.0, key.1]);
    }
    qb.push(")");
}

fn push_row(list: &mut Separated<'_, MySql, &'static str>, values: &[i64]) {
    list.push("(");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            list.push_unseparated(", ");
        }
        list.push_bind_unseparated(*v);
    }
    list.push_unseparated(")");
}

fn chat_row((app, number, last_position, messages_count, deleted, created, updated): ChatRecord) -> (ChatKey, ChatRow) {
    let row = ChatRow {
        last_position,
        messages_count,
        deleted,
        created_at: from_datetime(created),
        updated_at: from_datetime(updated),
    };
    ((app, number), row)
}

#[async_trait]
impl BatchTx for MySqlBatch {
    async fn lock_chats(&mut self, keys: &[ChatKey]) -> Result<Vec<(ChatKey, ChatRow)>> {
        let mut out = Vec::with_capacity(keys.len());
        for piece in pieces(keys) {
            let mut qb = QueryBuilder::<MySql>::new(
                "SELECT application_id, number, last_position, messages_count, deleted, created_at, updated_at \
                 FROM chats WHERE ",
            );
            push_chat_keys(&mut qb, piece);
            qb.push(" ORDER BY application_id, number FOR UPDATE");
            let rows: Vec<ChatRecord> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("locking chats"))?;
            out.extend(rows.into_iter().map(chat_row));
        }
        Ok(out)
    }

    async fn lock_applications(&mut self, apps: &[i64]) -> Result<BTreeSet<i64>> {
        let mut out = BTreeSet::new();
        for piece in pieces(apps) {
            let mut qb = QueryBuilder::<MySql>::new("SELECT id FROM applications WHERE id IN (");
            let mut list = qb.separated(", ");
            for app in piece {
                list.push_bind(*app);
            }
            qb.push(") ORDER BY id FOR UPDATE");
            let ids: Vec<(i64,)> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("locking applications"))?;
            out.extend(ids.into_iter().map(|(id,)| id));
        }
        Ok(out)
    }

    async fn insert_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<BTreeSet<ChatKey>> {
        let mut inserted = BTreeSet::new();
        for piece in pieces(rows) {
            let mut qb = QueryBuilder::<MySql>::new(
                "INSERT INTO chats (application_id, number, messages_count, last_position, deleted, created_at, updated_at) ",
            );
            qb.push_values(piece, |mut b, ((app, number), row)| {
                b.push_bind(*app)
                    .push_bind(*number)
                    .push_bind(row.messages_count)
                    .push_bind(row.last_position)
                    .push_bind(row.deleted)
                    .push_bind(to_datetime(row.created_at))
                    .push_bind(to_datetime(row.updated_at));
            });
            qb.push(" ON DUPLICATE KEY UPDATE seen = seen + 1, seen_by = ").push_bind(self.id);
            let affected =
                qb.build().execute(&mut *self.tx).await.map_err(store_error("inserting chats"))?.rows_affected();
            let keys: Vec<ChatKey> = piece.iter().map(|(k, _)| *k).collect();
            let n = keys.len() as u64;
            if affected == n {
                inserted.extend(keys);
                continue;
            }
            if affected < n || affected > 2 * n {
                return Err(Error::internal(format!("unexpected affected-row count {affected} for {n} chat rows")));
            }
            let mut qb = QueryBuilder::<MySql>::new("SELECT application_id, number FROM chats WHERE seen_by = ");
            qb.push_bind(self.id).push(" AND ");
            push_chat_keys(&mut qb, &keys);
            let existing: BTreeSet<ChatKey> = qb
                .build_query_as()
                .fetch_all(&mut *self.tx)
                .await
                .map_err(store_error("reading chats found already there"))?
                .into_iter()
                .collect();
            inserted.extend(keys.into_iter().filter(|k| !existing.contains(k)));
        }
        Ok(inserted)
    }

    async fn messages(&mut self, keys: &[MessageKey]) -> Result<Vec<(MessageKey, MessageRow)>> {
        let mut out = Vec::new();
        for piece in pieces(keys) {
            let mut qb = QueryBuilder::<MySql>::new(
                "SELECT application_id, chat_number, number, IF(deleted, NULL, body), version, position, \
                 created_at, updated_at FROM messages WHERE (application_id, chat_number, number) IN (",
            );
            let mut list = qb.separated(", ");
            for key in piece {
                push_row(&mut list, &[key.0, key.1, key.2]);
            }
            qb.push(")");
            let rows: Vec<MessageRecord> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("reading messages"))?;
            out.extend(rows.into_iter().map(|(app, chat, number, body, version, position, created, updated)| {
                let row = MessageRow {
                    body,
                    version,
                    position,
                    created_at: from_datetime(created),
                    updated_at: from_datetime(updated),
                };
                ((app, chat, number), row)
            }));
        }
        Ok(out)
    }

    async fn insert_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        for piece in pieces(rows) {
            let mut qb = QueryBuilder::<MySql>::new(
                "INSERT INTO messages (application_id, chat_number, number, body, version, position, deleted, \
                 created_at, updated_at) ",
            );
            qb.push_values(piece, |mut b, ((app, chat, number), row)| {
                b.push_bind(*app)
                    .push_bind(*chat)
                    .push_bind(*number)
                    .push_bind(row.body.clone().unwrap_or_default())
                    .push_bind(row.version)
                    .push_bind(row.position)
                    .push_bind(row.body.is_none())
                    .push_bind(to_datetime(row.created_at))
                    .push_bind(to_datetime(row.updated_at));
            });
            qb.build().execute(&mut *self.tx).await.map_err(store_error("inserting messages"))?;
        }
        Ok(())
    }

    async fn update_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        for ((app, chat, number), row) in rows {
            query(
                "UPDATE messages SET body = ?, version = ?, position = ?, deleted = ?, created_at = ?, updated_at = ? \
                 WHERE application_id = ? AND chat_number = ? AND number = ?",
            )
            .bind(row.body.clone().unwrap_or_default())
            .bind(row.version)
            .bind(row.position)
            .bind(row.body.is_none())
            .bind(to_datetime(row.created_at))
            .bind(to_datetime(row.updated_at))
            .bind(app)
            .bind(chat)
            .bind(number)
            .execute(&mut *self.tx)
            .await
            .map_err(store_error("updating messages"))?;
        }
        Ok(())
    }

    async fn erase_messages(&mut self, chats: &[ChatKey]) -> Result<()> {
        for (app, chat) in chats {
            query("DELETE FROM messages WHERE application_id = ? AND chat_number = ?")
                .bind(app)
                .bind(chat)
                .execute(&mut *self.tx)
                .await
                .map_err(store_error("erasing messages"))?;
        }
        Ok(())
    }

    async fn update_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<()> {
        for piece in pieces(rows) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE chats t JOIN (");
            for (i, ((app, number), row)) in piece.iter().enumerate() {
                qb.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
                qb.push_bind(*app).push(" AS a, ").push_bind(*number).push(" AS n, ");
                qb.push_bind(row.last_position).push(" AS p, ").push_bind(row.messages_count).push(" AS m, ");
                qb.push_bind(row.deleted).push(" AS x, ").push_bind(to_datetime(row.created_at)).push(" AS c, ");
                qb.push_bind(to_datetime(row.updated_at)).push(" AS u");
            }
            qb.push(
                ") d ON t.application_id = d.a AND t.number = d.n SET t.last_position = d.p, t.messages_count = d.m, \
                 t.deleted = d.x, t.created_at = d.c, t.updated_at = d.u",
            );
            qb.build().execute(&mut *self.tx).await.map_err(store_error("updating chats"))?;
        }
        Ok(())
    }

    async fn add_chats_counts(&mut self, deltas: &[(i64, i64)]) -> Result<()> {
        for piece in pieces(deltas) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE applications t JOIN (");
            for (i, (app, delta)) in piece.iter().enumerate() {
                qb.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
                qb.push_bind(*app).push(" AS a, ").push_bind(*delta).push(" AS n");
            }
            qb.push(") d ON t.id = d.a SET t.chats_count = t.chats_count + d.n");
            qb.build().execute(&mut *self.tx).await.map_err(store_error("updating counts"))?;
        }
        Ok(())
    }

    async fn insert_idempotency_records(&mut self, records: &[IdempotencyRecord]) -> Result<()> {
        insert_idempotency_records(&mut self.tx, records).await
    }

    async fn erase_answers(&mut self, paths: &[String]) -> Result<()> {
        for path in paths {
            query(
                "DELETE FROM idempotency_keys WHERE location = ? OR LEFT(location, CHAR_LENGTH(?) + 1) = CONCAT(?, '/')",
            )
            .bind(path)
            .bind(path)
            .bind(path)
            .execute(&mut *self.tx)
            .await
            .map_err(store_error("erasing idempotency records"))?;
        }
        Ok(())
    }

    async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(store_error("committing a batch"))
    }
}

/// Records answered idempotent creates; a record past its retention is replaced (columns
/// are assigned left to right, so `created_at` goes last: the others test its old value).
pub(crate) async fn insert_idempotency_records(
    tx: &mut Transaction<'static, MySql>,
    records: &[IdempotencyRecord],
) -> Result<()> {
    const EXPIRED: &str = "created_at <= VALUES(created_at) - INTERVAL 1 DAY";
    for piece in pieces(records) {
        let mut qb = QueryBuilder::<MySql>::new(
            "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, location, body, created_at) ",
        );
        qb.push_values(piece, |mut b, r| {
            b.push_bind(r.scope.as_str())
                .push_bind(r.key.as_str())
                .push_bind(r.fingerprint.as_str())
                .push_bind(i32::from(r.status))
                .push_bind(r.location.as_str())
                .push_bind(r.body.as_str())
                .push_bind(to_datetime(r.created_at));
        });
        qb.push(format!(
            " ON DUPLICATE KEY UPDATE fingerprint = IF({EXPIRED}, VALUES(fingerprint), fingerprint), \
             status = IF({EXPIRED}, VALUES(status), status), location = IF({EXPIRED}, VALUES(location), location), \
             body = IF({EXPIRED}, VALUES(body), body), created_at = IF({EXPIRED}, VALUES(created_at), created_at)"
        ));
        qb.build().execute(&mut **tx).await.map_err(store_error("recording idempotency keys"))?;
    }
    Ok(())
}
