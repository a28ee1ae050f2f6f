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
