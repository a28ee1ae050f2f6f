use chatsys_core::Error;

/// Maps a driver error to a port error: trouble reaching or using the database is
/// `Unavailable` (the client may retry), anything else is a bug (`Internal`). The driver's
/// text goes to the source, never to the client.
pub(crate) fn store_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| {
        let unavailable = match &e {
            sqlx::Error::Database(db) => !matches!(
                db.kind(),
                sqlx::error::ErrorKind::UniqueViolation
                    | sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            ),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            _ => false,
        };
        if unavailable {
            Error::unavailable("the store is unavailable").with_source(e)
        } else {
            Error::internal(format!("store error while {context}")).with_source(e)
        }
    }
}
