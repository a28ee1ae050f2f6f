use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chatsys_core::Result;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 while the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process is up", body = crate::openapi::Status)))]
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// 200 when every dependency answers; otherwise 503 naming the first one that does not.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Every dependency answers", body = crate::openapi::Readiness),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let search = async {
        match &state.search {
            Some(index) => check(index.ping()).await.map(|()| "ok"),
            None => Ok("not configured"),
        }
    };
    let (store, queue, numbering, search) =
        tokio::join!(check(state.store.ping()), check(state.queue.ping()), check(state.numbering.ping()), search,);
    let checks = [
        ("store", store.map(|()| "ok")),
        ("queue", queue.map(|()| "ok")),
        ("numbering", numbering.map(|()| "ok")),
        ("search", search),
    ];
    let mut report = serde_json::Map::new();
    for (name, result) in checks {
        match result {
            Ok(status) => report.insert(name.into(), status.into()),
            Err(reason) => return Err(ApiError::unavailable(format!("{name} is not ready: {reason}"))),
        };
    }
    Ok(Json(json!({"status": "ready", "checks": report})).into_response())
}

async fn check(ping: impl Future<Output = Result<()>>) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.detail().to_owned()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}
