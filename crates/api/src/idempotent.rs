//! The shape every create shares: run to completion even if the client goes away (a number
//! handed out must end as a stored item or a voided one, never as a silent gap), and honour
//! `Idempotency-Key` (one request per key at a time, a repeat gets the first answer).

use std::future::Future;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatsys_core::ports::Claim;
use chatsys_core::{IdempotencyRecord, Timestamp};
use sha2::{Digest, Sha256};

use crate::durable;
use crate::error::ApiError;
use crate::state::AppState;

/// A successful create: where the item lives and its JSON.
pub struct Created {
    pub location: String,
    pub body: String,
}

/// A claimed idempotency key, waiting for the response it will be remembered with.
#[derive(Clone)]
pub struct Pending {
    scope: String,
    key: String,
    fingerprint: String,
    at: Timestamp,
}

impl Pending {
    pub fn record(&self, created: &Created) -> IdempotencyRecord {
        IdempotencyRecord {
            scope: self.scope.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            status: StatusCode::CREATED.as_u16(),
            location: created.location.clone(),
            body: created.body.clone(),
            created_at: self.at,
        }
    }
}

/// A digest of a request as understood: the kind of item and its validated content.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An `Idempotency-Key` with the [`fingerprint`] of its request (taken only when a key is
/// given: most creates have none).
pub fn keyed(key: Option<String>, request: &[&str]) -> Option<(String, String)> {
    key.map(|key| (key, fingerprint(request)))
}

/// Runs `create` once per idempotency key (or always, without one), to its end even if the
/// client goes away ([`durable::to_the_end`]).
pub async fn create_once<F, Fut>(
    kind: &'static str,
    state: AppState,
    scope: String,
    key: Option<(String, String)>,
    create: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(AppState, Option<Pending>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Created, ApiError>> + Send + 'static,
{
    durable::to_the_end(async move {
        let Some((key, fingerprint)) = key else {
            let created = create(state, None).await?;
            metrics::counter!("chatsys_creates_total", "kind" => kind).increment(1);
            return Ok(created_response(&created.location, created.body, false));
        };
        match state.idempotency.claim(&scope, &key).await? {
            Claim::Done(record) if record.fingerprint == fingerprint => {
                Ok(created_response(&record.location, record.body, true))
            }
            Claim::Done(_) => {
                Err(ApiError::unprocessable("this Idempotency-Key was already used with a different request body"))
            }
            Claim::InFlight => {
                Err(ApiError::conflict("a request with this Idempotency-Key is still being processed; retry shortly"))
            }
            Claim::Claimed => {
                let pending = Pending { scope: scope.clone(), key: key.clone(), fingerprint, at: Timestamp::now() };
                match create(state.clone(), Some(pending.clone())).await {
                    Ok(created) => {
                        let record = pending.record(&created);
                        metrics::counter!("chatsys_creates_total", "kind" => kind).increment(1);
                        if let Err(e) = state.idempotency.complete(&record).await {
                            // the item exists and its record is stored with it: the client
                            // gets its 201, a repeat finds the record in the store
                            tracing::warn!(error = %e, "idempotency key not marked complete");
                        }
                        Ok(created_response(&created.location, created.body, false))
                    }
                    Err(e) => {
                        state.idempotency.release(&scope, &key).await;
                        Err(e)
                    }
                }
            }
        }
    })
    .await
}

fn created_response(location: &str, body: String, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
