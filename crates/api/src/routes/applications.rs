use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chatsys_core::{AppName, AppToken, NewApplication, Timestamp};

use super::{page_response, to_json};
use crate::cursor::{Cursor, wrong_list};
use crate::durable;
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, JsonBody, Paging, Segments};
use crate::idempotent::{Created, create_once, keyed};
use crate::state::{AppState, unknown_application};
use crate::views::{ApplicationView, NameInput};

/// Create an application; the server makes its token.
#[utoipa::path(
    post,
    path = "/applications",
    tag = "applications",
    operation_id = "create_application",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body(content = NameInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ApplicationView,
            headers(("Location" = String, description = "The application's URL"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 409, response = crate::openapi::InFlight),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 415, response = crate::openapi::NotJson),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(input): JsonBody<NameInput>,
) -> Result<Response, ApiError> {
    let name = AppName::parse(&input.name).map_err(|e| ApiError::unprocessable(e.0))?;
    let key = keyed(key, &["application", name.as_str()]);
    create_once("application", state, "/applications".into(), key, move |state, pending| async move {
        let new = NewApplication { token: AppToken::generate(), name, at: Timestamp::now() };
        // The response is known before the write, so its idempotency record is written in
        // the same transaction as the application.
        let created =
            Created { location: format!("/applications/{}", new.token), body: to_json(&ApplicationView::from(&new)) };
        let record = pending.map(|p| p.record(&created));
        state.store.create_application(&new, record.as_ref()).await?;
        Ok(created)
    })
    .await
}

/// List every application, in creation order. Requires the admin token when one is configured.
#[utoipa::path(
    get,
    path = "/applications",
    tag = "applications",
    operation_id = "list_applications",
    params(crate::openapi::PageParams),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "A page of applications", body = Vec<ApplicationView>,
            headers(("Link" = String, description = "`<URL>; rel=\"next\"` when more follow"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    paging: Paging,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.admin_token {
        // the scheme is case-insensitive (RFC 9110); the token is compared in constant time
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "listing applications requires Authorization: Bearer <admin token>",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            return Ok(response);
        }
    }
    let after = match &paging.after {
        None => None,
        Some(Cursor::Application { created_at, token }) => {
            Some((Timestamp::from_micros(*created_at), AppToken::parse(token).map_err(|_| wrong_list())?))
        }
        Some(_) => return Err(wrong_list()),
    };
    let apps = state.store.list_applications(after.as_ref(), paging.limit + 1).await?;
    Ok(page_response::<_, ApplicationView>(&uri, &paging, state.page_bytes, apps, |a| Cursor::Application {
        created_at: a.created_at.as_micros(),
        token: a.token.to_string(),
    }))
}

/// Read an application.
#[utoipa::path(
    get,
    path = "/applications/{token}",
    tag = "applications",
    operation_id = "get_application",
    params(crate::openapi::TokenParam),
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn get(State(state): State<AppState>, Segments(token): Segments<String>) -> Result<Response, ApiError> {
    state.app_id(&token).await?; // its rate limit, and a cached 404
    let token = AppToken::parse(&token).map_err(|_| unknown_application())?;
    let app = state.store.application(&token).await?.ok_or_else(unknown_application)?;
    Ok(Json(ApplicationView::from(&app)).into_response())
}

/// Rename an application (PUT and PATCH take the same body).
#[utoipa::path(
    method(put, patch),
    path = "/applications/{token}",
    tag = "applications",
    operation_id = "update_application",
    params(crate::openapi::TokenParam),
    request_body(content = NameInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The renamed application", body = ApplicationView),
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
    Segments(token): Segments<String>,
    JsonBody(input): JsonBody<NameInput>,
) -> Result<Response, ApiError> {
    let name = AppName::parse(&input.name).map_err(|e| ApiError::unprocessable(e.0))?;
    state.app_id(&token).await?; // its rate limit
    let token = AppToken::parse(&token).map_err(|_| unknown_application())?;
    let app = state.store.rename_application(&token, &name, Timestamp::now()).await?.ok_or_else(unknown_application)?;
    Ok(Json(ApplicationView::from(&app)).into_response())
}

/// Erase an application and everything in it: its chats, messages, search documents,
/// counters and idempotency records. Its token is unknown afterwards, on every server.
#[utoipa::path(
    delete,
    path = "/applications/{token}",
    tag = "applications",
    operation_id = "delete_application",
    params(crate::openapi::TokenParam),
    responses(
        (status = 204, description = "Erased"),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn delete(State(state): State<AppState>, Segments(token): Segments<String>) -> Result<Response, ApiError> {
    let app = state.app_id(&token).await?;
    let token = AppToken::parse(&token).map_err(|_| unknown_application())?;
    // to its end: a client that goes away does not leave it half done
    let erasing = state.clone();
    durable::to_the_end(async move { erasing.erase_application(app, &token).await }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Compares digests (equal lengths), every byte, so the time taken says nothing of how
/// much of the secret was right, nor of its length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest as _, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
