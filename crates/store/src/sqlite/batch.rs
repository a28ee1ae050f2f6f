//! The batch primitives on SQLite. One connection writes (every write of the process goes
//! through it), so "locking" a row is reading it: nothing else can change it meanwhile.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chatsys_core::{IdempotencyRecord, Result, Timestamp};
use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{Connection as _, QueryBuilder, Transaction, query_scalar};

use crate::batch::{BatchTx, ChatKey, ChatRow, MessageKey, MessageRow, pieces};
use crate::error::store_error;

pub(crate) struct SqliteBatch<'c> {
    tx: Transaction<'c, Sqlite>,
    rev: i64,
}

impl<'c> SqliteBatch<'c> {
    /// Opens the transaction and takes the batch's number in the change feed.
    pub(crate) async fn begin(conn: &'c mut SqliteConnection) -> Result<(Self, u64)> {
        let err = || store_error("writing a batch");
        let mut tx = conn.begin().await.map_err(err())?;
        let rev: i64 = query_scalar("UPDATE store_meta SET value = value + 1 WHERE name = 'rev' RETURNING value")
            .fetch_one(&mut *tx)
            .await
            .map_err(err())?;
        Ok((Self { tx, rev }, rev as u64))
    }
}

type ChatRecord = (i64, i64, i64, i64, bool, i64, i64);
type MessageRecord = (i64, i64, i64, Option<String>, i64, i64, bool, i64, i64);

/// `(a, b) IN (VALUES (?, ?), …)` over the keys.
fn push_chat_keys(qb: &mut QueryBuilder<Sqlite>, keys: &[ChatKey]) {
    qb.push("(application_id, number) IN (VALUES ");
    let mut list = qb.separated(", ");
    for (app, chat) in keys {
        list.push("(")
            .push_bind_unseparated(*app)
            .push_unseparated(", ")
            .push_bind_unseparated(*chat)
            .push_unseparated(")");
    }
    qb.push(")");
}

#[async_trait]
impl BatchTx for SqliteBatch<'_> {
    async fn lock_chats(&mut self, keys: &[ChatKey]) -> Result<Vec<(ChatKey, ChatRow)>> {
        let mut out = Vec::with_capacity(keys.len());
        for piece in pieces(keys) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT application_id, number, last_position, messages_count, deleted, created_at, updated_at \
                 FROM chats WHERE ",
            );
            push_chat_keys(&mut qb, piece);
            let rows: Vec<ChatRecord> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("reading chats"))?;
            out.extend(rows.into_iter().map(
                |(app, number, last_position, messages_count, deleted, created, updated)| {
                    let row = ChatRow {
                        last_position,
                        messages_count,
                        deleted,
                        created_at: Timestamp::from_micros(created),
                        updated_at: Timestamp::from_micros(updated),
                    };
                    ((app, number), row)
                },
            ));
        }
        Ok(out)
    }

    async fn lock_applications(&mut self, apps: &[i64]) -> Result<BTreeSet<i64>> {
        let mut out = BTreeSet::new();
        for piece in pieces(apps) {
            let mut qb = QueryBuilder::<Sqlite>::new("SELECT id FROM applications WHERE id IN (");
            let mut list = qb.separated(", ");
            for app in piece {
                list.push_bind(*app);
            }
            qb.push(")");
            let ids: Vec<(i64,)> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("reading applications"))?;
            out.extend(ids.into_iter().map(|(id,)| id));
        }
        Ok(out)
    }

    async fn insert_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<BTreeSet<ChatKey>> {
        let mut inserted = BTreeSet::new();
        for piece in pieces(rows) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO chats (application_id, number, messages_count, last_position, deleted, created_at, updated_at) ",
            );
            qb.push_values(piece, |mut b, ((app, number), row)| {
                b.push_bind(*app)
                    .push_bind(*number)
                    .push_bind(row.messages_count)
                    .push_bind(row.last_position)
                    .push_bind(row.deleted)
                    .push_bind(row.created_at.as_micros())
                    .push_bind(row.updated_at.as_micros());
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING application_id, number");
            let keys: Vec<ChatKey> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("inserting chats"))?;
            inserted.extend(keys);
        }
        Ok(inserted)
    }

    async fn messages(&mut self, keys: &[MessageKey]) -> Result<Vec<(MessageKey, MessageRow)>> {
        let mut out = Vec::new();
        for piece in pieces(keys) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT application_id, chat_number, number, CASE WHEN deleted THEN NULL ELSE body END, \
                 version, position, deleted, created_at, updated_at FROM messages \
                 WHERE (application_id, chat_number, number) IN (VALUES ",
            );
            let mut list = qb.separated(", ");
            for (app, chat, number) in piece {
                list.push("(")
                    .push_bind_unseparated(*app)
                    .push_unseparated(", ")
                    .push_bind_unseparated(*chat)
                    .push_unseparated(", ")
                    .push_bind_unseparated(*number)
                    .push_unseparated(")");
            }
            qb.push(")");
            let rows: Vec<MessageRecord> =
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err(store_error("reading messages"))?;
            out.extend(rows.into_iter().map(|(app, chat, number, body, version, position, _, created, updated)| {
                let row = MessageRow {
                    body,
                    version,
                    position,
                    created_at: Timestamp::from_micros(created),
                    updated_at: Timestamp::from_micros(updated),
                };
                ((app, chat, number), row)
            }));
        }
        Ok(out)
    }

    async fn insert_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        for piece in pieces(rows) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (application_id, chat_number, number, body, version, position, deleted, \
                 created_at, updated_at, rev) ",
            );
            qb.push_values(piece, |mut b, ((app, chat, number), row)| {
                b.push_bind(*app)
                    .push_bind(*chat)
                    .push_bind(*number)
                    .push_bind(row.body.clone().unwrap_or_default())
                    .push_bind(row.version)
                    .push_bind(row.position)
                    .push_bind(row.body.is_none())
                    .push_bind(row.created_at.as_micros())
                    .push_bind(row.updated_at.as_micros())
                    .push_bind(self.rev);
            });
            qb.build().execute(&mut *self.tx).await.map_err(store_error("inserting messages"))?;
        }
        Ok(())
    }

    async fn update_messages(&mut self, rows: &[(MessageKey, MessageRow)]) -> Result<()> {
        for ((app, chat, number), row) in rows {
            sqlx::query(
                "UPDATE messages SET body = ?1, version = ?2, position = ?3, deleted = ?4, created_at = ?5, \
                 updated_at = ?6, rev = ?7 WHERE application_id = ?8 AND chat_number = ?9 AND number = ?10",
            )
            .bind(row.body.clone().unwrap_or_default())
            .bind(row.version)
            .bind(row.position)
            .bind(row.body.is_none())
            .bind(row.created_at.as_micros())
            .bind(row.updated_at.as_micros())
            .bind(self.rev)
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
            sqlx::query("DELETE FROM messages WHERE application_id = ?1 AND chat_number = ?2")
                .bind(app)
                .bind(chat)
                .execute(&mut *self.tx)
                .await
                .map_err(store_error("erasing messages"))?;
            sqlx::query("INSERT INTO erasures (rev, application_id, chat_number) VALUES (?1, ?2, ?3)")
                .bind(self.rev)
                .bind(app)
                .bind(chat)
                .execute(&mut *self.tx)
                .await
                .map_err(store_error("recording an erasure"))?;
        }
        Ok(())
    }

    async fn update_chats(&mut self, rows: &[(ChatKey, ChatRow)]) -> Result<()> {
        for piece in pieces(rows) {
            let mut qb = QueryBuilder::<Sqlite>::new("WITH d(a, n, p, m, x, c, u) AS (");
            qb.push_values(piece, |mut b, ((app, number), row)| {
                b.push_bind(*app)
                    .push_bind(*number)
                    .push_bind(row.last_position)
                    .push_bind(row.messages_count)
                    .push_bind(row.deleted)
                    .push_bind(row.created_at.as_micros())
                    .push_bind(row.updated_at.as_micros());
            });
            qb.push(
                ") UPDATE chats SET last_position = d.p, messages_count = d.m, deleted = d.x, created_at = d.c, \
                 updated_at = d.u FROM d WHERE chats.application_id = d.a AND chats.number = d.n",
            );
            qb.build().execute(&mut *self.tx).await.map_err(store_error("updating chats"))?;
        }
        Ok(())
    }

    async fn add_chats_counts(&mut self, deltas: &[(i64, i64)]) -> Result<()> {
        for piece in pieces(deltas) {
            let mut qb = QueryBuilder::<Sqlite>::new("WITH d(a, n) AS (");
            qb.push_values(piece, |mut b, (app, delta)| {
                b.push_bind(*app).push_bind(*delta);
            });
            qb.push(") UPDATE applications SET chats_count = chats_count + d.n FROM d WHERE applications.id = d.a");
            qb.build().execute(&mut *self.tx).await.map_err(store_error("updating counts"))?;
        }
        Ok(())
    }

    async fn insert_idempotency_records(&mut self, records: &[IdempotencyRecord]) -> Result<()> {
        insert_idempotency_records(&mut self.tx, records).await
    }

    async fn erase_answers(&mut self, paths: &[String]) -> Result<()> {
        for path in paths {
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE location = ?1 OR substr(location, 1, length(?1) + 1) = ?1 || '/'",
            )
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

/// Records answered idempotent creates; a record past its retention is replaced.
pub(crate) async fn insert_idempotency_records(
    tx: &mut Transaction<'_, Sqlite>,
    records: &[IdempotencyRecord],
) -> Result<()> {
    for piece in pieces(records) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, status, location, body, created_at) ",
        );
        qb.push_values(piece, |mut b, r| {
            b.push_bind(r.scope.as_str())
                .push_bind(r.key.as_str())
                .push_bind(r.fingerprint.as_str())
                .push_bind(i64::from(r.status))
                .push_bind(r.location.as_str())
                .push_bind(r.body.as_str())
                .push_bind(r.created_at.as_micros());
        });
        qb.push(format!(
            " ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status, \
             location = excluded.location, body = excluded.body, created_at = excluded.created_at \
             WHERE idempotency_keys.created_at <= excluded.created_at - {}",
            IdempotencyRecord::RETENTION_MICROS
        ));
        qb.build().execute(&mut **tx).await.map_err(store_error("recording idempotency keys"))?;
    }
    Ok(())
}
