//! Where a request goes.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{from_fn, map_request, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, problem_response};
use crate::openapi::ApiDoc;
use crate::routes::{applications, chats, events, health, messages, search};
use crate::state::AppState;
use crate::{body_limit, docs, metrics};

/// The API with its OpenAPI document, built from the same handler annotations.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(applications::create, applications::list))
        .routes(routes!(applications::get, applications::update, applications::delete))
        .routes(routes!(chats::create, chats::list))
        .routes(routes!(chats::get, chats::delete))
        .routes(routes!(messages::create, messages::list))
        .routes(routes!(search::search))
        .routes(routes!(messages::get, messages::update, messages::delete))
        .routes(routes!(events::stream))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
}

/// The OpenAPI document as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let limits = state.request_limits;
    metrics::handle();
    let (api, openapi) = api().split_for_parts();
    let openapi = Arc::new(openapi.to_json().expect("the OpenAPI document serializes"));
    let x_request_id = HeaderName::from_static("x-request-id");
    let cors = cors(&state.cors_origins);
    api.route(
        docs::openapi_path(),
        get(move || {
            let openapi = openapi.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], openapi.as_ref().clone()) }
        }),
    )
    .merge(
        Router::new()
            .route("/docs", get(docs::page))
            .route("/docs/{*rest}", get(docs::asset))
            .layer(from_fn(docs::security_headers)),
    )
    .fallback(unknown_path)
    .layer(DefaultBodyLimit::max(body_limit))
    // a body that dribbles in too slowly fails its read (408); an answer that takes too long
    // is given up (503: the work it waited on was bounded too, or nothing is lost)
    .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
    .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
    .layer(from_fn(move |request, next| body_limit::refuse_large_body(body_limit, limits.body_timeout, request, next)))
    .layer(from_fn(metrics::track))
    .layer(from_fn(refuse_oversized))
    .layer(
        ServiceBuilder::new()
            .layer(map_request(drop_bad_request_id))
            .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(request_span))
            .layer(PropagateRequestIdLayer::new(x_request_id)),
    )
    .layer(map_response(problems_for_bare_errors))
    // outermost: a browser's preflight is answered before routing (else it would be a 405)
    .layer(tower::util::option_layer(cors))
    .with_state(state)
}

/// CORS for the origins a browser client may call from (`*`: any); none, no CORS at all.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    use axum::http::{HeaderValue, Method};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let header = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header("idempotency-key"),
                header("last-event-id"),
                header("x-request-id"),
            ])
            .expose_headers([
                header::LINK,
                header::RETRY_AFTER,
                header("x-request-id"),
                header("ratelimit-limit"),
                header("ratelimit-remaining"),
                header("ratelimit-reset"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The longest request target (path and query) a server takes, in bytes.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) a server takes.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// A request target or headers larger than any client of this API needs get a problem
/// document here (414, 431), well below hyper's own limits, whose answers have no body.
async fn refuse_oversized(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let uri = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        let detail = format!("the request target is {uri} bytes long; at most {MAX_URI_BYTES} are taken");
        return problem_response(StatusCode::URI_TOO_LONG, &detail);
    }
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if headers > MAX_HEADER_BYTES {
        let detail = format!("the request headers take {headers} bytes; at most {MAX_HEADER_BYTES} are taken");
        return problem_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &detail);
    }
    next.run(request).await
}

/// What a worker process serves: `/healthz` and `/metrics`.
pub fn worker_router() -> Router {
    metrics::handle();
    Router::new().route("/healthz", get(health::healthz)).route("/metrics", get(metrics::render)).fallback(unknown_path)
}

/// A client's `X-Request-Id` is kept (and echoed) only when it is 1–128 visible ASCII
/// characters; otherwise the server makes a new one.
async fn drop_bad_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let bad = request
        .headers()
        .get("x-request-id")
        .is_some_and(|v| v.is_empty() || v.len() > 128 || !v.as_bytes().iter().all(|b| b.is_ascii_graphic()));
    if bad {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Every log line of a request carries its id, method and route template (never the path
/// itself: it holds the token). The id is quoted: it comes from the client.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let route = request.extensions().get::<axum::extract::MatchedPath>().map_or("", |p| p.as_str());
    tracing::info_span!("request", request_id = ?id, method = %request.method(), route = %route)
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
        StatusCode::SERVICE_UNAVAILABLE => "the request took longer than the server allows; retry shortly",
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
