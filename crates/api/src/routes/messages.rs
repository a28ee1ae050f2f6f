use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chatsys_core::ports::Durability;
use chatsys_core::{AppId, ChatNumber, Command, Message, MessageBody, MessageNumber, Queued, Timestamp};

use super::chats::unknown_chat;
use super::{bad_path, page_response, to_json};
use crate::cursor::{Cursor, wrong_list};
use crate::durable;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody, Paging, Segments};
use crate::idempotent::{Created, create_once, keyed};
use crate::state::AppState;
use crate::views::{BodyInput, MessageView};

/// Post a message; the server gives it the chat's next number.
#[utoipa::path(
    post,
    path = "/applications/{token}/chats/{chat}/messages",
    tag = "messages",
    operation_id = "create_message",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam, crate::openapi::IdempotencyKeyHeader),
    request_body(content = BodyInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = MessageView,
            headers(("Location" = String, description = "The message's URL"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::InFlight),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::NotJson),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Segments((token, chat)): Segments<(String, String)>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(input): JsonBody<BodyInput>,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let body = MessageBody::parse(input.body).map_err(|e| ApiError::unprocessable(e.0))?;
    let app = state.app_id(&token).await?;
    let scope = format!("/applications/{token}/chats/{chat}/messages");
    let key = keyed(key, &["message", body.as_str()]);
    create_once("message", state, scope.clone(), key, move |state, pending| async move {
        let number = state.numbering.next_message(app, chat).await?.ok_or_else(|| unknown_chat(chat))?;
        let at = Timestamp::now();
        let message =
            Message { chat_number: chat, number, body: body.as_str().to_owned(), created_at: at, updated_at: at };
        let created = Created { location: format!("{scope}/{number}"), body: to_json(&MessageView::from(&message)) };
        let command = Command::CreateMessage { app, chat, number, body, at };
        durable::create(
            &state,
            Queued { command, idempotency: pending.map(|p| p.record(&created)), erase_answers_under: None },
        )
        .await?;
        Ok(created)
    })
    .await
}

/// List a chat's messages by ascending number.
#[utoipa::path(
    get,
    path = "/applications/{token}/chats/{chat}/messages",
    tag = "messages",
    operation_id = "list_messages",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam, crate::openapi::PageParams),
    responses(
        (status = 200, description = "A page of messages", body = Vec<MessageView>,
            headers(("Link" = String, description = "`<URL>; rel=\"next\"` when more follow"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Segments((token, chat)): Segments<(String, String)>,
    uri: Uri,
    paging: Paging,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let after = match paging.after {
        None => None,
        Some(Cursor::Number(n)) => Some(MessageNumber::new(n).map_err(|_| wrong_list())?),
        Some(_) => return Err(wrong_list()),
    };
    let app = state.app_id(&token).await?;
    let messages = state.store.list_messages(app, chat, after, paging.limit + 1).await?;
    if messages.is_empty() && after.is_none() {
        require_chat(&state, app, chat).await?;
    }
    Ok(page_response::<_, MessageView>(&uri, &paging, state.page_bytes, messages, |m| Cursor::Number(m.number.get())))
}

/// Read a message. A message created a moment ago may answer 404 until it is written.
#[utoipa::path(
    get,
    path = "/applications/{token}/chats/{chat}/messages/{message}",
    tag = "messages",
    operation_id = "get_message",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam, crate::openapi::MessageParam),
    responses(
        (status = 200, description = "The message", body = MessageView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Segments((token, chat, number)): Segments<(String, String, String)>,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let number = MessageNumber::parse(&number).map_err(bad_path)?;
    let app = state.app_id(&token).await?;
    let message = state.store.message(app, chat, number).await?.ok_or_else(|| unknown_message(chat, number))?;
    Ok(Json(MessageView::from(&message)).into_response())
}

/// Edit a message's body (PUT and PATCH take the same body). Edits are ordered by the
/// server when they are accepted: the last accepted edit wins, even over a create that
/// reaches the store later, whatever the clocks of the servers say.
#[utoipa::path(
    method(put, patch),
    path = "/applications/{token}/chats/{chat}/messages/{message}",
    tag = "messages",
    operation_id = "update_message",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam, crate::openapi::MessageParam),
    request_body(content = BodyInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The edited message", body = MessageView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::NotJson),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Segments((token, chat, number)): Segments<(String, String, String)>,
    JsonBody(input): JsonBody<BodyInput>,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let number = MessageNumber::parse(&number).map_err(bad_path)?;
    let body = MessageBody::parse(input.body).map_err(|e| ApiError::unprocessable(e.0))?;
    let app = state.app_id(&token).await?;
    // A message answered 201 a moment ago may not be written yet; the edit is accepted all
    // the same and wins whenever it lands.
    let version =
        state.numbering.next_version(app, chat, number).await?.ok_or_else(|| unknown_message(chat, number))?;
    let stored = match state.queue.durability() {
        Durability::Queued => state.store.message(app, chat, number).await?,
        Durability::Stored => None,
    };
    let at = Timestamp::now();
    durable::change(&state, Command::EditMessage { app, chat, number, body: body.clone(), at, version }).await?;
    let message = match state.queue.durability() {
        // the row as committed: this edit, or a newer one that won (or none: a delete that
        // raced this edit won, and is final)
        Durability::Stored => {
            state.store.message(app, chat, number).await?.ok_or_else(|| unknown_message(chat, number))?
        }
        Durability::Queued => {
            let created = match stored {
                Some(m) => Some(m),
                None => wait_for_row(&state, app, chat, number).await?,
            };
            Message {
                chat_number: chat,
                number,
                body: body.into_string(),
                created_at: created.map_or(at, |m| m.created_at),
                updated_at: at,
            }
        }
    };
    Ok(Json(MessageView::from(&message)).into_response())
}

/// Delete a message. Its number is never handed out again; subscribers of the chat get
/// `event: deleted`. A delete is final: no edit or late create brings the message back.
#[utoipa::path(
    delete,
    path = "/applications/{token}/chats/{chat}/messages/{message}",
    tag = "messages",
    operation_id = "delete_message",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam, crate::openapi::MessageParam),
    responses(
        (status = 204, description = "Deleted (durably)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Segments((token, chat, number)): Segments<(String, String, String)>,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let number = MessageNumber::parse(&number).map_err(bad_path)?;
    let app = state.app_id(&token).await?;
    let version =
        state.numbering.next_version(app, chat, number).await?.ok_or_else(|| unknown_message(chat, number))?;
    let path = format!("/applications/{token}/chats/{chat}/messages/{number}");
    let command = Command::DeleteMessage { app, chat, number, at: Timestamp::now(), version };
    durable::change(&state, Queued::erasing(command, path.clone())).await?;
    durable::forget_answers(&state, &path).await;
    // from now on the number names nothing: edits and a repeated delete answer 404
    if let Err(e) = state.numbering.void_message(app, chat, number).await {
        tracing::warn!(error = %e, "a deleted message's number was not voided; the store's tombstone still holds");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Waits (at most the visibility bound, 1 s) for a just-created message to be written, to
/// answer with its creation time: it reads again each time news says the chat moved.
async fn wait_for_row(
    state: &AppState,
    app: AppId,
    chat: ChatNumber,
    number: MessageNumber,
) -> Result<Option<Message>, ApiError> {
    let read = || state.store.message(app, chat, number);
    Ok(state.live().read_when_moved(app, chat, Duration::from_secs(1), read).await?)
}

pub(crate) async fn require_chat(state: &AppState, app: AppId, chat: ChatNumber) -> Result<(), ApiError> {
    if state.store.chat(app, chat).await?.is_some() || state.numbering.chat_exists(app, chat).await? {
        Ok(())
    } else {
        Err(unknown_chat(chat))
    }
}

fn unknown_message(chat: ChatNumber, number: MessageNumber) -> ApiError {
    ApiError::not_found(format!("chat {chat} of this application has no message {number}"))
}
