//! Where a request body over the server's limit is refused (413), after it is read.
//!
//! A server that answers and closes with request bytes unread makes its kernel reset the
//! connection: a proxy still writing the body (nginx) then loses the 413 and answers 502,
//! and a client may see the reset instead of the answer. So the body is read and dropped
//! first (up to [`DRAIN_MAX_BYTES`], within the body timeout; not when the client waits for
//! `100 Continue` before sending it), and the connection even serves the next request.

use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::BytesMut;
use futures::StreamExt as _;

use crate::error::problem_response;

/// The most of an oversized body read (and dropped) before its 413: more than a proxy in
/// front lets through (`deploy/nginx.conf`: 1 MiB).
const DRAIN_MAX_BYTES: usize = 4 << 20;

/// A body declared over `limit` (`Content-Length`) is refused at once; a chunked body (no
/// declared length) is read here up to `limit` and handed on whole, or refused once over it.
pub(crate) async fn refuse_large_body(limit: usize, timeout: Duration, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let drain = !headers.contains_key(header::EXPECT);
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(declared) if declared > limit as u64 => {
            if drain && declared <= DRAIN_MAX_BYTES as u64 {
                drop_the_rest(request.into_body().into_data_stream(), DRAIN_MAX_BYTES, timeout).await;
            }
            too_large(&format!("the request body is {declared} bytes long; at most {limit} are taken"))
        }
        None if chunked(headers) => {
            let (parts, body) = request.into_parts();
            let mut chunks = body.into_data_stream();
            let mut taken = BytesMut::new();
            let read = tokio::time::timeout(timeout, async {
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk?;
                    if taken.len() + chunk.len() > limit {
                        return Ok(false);
                    }
                    taken.extend_from_slice(&chunk);
                }
                Ok::<_, axum::Error>(true)
            })
            .await;
            match read {
                Ok(Ok(true)) => next.run(Request::from_parts(parts, Body::from(taken.freeze()))).await,
                Ok(Ok(false)) => {
                    if drain {
                        drop_the_rest(chunks, DRAIN_MAX_BYTES.saturating_sub(limit), timeout).await;
                    }
                    too_large(&format!("the request body is longer than {limit} bytes; at most {limit} are taken"))
                }
                Ok(Err(e)) => {
                    problem_response(StatusCode::BAD_REQUEST, &format!("the request body could not be read: {e}"))
                }
                Err(_) => problem_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive within the server's time limit",
                ),
            }
        }
        _ => next.run(request).await,
    }
}

fn chunked(headers: &HeaderMap) -> bool {
    headers.get_all(header::TRANSFER_ENCODING).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
}

/// Reads and drops up to `most` more bytes of a body, for at most `timeout`.
async fn drop_the_rest(mut chunks: BodyDataStream, most: usize, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        let mut dropped = 0;
        while let Some(Ok(chunk)) = chunks.next().await {
            dropped += chunk.len();
            if dropped > most {
                return;
            }
        }
    })
    .await;
}

fn too_large(detail: &str) -> Response {
    problem_response(StatusCode::PAYLOAD_TOO_LARGE, detail)
}
