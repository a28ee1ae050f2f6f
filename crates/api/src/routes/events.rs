use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use chatsys_core::{AppId, ChatNumber, Position};
use futures::StreamExt as _;

use super::bad_path;
use super::chats::unknown_chat;
use crate::error::ApiError;
use crate::extract::Segments;
use crate::live;
use crate::state::AppState;

/// Live events of a chat, as Server-Sent Events. Every committed change of a message takes
/// the chat's next *position* (the event's `id`): `event: message` carries the message as
/// it is after the change (clients upsert by `number`), `event: deleted` a message's delete
/// (`{"number", "chat_number"}`) or, last of all, the chat's own (`{"chat_number"}`). A fresh
/// stream starts with `event: ready` at the chat's current position; `Last-Event-ID` (a
/// reconnect; it wins) or `after` first replays the current state of every message changed
/// after that position. A comment line comes at least every 15 s while nothing else does.
#[utoipa::path(
    get,
    path = "/applications/{token}/chats/{chat}/events",
    tag = "events",
    operation_id = "chat_events",
    params(
        crate::openapi::TokenParam,
        crate::openapi::ChatParam,
        ("after" = Option<u64>, Query, description = "Replay the changes after this position (0: the whole chat)"),
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event read (a reconnect); wins over `after`"),
    ),
    responses(
        (status = 200, description = "The stream of the chat's events", content_type = "text/event-stream", body = String,
            example = "id: 7\nevent: message\ndata: {\"number\":3,\"chat_number\":1,\"body\":\"hello\",\"created_at\":\"2026-11-27T16:42:59.123456Z\",\"updated_at\":\"2026-11-27T16:42:59.123456Z\"}\n\n"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    Segments((token, chat)): Segments<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let chat = ChatNumber::parse(&chat).map_err(bad_path)?;
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(position(value.to_str().unwrap_or("-"), "Last-Event-ID")?),
        None => match form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).find(|(k, _)| k == "after") {
            Some((_, value)) => Some(position(&value, "after")?),
            None => None,
        },
    };
    let app = state.app_id(&token).await?;
    let current = current_position(&state, app, chat).await?;
    if let Some(resume) = resume.filter(|r| *r > current) {
        return Err(ApiError::bad_request(format!(
            "position {resume} is beyond the chat's current position {current}"
        )));
    }
    let subscription = state.live().subscribe(app, chat, resume.unwrap_or(current))?;
    let ready = match resume {
        None => Some(Ok(live::ready(current))),
        Some(_) => None,
    };
    let body = futures::stream::iter(ready).chain(subscription.into_stream());
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // a proxy must pass events on as they come
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn position(text: &str, what: &str) -> Result<Position, ApiError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!("{what} must be a non-negative integer position")));
    }
    text.parse::<i64>()
        .map(|n| Position(n as u64))
        .map_err(|_| ApiError::bad_request(format!("{what} is larger than any position")))
}

/// The chat's current position: 0 for a chat answered 201 but not stored yet; 404 for one
/// that does not exist (or was deleted).
async fn current_position(state: &AppState, app: AppId, chat: ChatNumber) -> Result<Position, ApiError> {
    match state.store.chat_position(app, chat).await? {
        Some(stored) if !stored.deleted => Ok(stored.position),
        Some(_) => Err(unknown_chat(chat)),
        None if state.numbering.chat_exists(app, chat).await? => Ok(Position(0)),
        None => Err(unknown_chat(chat)),
    }
}
