-- chatsys schema, MySQL 8 (MariaDB 10.11 too): distributed mode.
-- Character set and collation are explicit: utf8mb4 text compared byte for byte, tokens
-- and keys in ASCII. Times are DATETIME(6) in UTC, set by the application.
-- `seen` counts deliveries of a row's create and `seen_by` names the last batch that found
-- the row already there: a batch tells its inserts from redeliveries by them, portably
-- (no INSERT IGNORE, no REPLACE, no row alias).

CREATE TABLE applications (
    id          BIGINT       NOT NULL AUTO_INCREMENT,
    token       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name        VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    chats_count BIGINT       NOT NULL DEFAULT 0,
    created_at  DATETIME(6)  NOT NULL,
    updated_at  DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY applications_token (token),
    KEY applications_by_creation (created_at, token)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE chats (
    application_id BIGINT      NOT NULL,
    number         BIGINT      NOT NULL,
    messages_count BIGINT      NOT NULL DEFAULT 0,
    created_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    seen           INT         NOT NULL DEFAULT 1,
    seen_by        BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (application_id, number)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE messages (
    application_id BIGINT      NOT NULL,
    chat_number    BIGINT      NOT NULL,
    number         BIGINT      NOT NULL,
    body           TEXT        CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    -- the time of the last edit applied (NULL until one is): edits apply newest-wins
    edited_at      DATETIME(6) NULL,
    seen           INT         NOT NULL DEFAULT 1,
    seen_by        BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (application_id, chat_number, number)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE idempotency_keys (
    scope       VARCHAR(255)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    idem_key    VARCHAR(255)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fingerprint CHAR(64)      CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status      SMALLINT      NOT NULL,
    location    VARCHAR(512)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    body        MEDIUMTEXT    CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at  DATETIME(6)   NOT NULL,
    PRIMARY KEY (scope, idem_key),
    KEY idempotency_keys_by_age (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
