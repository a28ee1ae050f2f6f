-- Live-event positions, server-ordered change versions and tombstones.
--
-- * messages.position: the chat position of the commit that gave the row its current state
--   (chats.last_position is the chat's current position); existing messages take their
--   number, which is unique and increasing per chat, and each chat the highest of them.
-- * messages.version: the version of the last change applied (0: the create); edits and
--   deletes apply by version, not by wall-clock time, so edited_at goes.
-- * messages.deleted / chats.deleted: tombstones keep their number (never reused) and their
--   position (a replay carries the delete); a tombstone message keeps no body.
-- * A batch locks the chat rows it touches before it reads their messages, so it learns
--   which message rows exist by reading them: messages.seen and seen_by go.

ALTER TABLE messages
    ADD COLUMN position BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN version  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN deleted  BOOLEAN NOT NULL DEFAULT FALSE,
    DROP COLUMN edited_at,
    DROP COLUMN seen,
    DROP COLUMN seen_by;
UPDATE messages SET position = number;
CREATE INDEX messages_by_position ON messages (application_id, chat_number, position);

ALTER TABLE chats
    ADD COLUMN last_position BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE chats c SET c.last_position = coalesce(
    (SELECT max(m.number) FROM messages m WHERE m.application_id = c.application_id AND m.chat_number = c.number),
    0);
