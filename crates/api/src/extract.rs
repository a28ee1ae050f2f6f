//! Extractors that give every kind of bad input its status from API.md's table and a detail
//! that names what was wrong.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::cursor::Cursor;
use crate::error::ApiError;

/// A JSON request body deserialized into `T`: 415 without a JSON content type, 413 over the
/// size limit, 400 when it is not JSON, 422 when it is JSON of the wrong shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json_content_type(req.headers())?;
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body that may be absent (or `null`); when present it must be a JSON object (its fields
/// are ignored).
pub struct OptionalJsonObject;

impl<S: Send + Sync> FromRequest<S> for OptionalJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self);
        }
        require_json_content_type(&headers)?;
        if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_null()) {
            return Ok(Self);
        }
        parse_json::<serde_json::Value>(&bytes)?;
        Ok(Self)
    }
}

fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be sent with Content-Type: application/json",
        ))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection: BytesRejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts")
        } else if caused_by_timeout(&rejection) {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive within the server's time limit")
        } else {
            ApiError::bad_request(format!("the request body could not be read: {}", rejection.body_text()))
        }
    })
}

fn caused_by_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Syntax first (400), then shape (422): a body that is not JSON at all is a 400 even when
/// its first object already lacks a field.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    // every body of this API is an object (serde would also take a struct from an array)
    if !value.is_object() {
        return Err(ApiError::unprocessable("the request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        ApiError::unprocessable(format!("{at}{}", without_position(e.inner())))
    })
}

/// serde_json appends "at line 1 column 12" to data errors; the field path says more.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Path segments as text, so that each can be parsed into its domain type with the right
/// status (a malformed number is 400, an unknown token 404).
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(t)| Segments(t)).map_err(|e: PathRejection| {
            ApiError::bad_request(format!("the request path is malformed: {}", e.body_text()))
        })
    }
}

/// `limit` and `after` of a list request.
pub struct Paging {
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl Paging {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 1000;
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let mut limit = None;
        let mut after = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => limit = Some(value.into_owned()),
                "after" => after = Some(value.into_owned()),
                _ => {}
            }
        }
        let limit = match limit {
            None => Self::DEFAULT_LIMIT,
            Some(text) => text.parse::<u32>().ok().filter(|n| (1..=Self::MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be an integer from 1 to {}, not '{}'",
                    Self::MAX_LIMIT,
                    text.chars().take(40).collect::<String>()
                ))
            })?,
        };
        // `after=` with no value is the first page, as if it were absent
        let after = after.filter(|text| !text.is_empty()).map(|text| Cursor::decode(&text)).transpose()?;
        Ok(Self { limit, after })
    }
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else { return Ok(Self(None)) };
        let invalid = || {
            ApiError::bad_request(format!(
                "Idempotency-Key must be one header of 1 to {} visible ASCII characters",
                Self::MAX_LEN
            ))
        };
        if values.next().is_some() {
            return Err(invalid());
        }
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(invalid());
        }
        Ok(Self(Some(String::from_utf8_lossy(bytes).into_owned())))
    }
}
