//! Where a change is made durable: a create (or edit, or delete) is handed to the queue and
//! answered only once the queue holds it durably. A create that cannot be made durable in
//! time gives up its number (voided: never treated as an existing item) and its client
//! gets a 503. With a queue that may have taken the command although it could not say so
//! in time (a broker that froze after the publish), a tombstone follows the create through
//! the same queue, so the item never appears after its client was told it failed.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use chatsys_core::ports::{Durability, OnItsWay};
use chatsys_core::{Command, Error, Queued, Version};
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::state::AppState;

/// Submits an edit or a delete; a client that goes away cannot cut the submit short, so its
/// outcome is settled either way.
pub(crate) async fn change(state: &AppState, queued: impl Into<Queued>) -> Result<(), ApiError> {
    let (state, queued) = (state.clone(), queued.into());
    to_the_end(async move { state.queue.submit(queued).await.map_err(ApiError::from) }).await
}

/// Runs `work` within the request, to its end even if the request is given up (its client
/// went away, or its time ran out): dropped unfinished, the work goes on in a task of its
/// own, in the request's span. A number handed out must end as a stored item or a voided
/// one, never as a silent gap. (A task for every create from the start cost a spawn, a
/// scheduling round and a wake-up per request.) A panic in `work` answers 500.
pub(crate) fn to_the_end<T, F>(work: F) -> ToTheEnd<F>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    ToTheEnd { work: Some(Box::pin(work)), span: tracing::Span::current() }
}

pub(crate) struct ToTheEnd<F: Future + Send + 'static> {
    work: Option<Pin<Box<F>>>,
    span: tracing::Span,
}

impl<T, F> Future for ToTheEnd<F>
where
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    type Output = Result<T, ApiError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(work) = self.work.as_mut() else { return Poll::Ready(Err(ApiError::internal())) };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx)));
        let done = match polled {
            Ok(poll) => ready!(poll),
            Err(_) => {
                tracing::error!("a create or change failed (it panicked)");
                Err(ApiError::internal())
            }
        };
        // finished (or broken by its panic): nothing is left to run on
        self.work = None;
        Poll::Ready(done)
    }
}

impl<F: Future + Send + 'static> Drop for ToTheEnd<F> {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(
                runtime.spawn(
                    async move {
                        work.await;
                    }
                    .instrument(self.span.clone()),
                ),
            ),
            Err(_) => tracing::error!("a create or change given up by its client could not go on: no runtime"),
        }
    }
}

/// After a delete: the idempotency answers kept outside the store for creates at or under
/// `path` hold the deleted text, so they go too (the store's copies go with the delete).
pub(crate) async fn forget_answers(state: &AppState, path: &str) {
    if let Err(e) = state.idempotency.forget_under(path).await {
        tracing::warn!(error = %e, "idempotency answers of a deleted item were not removed; they expire in 24 h");
    }
}

/// Submits a create; on failure, voids its number (and sends its tombstone where needed).
/// Its number counts as on its way until its item or its tombstone is queued (or the
/// tombstone is given up): after a Redis data loss, the counters must not re-seed below it
/// while the create may still arrive.
pub(crate) async fn create(state: &AppState, queued: Queued) -> Result<(), ApiError> {
    let command = queued.command.clone();
    let on_its_way = state.queue.on_its_way();
    match state.queue.submit(queued).await {
        Ok(()) => Ok(()),
        Err(e) => {
            forsake(state, command, on_its_way).await;
            Err(e.into())
        }
    }
}

/// How long a tombstone keeps trying to follow a failed create.
const TOMBSTONE_PATIENCE: Duration = Duration::from_secs(600);

async fn forsake(state: &AppState, command: Command, on_its_way: OnItsWay) {
    let (voided, tombstone) = match command {
        Command::CreateChat { app, chat, at } => {
            (state.numbering.void_chat(app, chat).await, Command::DeleteChat { app, chat, at })
        }
        Command::CreateMessage { app, chat, number, at, .. } => (
            state.numbering.void_message(app, chat, number).await,
            Command::DeleteMessage { app, chat, number, at, version: Version(0) },
        ),
        _ => return,
    };
    if let Err(e) = voided {
        tracing::error!(error = %e, "a failed create's number could not be voided");
    }
    if state.queue.durability() == Durability::Queued {
        let state = state.clone();
        tokio::spawn(async move { follow_with(state, tombstone, on_its_way).await });
    }
}

/// Queues `tombstone`, retrying; the failed create counts as on its way until then.
async fn follow_with(state: AppState, tombstone: Command, _on_its_way: OnItsWay) {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        match state.queue.submit(Queued::from(tombstone.clone())).await {
            Ok(()) => {
                metrics::counter!("chatsys_create_tombstones_total", "outcome" => "sent").increment(1);
                return;
            }
            Err(e) if started.elapsed() < TOMBSTONE_PATIENCE => {
                tracing::debug!(error = %e, "the tombstone of a failed create waits for the queue");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(15));
            }
            Err(e) => return gave_up(&e),
        }
    }
}

fn gave_up(e: &Error) {
    metrics::counter!("chatsys_create_tombstones_total", "outcome" => "gave_up").increment(1);
    tracing::error!(error = %e, "the tombstone of a failed create could not be queued; if the broker took the create \
        after all, its item appears although its client got a 503");
}
