//! `GET /openapi.json` and the Swagger UI at `/docs`, served from assets compiled into the
//! binary (no internet access needed).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

const OPENAPI_PATH: &str = "/openapi.json";

fn config() -> Arc<Config<'static>> {
    Arc::new(Config::from(OPENAPI_PATH))
}

/// The UI's page. Served at `/docs` itself (no redirect), so its relative asset links are
/// anchored at `/docs/` with a `<base>` element.
pub async fn page() -> Response {
    match utoipa_swagger_ui::serve("index.html", config()) {
        Ok(Some(file)) => {
            let html = String::from_utf8_lossy(&file.bytes).replacen("<head>", "<head>\n  <base href=\"/docs/\">", 1);
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        _ => ApiError::internal().into_response(),
    }
}

/// The page's own scripts and styles only (Swagger UI's page has an inline script and inline
/// styles), no framing, no content sniffing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'self'; form-action 'self'";

/// The security headers of every `/docs` answer.
pub async fn security_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    response
}

/// The UI's assets.
pub async fn asset(Path(rest): Path<String>) -> Response {
    match utoipa_swagger_ui::serve(&rest, config()) {
        Ok(Some(file)) => {
            let mut response = ([(header::CONTENT_TYPE, file.content_type)], file.bytes.into_owned()).into_response();
            if file.gzpipped {
                response.headers_mut().insert(header::CONTENT_ENCODING, "gzip".parse().expect("static header"));
            }
            response
        }
        Ok(None) => ApiError::not_found("no such documentation asset").into_response(),
        Err(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "documentation asset unavailable").into_response(),
    }
}

pub fn openapi_path() -> &'static str {
    OPENAPI_PATH
}
