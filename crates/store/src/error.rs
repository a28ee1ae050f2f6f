use chatsys_core::Error;
use sqlx::error::DatabaseError;

/// Maps a driver error to a port error, and so decides what the worker does with it:
/// trouble reaching or using the database (a lost connection, a timeout, a deadlock, a full
/// disk, a server going away) is `Unavailable`: retried with backoff, the client may retry.
/// Anything else the database says (a refusing trigger, a broken constraint, a bad row) is
/// deterministic: `Internal`, retried a bounded number of times, then the command is set
/// aside. The driver's text goes to the source, never to the client.
pub(crate) fn store_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| {
        let transient = match &e {
            sqlx::Error::Database(db) => transient_database_error(db.as_ref()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            _ => false,
        };
        classified(transient, context, e)
    }
}

/// The same for the embedded writer's own connection (`rusqlite`).
pub(crate) fn sqlite_error(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| {
        let transient = match &e {
            rusqlite::Error::SqliteFailure(failure, _) => {
                SQLITE_TRANSIENT.contains(&i64::from(failure.extended_code & 0xff))
            }
            _ => false,
        };
        classified(transient, context, e)
    }
}

fn classified(transient: bool, context: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    if transient {
        Error::unavailable("the store is unavailable").with_source(e)
    } else {
        Error::internal(format!("store error while {context}")).with_source(e)
    }
}

/// SQLite primary result codes that pass: busy, locked, out of memory, I/O error, disk full,
/// cannot open, lock protocol, read-only (a remounted file system).
const SQLITE_TRANSIENT: [i64; 8] = [5, 6, 7, 10, 13, 14, 15, 8];

/// MySQL / MariaDB error numbers that pass: disk full (1021), cannot write (3), too many
/// connections (1040), shutdown in progress (1053), table full (1114), lock wait timeout
/// (1205), deadlock (1213), read-only server (1290, 1836), interrupted (1317), connection
/// killed (1927), idle disconnect (4031), lost connection (2006, 2013), net errors
/// (1152, 1158–1161), the storage engine's own error (1030: usually a full disk).
const MYSQL_TRANSIENT: [u16; 20] = [
    3, 1021, 1040, 1053, 1114, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1290, 1317, 1836, 1927, 2006, 2013, 4031, 1030,
];

fn transient_database_error(db: &dyn DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return MYSQL_TRANSIENT.contains(&mysql.number());
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // the extended result code; its low byte is the primary code
        let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
        return SQLITE_TRANSIENT.contains(&(code & 0xff));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_and_pool_trouble_is_transient_and_unknown_errors_are_not() {
        let io = store_error("x")(sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(io.kind(), chatsys_core::ErrorKind::Unavailable);
        let decode = store_error("x")(sqlx::Error::Decode("bad".into()));
        assert_eq!(decode.kind(), chatsys_core::ErrorKind::Internal);
    }

    #[test]
    fn a_full_disk_is_transient_and_a_refusing_trigger_is_not() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let full = sqlite_error("x")(failure(rusqlite::ffi::SQLITE_FULL));
        assert_eq!(full.kind(), chatsys_core::ErrorKind::Unavailable);
        let io = sqlite_error("x")(failure(rusqlite::ffi::SQLITE_IOERR_WRITE));
        assert_eq!(io.kind(), chatsys_core::ErrorKind::Unavailable);
        let refused = sqlite_error("x")(failure(rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER));
        assert_eq!(refused.kind(), chatsys_core::ErrorKind::Internal);
    }
}
