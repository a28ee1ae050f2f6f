//! The one SQLite connection that writes, on a thread of its own. A write is a closure run
//! there and answered through a oneshot channel: one hand-off per batch, whose statements
//! then run back to back from the connection's cache of prepared statements. (Through sqlx
//! every statement, and every row it returns, crossed between the runtime and sqlx's
//! connection thread: about 20 round trips per batch, and a sixth of the server's CPU.)
//!
//! After a failed write (or one that panicked) the connection is rolled back and closed, and
//! the next write opens a fresh one:
//! SQLite may have rolled the transaction back by itself (a full disk does), and nothing
//! of a failed transaction may leak into the next one.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chatsys_core::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

/// Given the connection (or why there is none), a write answers its caller and says whether
/// it succeeded.
type Work = Box<dyn FnOnce(Result<&mut Connection>) -> bool + Send>;

/// A write, run only if the writer claims it before its caller gives up.
struct Job {
    work: Work,
    claim: Arc<AtomicU8>,
}

/// A job's claim: waiting in the queue, then taken by the writer or given up by its caller
/// (whichever comes first; a write that has begun is always waited for, since it may commit).
const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

/// How long a write waits for the writer to take it: past this, the writer is stuck (a hung
/// fsync, a file system that does not answer), the write answers `Unavailable` and is never
/// run, and readiness starts probing.
const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) struct Writer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    patience: Duration,
}

impl Writer {
    /// Opens the connection (so that a database that cannot be opened fails the start) and
    /// starts its thread.
    pub(crate) fn start(file: &Path) -> Result<Self> {
        Self::start_with_patience(file, PATIENCE)
    }

    fn start_with_patience(file: &Path, patience: Duration) -> Result<Self> {
        let first = open(file)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let file = file.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(&file, Some(first), queue))
            .map_err(|e| Error::internal("cannot start the sqlite writer thread").with_source(e))?;
        Ok(Self { jobs: Mutex::new(Some(jobs)), thread: Mutex::new(Some(thread)), patience })
    }

    /// Runs `work` on the writer's connection, after every write handed over before it.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (answer, mut answered) = oneshot::channel();
        let claim = Arc::new(AtomicU8::new(WAITING));
        let job = Job {
            work: Box::new(move |conn| {
                let result = conn.and_then(work);
                let ok = result.is_ok();
                let _ = answer.send(result);
                ok
            }),
            claim: claim.clone(),
        };
        let sent = match self.jobs.lock().expect("writer lock").as_ref() {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::unavailable("the sqlite writer has stopped"));
        }
        let lost = |_| Err(Error::internal("the sqlite writer failed during a write"));
        match tokio::time::timeout(self.patience, &mut answered).await {
            Ok(answer) => answer.unwrap_or_else(lost),
            Err(_) if claim.compare_exchange(WAITING, GIVEN_UP, Ordering::SeqCst, Ordering::SeqCst).is_ok() => {
                Err(Error::unavailable(format!(
                    "the sqlite writer did not take this write within {} s",
                    self.patience.as_secs()
                )))
            }
            // the writer took it meanwhile: it may commit, so its outcome is the answer
            Err(_) => answered.await.unwrap_or_else(lost),
        }
    }

    /// Lets the writes already handed over finish, then closes the connection.
    pub(crate) async fn stop(&self) {
        drop(self.jobs.lock().expect("writer lock").take());
        super::join(&self.thread, "writer").await;
    }
}

fn serve(file: &Path, mut conn: Option<Connection>, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        if job.claim.compare_exchange(WAITING, TAKEN, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            continue; // its caller has given up and answered
        }
        let job = job.work;
        if conn.is_none() {
            match open(file) {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        let open_conn = conn.as_mut().expect("opened above");
        // a write that panics fails alone (its caller gets an error); the thread goes on
        let ok = std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(open_conn)))).unwrap_or(false);
        if !ok && let Some(failed) = conn.take() {
            if !failed.is_autocommit() {
                let _ = failed.execute_batch("ROLLBACK");
            }
            if let Err((_, e)) = failed.close() {
                tracing::warn!(error = %e, "closing the failed writer connection");
            }
        }
    }
}

/// Page cache of the writer, in KiB (negative: SQLite's unit for a size). A batch touches
/// the last leaf of every chat it writes to, in the messages and in their positions: over
/// 1,000 busy chats some 2,200 pages, more than 8 MiB held, so a miss is common whatever the
/// size, and costs a copy from the operating system's file cache. 2 MiB instead of 8 kept
/// the writer's CPU per create over 1,000 chats (28.6, 27.2 µs against 30.5, 29.4, in
/// turns) and holds 6 MiB less (`docs/benchmarks.md`, seventh session).
const CACHE_KIB: i64 = -2048;

/// The writer's last resort: after a commit that leaves the WAL over this many pages (64 MiB
/// of 4 KiB pages), the writer checkpoints it itself. SQLite starts the WAL over only once
/// a checkpoint has copied all of it back; the background checkpoints (`checkpointer.rs`,
/// after each commit) usually get there between two commits, but not under creates at full
/// speed, and without this the WAL grew by about a gigabyte every 15 s. A checkpoint here
/// holds up the batch whose commit triggered it: at 32 MiB with background checkpoints every
/// 500 ms, the p99 of creates at half the peak rate was 20–25 ms, against 9.8 ms now.
const WAL_RESTART_PAGES: i64 = 16384;

/// Prepared statements kept per connection: every statement of the batch primitives and
/// of the other writes, with room to spare.
const STATEMENT_CACHE: usize = 128;

fn open(file: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = super::connect(
        file,
        flags,
        super::BUSY_TIMEOUT,
        &[("cache_size", &CACHE_KIB.to_string()), ("wal_autocheckpoint", &WAL_RESTART_PAGES.to_string())],
        "opening the database for writing",
        "configuring the writer",
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_the_writer_does_not_take_in_time_fails_and_never_runs() {
        let dir = tempfile::tempdir().unwrap();
        let writer =
            Arc::new(Writer::start_with_patience(&dir.path().join("w.db"), Duration::from_millis(200)).unwrap());
        // a write that hangs the writer for longer than the patience
        let stuck = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .run(|_| {
                        std::thread::sleep(Duration::from_millis(700));
                        Ok(())
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran = Arc::new(AtomicU8::new(0));
        let behind = writer
            .run({
                let ran = ran.clone();
                move |_| {
                    ran.store(1, Ordering::SeqCst);
                    Ok(())
                }
            })
            .await;
        let e = behind.expect_err("the write behind the stuck one gives up");
        assert_eq!(e.kind(), chatsys_core::ErrorKind::Unavailable, "{e}");
        // the stuck write was taken before the patience ran out: it is waited for, and holds
        assert!(stuck.await.unwrap().is_ok(), "a write the writer took is answered by its outcome");
        writer.run(|_| Ok(())).await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a write given up is never run");
        writer.stop().await;
    }
}
