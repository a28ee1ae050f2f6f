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
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// 200 when every dependency answers; otherwise 503 naming the first one that does not.
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (store, queue, numbering) =
        tokio::join!(check(state.store.ping()), check(state.queue.ping()), check(state.numbering.ping()),);
    for (name, result) in [("store", store), ("queue", queue), ("numbering", numbering)] {
        if let Err(reason) = result {
            return Err(ApiError::unavailable(format!("{name} is not ready: {reason}")));
        }
    }
    Ok(Json(json!({"status": "ready", "checks": {"store": "ok", "queue": "ok", "numbering": "ok"}})).into_response())
}

async fn check(ping: impl Future<Output = Result<()>>) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.detail().to_owned()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}
