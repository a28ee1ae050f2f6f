//! The WAL checkpoints, on a thread and a connection of their own, beside the writer rather
//! than in its commits: a checkpoint copies committed pages from the WAL back into the
//! database file and syncs it, so that SQLite can start the WAL over.
//!
//! Each runs right after a commit, or after an interval if none comes first (soon while
//! commits came since the last checkpoint, otherwise rarely). Started right after a commit,
//! a checkpoint copies what that commit wrote and syncs the database file while the writer
//! gathers its next batch, not while the writer waits for its own `fsync` of the WAL (the
//! two share the disk). Each checkpoint copies little and often finishes before the next
//! commit, and SQLite starts the WAL over then, so that the writer need not checkpoint
//! itself (`writer.rs`: a checkpoint in the writer holds up every create of the batch whose
//! commit triggered it). Creates over 1,000 chats at half the peak rate, after 10 s at full
//! speed, nine runs each in turns: p99 12.6-17.2 ms with checkpoints on a 10 ms clock,
//! 8.7-10.1 ms right after each commit, 9.3-11.2 ms after the first commit 10 ms after the
//! last checkpoint; the price is 1-4 µs more checkpoint CPU per create at full load, and a
//! GET right after its 201 finding the message ~0.5 ms later at the median
//! (`docs/benchmarks.md`, twelfth and thirteenth sessions; on a fast machine the p99 is
//! under 10 ms either way).
//!
//! A checkpoint is PASSIVE: it never blocks the writer or the readers. After a delete, the
//! WAL's older frames still hold the deleted text: a TRUNCATE checkpoint (which waits for
//! readers) copies everything back and empties the file, tried again until it completes.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chatsys_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};

/// When checkpoints run without a commit, and how long one waits for readers.
#[derive(Clone, Copy)]
struct Timing {
    /// How soon the next checkpoint runs when no commit comes first: soon while commits came
    /// since the last one (`busy`), otherwise rarely (`idle`).
    busy: Duration,
    idle: Duration,
    /// How long a TRUNCATE checkpoint waits for the readers that hold the WAL.
    readers: Duration,
}

const TIMING: Timing =
    Timing { busy: Duration::from_millis(10), idle: Duration::from_millis(500), readers: super::BUSY_TIMEOUT };

/// Page cache of the checkpointer's connection, in KiB (negative: SQLite's unit for a
/// size): what it misses it finds in the operating system's file cache.
const CACHE_KIB: i64 = -512;

/// What the store tells the checkpointer.
#[derive(Default)]
struct Told {
    /// A commit since the checkpointer began to wait.
    committed: bool,
    /// Something was deleted since the WAL was last emptied: its old pages may still hold
    /// the erased text, so the next checkpoint empties the WAL.
    erased: bool,
    /// The thread ends: the store closes, or was dropped.
    closing: bool,
    /// The store closes: a last checkpoint empties the WAL first.
    last_checkpoint: bool,
}

#[derive(Default)]
struct Signal {
    told: Mutex<Told>,
    changed: Condvar,
}

impl Signal {
    fn tell(&self, change: impl FnOnce(&mut Told)) {
        change(&mut self.told.lock().expect("checkpointer lock"));
        self.changed.notify_one();
    }
}

pub(crate) struct Checkpointer {
    signal: Arc<Signal>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the connection (so that a database that cannot be opened fails the start) and
    /// starts its thread.
    pub(crate) fn start(file: &Path) -> Result<Self> {
        Self::start_with(file, TIMING)
    }

    fn start_with(file: &Path, timing: Timing) -> Result<Self> {
        let conn = open(file, timing.readers)?;
        let signal = Arc::new(Signal::default());
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn({
                let signal = signal.clone();
                move || serve(&conn, &signal, timing)
            })
            .map_err(|e| Error::internal("cannot start the sqlite checkpointer thread").with_source(e))?;
        Ok(Self { signal, thread: Mutex::new(Some(thread)) })
    }

    /// A write committed; `erased` if it may have deleted text. Only a checkpointer already
    /// waiting starts: one that is busy waits for the next commit, not for the end of its own
    /// run. An erasure is never forgotten.
    pub(crate) fn committed(&self, erased: bool) {
        self.signal.tell(|told| {
            told.committed = true;
            told.erased |= erased;
        });
    }

    /// Something may have been deleted without a commit being told (a write whose outcome is
    /// unknown): the next checkpoint empties the WAL.
    pub(crate) fn erased(&self) {
        self.signal.tell(|told| told.erased = true);
    }

    /// Empties the WAL a last time and ends the thread (on shutdown, after the last write).
    pub(crate) async fn close(&self) {
        self.signal.tell(|told| {
            told.closing = true;
            told.last_checkpoint = true;
        });
        super::join(&self.thread, "checkpointer").await;
    }
}

impl Drop for Checkpointer {
    /// A store dropped without closing ends the thread too, without a last checkpoint (one
    /// that nobody waits for could hold the WAL after the store is gone).
    fn drop(&mut self) {
        self.signal.tell(|told| told.closing = true);
    }
}

fn serve(conn: &Connection, signal: &Signal, timing: Timing) {
    let mut wait = timing.idle;
    // the WAL's length in frames at the last checkpoint
    let mut last_frames = -1;
    let mut told = signal.told.lock().expect("checkpointer lock");
    loop {
        // a commit, or the interval (a commit told while the last checkpoint ran is not one)
        told.committed = false;
        told = signal
            .changed
            .wait_timeout_while(told, wait, |told| !told.committed && !told.closing)
            .expect("checkpointer lock")
            .0;
        if told.closing {
            break;
        }
        let erased = std::mem::take(&mut told.erased);
        drop(told);
        wait = timing.idle;
        let mut emptied = true;
        if erased {
            emptied = match checkpoint(conn, "TRUNCATE") {
                Ok((0, _)) => true,
                Ok(_) => {
                    tracing::debug!("the wal could not be emptied yet (busy): trying again");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wal checkpoint failed");
                    false
                }
            };
        } else {
            match checkpoint(conn, "PASSIVE") {
                Ok((_, frames)) => {
                    if frames != last_frames {
                        wait = timing.busy;
                    }
                    last_frames = frames;
                }
                Err(e) => tracing::warn!(error = %e, "wal checkpoint failed"),
            }
        }
        told = signal.told.lock().expect("checkpointer lock");
        told.erased |= !emptied;
    }
    if !told.last_checkpoint {
        return;
    }
    drop(told);
    match checkpoint(conn, "TRUNCATE") {
        Ok((0, _)) => {}
        Ok(_) => tracing::warn!("the final checkpoint could not empty the wal (busy)"),
        Err(e) => tracing::warn!(error = %e, "final checkpoint failed"),
    }
}

/// Runs a checkpoint of `mode`: whether it was kept from completing (1: busy), and the WAL's
/// length in frames.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| Ok((row.get(0)?, row.get(1)?)))
}

fn open(file: &Path, readers: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    super::connect(
        file,
        flags,
        readers,
        &[("cache_size", &CACHE_KIB.to_string())],
        "opening the database to checkpoint",
        "configuring the checkpointer",
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;

    /// A database in WAL mode set up as the store's, with one table, and its writer.
    fn database(dir: &Path) -> (PathBuf, Connection) {
        let file = dir.join("c.db");
        let conn = Connection::open(&file).unwrap();
        conn.execute_batch(&super::super::pragmas(&[])).unwrap();
        conn.execute_batch("CREATE TABLE t (body TEXT NOT NULL)").unwrap();
        (file, conn)
    }

    fn holds(file: &Path, marker: &str) -> bool {
        std::fs::read(file).unwrap_or_default().windows(marker.len()).any(|bytes| bytes == marker.as_bytes())
    }

    fn wal_of(file: &Path) -> PathBuf {
        file.with_extension("db-wal")
    }

    fn wal_bytes(file: &Path) -> u64 {
        std::fs::metadata(wal_of(file)).map(|m| m.len()).unwrap_or(0)
    }

    async fn within(seconds: u64, what: &str, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(seconds), "not within {seconds} s: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// No checkpoint without a commit for an hour: only the commit's signal can start one.
    const ON_COMMITS_ONLY: Timing =
        Timing { busy: Duration::from_secs(3600), idle: Duration::from_secs(3600), readers: Duration::from_secs(5) };

    #[tokio::test]
    async fn a_commit_starts_a_checkpoint_that_copies_it_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let (file, writer) = database(dir.path());
        let checkpointer = Checkpointer::start_with(&file, ON_COMMITS_ONLY).unwrap();
        writer.execute("INSERT INTO t (body) VALUES ('Qx7committed')", []).unwrap();
        assert!(!holds(&file, "Qx7committed"), "the writer does not checkpoint by itself");
        checkpointer.committed(false);
        within(5, "the commit copied into the database file", || holds(&file, "Qx7committed")).await;
        checkpointer.close().await;
    }

    /// After a delete the WAL is emptied, once the readers that may still see the deleted
    /// rows let it: its older frames hold the deleted text. Here a TRUNCATE gives up on
    /// readers at once, so only a later try can empty it.
    #[tokio::test]
    async fn an_erasure_empties_the_wal_once_no_reader_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let (file, writer) = database(dir.path());
        let timing =
            Timing { busy: Duration::from_millis(10), idle: Duration::from_millis(100), readers: Duration::ZERO };
        let checkpointer = Checkpointer::start_with(&file, timing).unwrap();
        writer.execute("INSERT INTO t (body) VALUES ('Qx7erased')", []).unwrap();
        let reader = Connection::open(&file).unwrap();
        reader.execute_batch("BEGIN; SELECT count(*) FROM t;").unwrap();
        writer.execute("DELETE FROM t", []).unwrap();
        checkpointer.committed(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(wal_bytes(&file) > 0, "a reader still holds the WAL");
        reader.execute_batch("COMMIT").unwrap();
        within(10, "the WAL emptied", || wal_bytes(&file) == 0).await;
        assert!(!holds(&file, "Qx7erased") && !holds(&wal_of(&file), "Qx7erased"), "the deleted text is gone");
        checkpointer.close().await;
    }

    #[tokio::test]
    async fn closing_empties_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let (file, writer) = database(dir.path());
        writer.execute("INSERT INTO t (body) VALUES ('Qx7closed')", []).unwrap();
        assert!(wal_bytes(&file) > 0);
        let checkpointer = Checkpointer::start(&file).unwrap();
        checkpointer.close().await;
        assert_eq!(wal_bytes(&file), 0, "the last checkpoint emptied the WAL");
        assert!(holds(&file, "Qx7closed"));
    }
}
