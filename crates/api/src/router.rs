//! Where a request goes.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{ApiError, problem_response};
use crate::routes::{applications, chats, health, messages, search};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/applications", post(applications::create).get(applications::list))
        .route("/applications/{token}", get(applications::get).put(applications::update).patch(applications::update))
        .route("/applications/{token}/chats", post(chats::create).get(chats::list))
        .route("/applications/{token}/chats/{chat}", get(chats::get))
        .route("/applications/{token}/chats/{chat}/messages", post(messages::create).get(messages::list))
        .route("/applications/{token}/chats/{chat}/messages/search", get(search::search))
        .route(
            "/applications/{token}/chats/{chat}/messages/{message}",
            get(messages::get).put(messages::update).patch(messages::update),
        )
        .fallback(unknown_path)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(map_response(problems_for_bare_errors))
        .with_state(state)
}

async fn unknown_path() -> ApiError {
    ApiError::not_found("no such resource")
}

/// Errors axum answers by itself (405 with its `Allow` header, 413, …) get a problem
/// document like every other error; their headers stay.
async fn problems_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let bare = (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed here; the Allow header lists the ones that are",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the server accepts",
        _ => "the request could not be served",
    };
    let (mut parts, _) = response.into_parts();
    let problem = problem_response(status, detail);
    let (problem_parts, body) = problem.into_parts();
    for (name, value) in &problem_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body).into_response()
}
