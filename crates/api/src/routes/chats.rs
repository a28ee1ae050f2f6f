use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chatsys_core::{Chat, ChatNumber, Command, Queued, Timestamp};

use super::{bad_path, page_response, to_json};
use crate::cursor::{Cursor, wrong_list};
use crate::durable;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, OptionalJsonObject, Paging, Segments};
use crate::idempotent::{Created, create_once, keyed};
use crate::state::AppState;
use crate::views::ChatView;

/// Create a chat; the server gives it the application's next number.
#[utoipa::path(
    post,
    path = "/applications/{token}/chats",
    tag = "chats",
    operation_id = "create_chat",
    params(crate::openapi::TokenParam, crate::openapi::IdempotencyKeyHeader),
    request_body(content = Option<crate::openapi::EmptyObject>, content_type = "application/json",
        description = "None, or an object (its fields are ignored)"),
    responses(
        (status = 201, description = "Created", body = ChatView,
            headers(("Location" = String, description = "The chat's URL"))),
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
    Segments(token): Segments<String>,
    IdempotencyKey(key): IdempotencyKey,
    _: OptionalJsonObject,
) -> Result<Response, ApiError> {
    let app = state.app_id(&token).await?;
    let scope = format!("/applications/{token}/chats");
    create_once("chat", state, scope.clone(), keyed(key, &["chat"]), move |state, pending| async move {
        let number = state.numbering.next_chat(app).await?;
        let at = Timestamp::now();
        let chat = Chat { number, messages_count: 0, created_at: at, updated_at: at };
        let created = Created { location: format!("{scope}/{number}"), body: to_json(&ChatView::from(&chat)) };
        let command = Command::CreateChat { app, chat: number, at };
        // on failure the number is skipped: a message sent to it must not bring the chat into being
        durable::create(
            &state,
            Queued { command, idempotency: pending.map(|p| p.record(&created)), erase_answers_under: None },
        )
        .await?;
        Ok(created)
    })
    .await
}

/// List an application's chats by ascending number.
#[utoipa::path(
    get,
    path = "/applications/{token}/chats",
    tag = "chats",
    operation_id = "list_chats",
    params(crate::openapi::TokenParam, crate::openapi::PageParams),
    responses(
        (status = 200, description = "A page of chats", body = Vec<ChatView>,
            headers(("Link" = String, description = "`<URL>; rel=\"next\"` when more follow"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Segments(token): Segments<String>,
    uri: Uri,
    paging: Paging,
) -> Result<Response, ApiError> {
    let after = match paging.after {
        None => None,
        Some(Cursor::Number(n)) => Some(ChatNumber::new(n).map_err(|_| wrong_list())?),
        Some(_) => return Err(wrong_list()),
    };
    let app = state.app_id(&token).await?;
    let chats = state.store.list_chats(app, after, paging.limit + 1).await?;
    Ok(page_response::<_, ChatView>(&uri, &paging, state.page_bytes, chats, |c| Cursor::Number(c.number.get())))
}

/// Read a chat. A chat created a moment ago may answer 404 until it is written.
#[utoipa::path(
    get,
    path = "/applications/{token}/chats/{chat}",
    tag = "chats",
    operation_id = "get_chat",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam),
    responses(
        (status = 200, description = "The chat", body = ChatView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Segments((token, chat)): Segments<(String, String)>,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let app = state.app_id(&token).await?;
    let chat = state.store.chat(app, chat).await?.ok_or_else(|| unknown_chat(chat))?;
    Ok(Json(ChatView::from(&chat)).into_response())
}

/// Delete a chat and every message in it. Its number is never handed out again; its event
/// streams end after a last `event: deleted`; creates still in flight for it are dropped.
#[utoipa::path(
    delete,
    path = "/applications/{token}/chats/{chat}",
    tag = "chats",
    operation_id = "delete_chat",
    params(crate::openapi::TokenParam, crate::openapi::ChatParam),
    responses(
        (status = 204, description = "Deleted (durably)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Segments((token, chat)): Segments<(String, String)>,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let app = state.app_id(&token).await?;
    if !state.numbering.chat_exists(app, chat).await? {
        return Err(unknown_chat(chat));
    }
    let path = format!("/applications/{token}/chats/{chat}");
    durable::change(&state, Queued::erasing(Command::DeleteChat { app, chat, at: Timestamp::now() }, path.clone()))
        .await?;
    durable::forget_answers(&state, &path).await;
    // from now on the number names nothing: messages to it and a repeated delete answer 404
    if let Err(e) = state.numbering.void_chat(app, chat).await {
        tracing::warn!(error = %e, "a deleted chat's number was not voided; the store's tombstone still holds");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn unknown_chat(chat: ChatNumber) -> ApiError {
    ApiError::not_found(format!("this application has no chat {chat}"))
}
