//! Where a change is made durable: a create (or edit, or delete) is handed to the queue and
//! answered only once the queue holds it durably. A create that cannot be made durable in
//! time gives up its number (voided: never treated as an existing item) and its client
//! gets a 503. With a queue that may have taken the command although it could not say so
//! in time (a broker that froze after the publish), a tombstone follows the create through
//! the same queue, so the item never appears after its client was told it failed.

use std::time::Duration;

use chatsys_core::ports::Durability;
use chatsys_core::{Command, Error, Queued, Version};

use crate::error::ApiError;
use crate::state::AppState;

/// Submits an edit or a delete, in a task of its own: a client that goes away cannot cut
/// the submit short, so its outcome is settled either way.
pub(crate) async fn change(state: &AppState, queued: impl Into<Queued>) -> Result<(), ApiError> {
    let (state, queued) = (state.clone(), queued.into());
    tokio::spawn(async move { state.queue.submit(queued).await })
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(ApiError::from)
}

/// After a delete: the idempotency answers kept outside the store for creates at or under
/// `path` hold the deleted text, so they go too (the store's copies go with the delete).
pub(crate) async fn forget_answers(state: &AppState, path: &str) {
    if let Err(e) = state.idempotency.forget_under(path).await {
        tracing::warn!(error = %e, "idempotency answers of a deleted item were not removed; they expire in 24 h");
    }
}

/// Submits a create; on failure, voids its number (and sends its tombstone where needed).
pub(crate) async fn create(state: &AppState, queued: Queued) -> Result<(), ApiError> {
    let command = queued.command.clone();
    match state.queue.submit(queued).await {
        Ok(()) => Ok(()),
        Err(e) => {
            forsake(state, command).await;
            Err(e.into())
        }
    }
}

/// How long a tombstone keeps trying to follow a failed create.
const TOMBSTONE_PATIENCE: Duration = Duration::from_secs(600);

async fn forsake(state: &AppState, command: Command) {
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
        tokio::spawn(async move { follow_with(state, tombstone).await });
    }
}

async fn follow_with(state: AppState, tombstone: Command) {
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
