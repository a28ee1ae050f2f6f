//! RFC 9457 problem documents. Every error answer of the API, including the ones axum makes
//! by itself (unknown path, wrong method, oversized body), has this shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatsys_core::{Error, ErrorKind};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
    /// Seconds to wait before trying again (429); a 503 always asks for one second.
    retry_after: Option<u64>,
    /// The burst of the rate limit that answered 429.
    limit: Option<u32>,
}

/// An RFC 9457 problem document: every error answer has this shape.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422, "detail": "name must not be empty or blank"}))]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The status's reason phrase.
    title: &'static str,
    status: u16,
    /// What was wrong, in plain words: which field, which limit, which resource.
    detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), retry_after: None, limit: None }
    }

    /// 429: the application's rate limit is used up for `wait`.
    pub fn too_many_requests(wait: std::time::Duration, rate: chatsys_core::ports::Rate) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let detail = format!(
            "this application's rate limit ({}/s, bursts of {}) is used up; try again in {} s",
            rate.per_second,
            rate.burst,
            seconds.max(1)
        );
        Self {
            retry_after: Some(seconds.max(1)),
            limit: Some(rate.burst),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the server failed to answer; the failure is logged")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Port errors become problems here, and only here is their cause logged.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let cause = std::error::Error::source(&e).map(|s| s.to_string());
        match e.kind() {
            ErrorKind::NotFound => Self::not_found(e.detail()),
            ErrorKind::Invalid => Self::unprocessable(e.detail()),
            ErrorKind::Conflict => Self::conflict(e.detail()),
            ErrorKind::Unavailable => {
                tracing::warn!(error = e.detail(), cause, "dependency unavailable");
                Self::unavailable(e.detail())
            }
            ErrorKind::Internal => {
                // details are written by this code base (the driver's text is the source)
                tracing::error!(error = e.detail(), cause, "internal error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.detail())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = problem_response(self.status, &self.detail);
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            // the fields of the IETF draft "RateLimit header fields for HTTP"
            headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("ratelimit-reset", HeaderValue::from(seconds));
        }
        if let Some(limit) = self.limit {
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
        }
        response
    }
}

pub fn problem_response(status: StatusCode, detail: &str) -> Response {
    let problem = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail: detail.to_owned(),
    };
    let mut response = (status, Json(problem)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    response
}
