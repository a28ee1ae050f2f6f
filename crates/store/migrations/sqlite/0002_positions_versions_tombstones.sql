-- Live-event positions, server-ordered change versions, tombstones and erasure.
--
-- * messages.position: the chat position of the commit that gave the row its current state
--   (chats.last_position is the chat's current position); existing messages take their
--   number, which is unique and increasing per chat, and each chat the highest of them.
-- * messages.version: the version of the last change applied (0: the create); edits and
--   deletes apply by version, not by wall-clock time, so edited_at goes.
-- * messages.deleted / chats.deleted: tombstones keep their number (never reused) and their
--   position (a replay carries the delete); a tombstone message keeps no body.
-- * applications.id never reuses the id of an erased application (AUTOINCREMENT), so no
--   cache keyed by it can ever name another application.
-- * erasures: chats and applications erased by a batch, for the search index to catch up.

ALTER TABLE messages ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET position = number;
ALTER TABLE messages DROP COLUMN edited_at;
CREATE INDEX messages_by_position ON messages (application_id, chat_number, position);

ALTER TABLE chats ADD COLUMN last_position INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
UPDATE chats SET last_position = coalesce(
    (SELECT max(m.number) FROM messages m WHERE m.application_id = chats.application_id AND m.chat_number = chats.number),
    0);

CREATE TABLE applications_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    token       TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    chats_count INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
INSERT INTO applications_v2 (id, token, name, chats_count, created_at, updated_at)
    SELECT id, token, name, chats_count, created_at, updated_at FROM applications;
DROP TABLE applications;
ALTER TABLE applications_v2 RENAME TO applications;
CREATE INDEX applications_by_creation ON applications (created_at, token);

CREATE TABLE erasures (
    rev            INTEGER NOT NULL,
    application_id INTEGER NOT NULL,
    -- NULL: the whole application
    chat_number    INTEGER,
    PRIMARY KEY (rev, application_id, chat_number)
);
