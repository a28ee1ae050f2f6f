-- chatsys schema, SQLite (embedded mode).
-- Times are microseconds since the Unix epoch, UTC. Chats and messages are keyed by their
-- natural keys, so an idempotent insert is a plain ON CONFLICT DO NOTHING and every lookup
-- path (token; application + chat number; application + chat number + message number) is
-- a primary key or unique index.

CREATE TABLE applications (
    id          INTEGER PRIMARY KEY,
    token       TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    chats_count INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- GET /applications pages in creation order.
CREATE INDEX applications_by_creation ON applications (created_at, token);

CREATE TABLE chats (
    application_id INTEGER NOT NULL,
    number         INTEGER NOT NULL,
    messages_count INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (application_id, number)
) WITHOUT ROWID;

CREATE TABLE messages (
    application_id INTEGER NOT NULL,
    chat_number    INTEGER NOT NULL,
    number         INTEGER NOT NULL,
    body           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- the timestamp of the last edit applied (NULL until one is): edits apply newest-wins
    edited_at      INTEGER,
    -- the write batch that last changed the row: the search index catches up from it
    rev            INTEGER NOT NULL,
    PRIMARY KEY (application_id, chat_number, number)
) WITHOUT ROWID;
CREATE INDEX messages_by_rev ON messages (rev);

CREATE TABLE idempotency_keys (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    location    TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE store_meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- the last write batch's number (see messages.rev)
INSERT INTO store_meta (name, value) VALUES ('rev', 0);
