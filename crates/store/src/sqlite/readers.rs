//! The connections that read, each read run where it is asked for: on the request's own
//! thread. A read here is one indexed lookup or one page of rows (at most a list's limit,
//! 1,000, or the indexer's catch-up page on the indexer's thread), served from SQLite's and
//! the operating system's caches in microseconds, and in WAL mode it never waits for the
//! writer. Handing it to another thread would cost more than it takes: through sqlx every
//! read crossed to a connection thread and every row it returned crossed back, two thirds
//! of a `GET` message's time and most of a page's.
//!
//! The pool holds the connections not in use; a read takes one (opening one when none is
//! left) and gives it back, so there are about as many as reads at once: the runtime's
//! threads and the indexer's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chatsys_core::Result;
use rusqlite::types::ToSql;
use rusqlite::{CachedStatement, Connection, OpenFlags, Row};

use crate::batch::pieces;
use crate::error::sqlite_error;

/// Page cache per reader, in KiB (negative: SQLite's unit for a size): what a reader misses
/// it finds in the operating system's file cache.
const CACHE_KIB: i64 = -2048;

/// Connections kept when idle; more are opened under load and closed when given back.
const KEPT: usize = 8;

/// Prepared statements kept per connection: each read's statement, and the fixed piece
/// sizes of the reads by many keys (`crate::batch::pieces`).
const STATEMENT_CACHE: usize = 64;

pub(crate) struct Readers {
    file: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Opens the first connection, so that a database that cannot be read fails the start.
    pub(crate) fn open(file: &Path) -> Result<Self> {
        let first = open(file)?;
        Ok(Self { file: file.to_path_buf(), idle: Mutex::new(vec![first]) })
    }

    /// Runs `read` on a connection of the pool; `context` names it in errors.
    pub(crate) fn read<T>(
        &self,
        context: &'static str,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.read_with(|conn| read(conn).map_err(sqlite_error(context)))
    }

    /// The same for a read that names its own errors (`in_pieces`, below).
    pub(crate) fn read_with<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let taken = self.idle.lock().expect("readers lock").pop();
        let conn = match taken {
            Some(conn) => conn,
            None => open(&self.file)?,
        };
        let result = read(&conn);
        // a connection whose read failed is dropped: the next read opens a fresh one
        if result.is_ok() {
            let mut idle = self.idle.lock().expect("readers lock");
            if idle.len() < KEPT {
                idle.push(conn);
            }
        }
        result
    }

    /// Closes the idle connections (on shutdown).
    pub(crate) fn close(&self) {
        self.idle.lock().expect("readers lock").clear();
    }
}

fn open(file: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = super::connect(
        file,
        flags,
        super::BUSY_TIMEOUT,
        &[("cache_size", &CACHE_KIB.to_string())],
        "opening the database for reading",
        "configuring a reader",
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// For the reads by many keys (a statement per piece of the fixed sizes, with the keys in
/// its `IN (…)`): `n` groups of `width` placeholders: `(?, ?), (?, ?)`.
pub(super) fn groups(n: usize, width: usize) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    vec![group; n].join(", ")
}

/// Binds a statement's values in order.
pub(super) struct Binder<'s, 'c> {
    statement: &'s mut CachedStatement<'c>,
    next: usize,
}

impl Binder<'_, '_> {
    pub(super) fn put(&mut self, value: impl ToSql) -> rusqlite::Result<&mut Self> {
        self.next += 1;
        self.statement.raw_bind_parameter(self.next, value)?;
        Ok(self)
    }
}

/// Runs `sql` over `items` in pieces of the fixed sizes (`sql(n)`: the statement for `n`
/// items), each item binding its values; `each_row` takes the rows the statements return.
/// Not a one-row statement per item, as the writer's batch runs them (`batch.rs`): outside a
/// transaction each run of a statement is a read transaction of its own. A search's 100
/// hits read one by one took 656-740 µs of CPU per search, against 466-573 in pieces and
/// 525-534 one by one inside one `BEGIN … COMMIT` (`bench/cpu.sh 10 64 healthz
/// search_messages`, in turns, `docs/benchmarks.md`, fourteenth session).
pub(super) fn in_pieces<T>(
    conn: &Connection,
    items: &[T],
    context: &'static str,
    sql: impl Fn(usize) -> String,
    bind: impl Fn(&T, &mut Binder) -> rusqlite::Result<()>,
    mut each_row: impl FnMut(&Row<'_>) -> rusqlite::Result<()>,
) -> Result<()> {
    for piece in pieces(items) {
        let mut run = || -> rusqlite::Result<()> {
            let mut statement = conn.prepare_cached(&sql(piece.len()))?;
            let mut binder = Binder { statement: &mut statement, next: 0 };
            for item in piece {
                bind(item, &mut binder)?;
            }
            let mut rows = statement.raw_query();
            while let Some(row) = rows.next()? {
                each_row(row)?;
            }
            Ok(())
        };
        run().map_err(sqlite_error(context))?;
    }
    Ok(())
}
