//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations, and
//! the shared parts they refer to: path and query parameters, and one reusable response per
//! kind of problem.

#![expect(dead_code, reason = "these types exist for their schema; their fields are never read")]

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

use crate::error::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatsys",
        description = "Numbered chats and messages per application, searchable by partial text. \
            Numbers are never handed out twice; a create answers 201 once it is durable. \
            Errors are RFC 9457 problem documents (`application/problem+json`).",
    ),
    tags(
        (name = "applications", description = "Applications, each named by a server-made token"),
        (name = "chats", description = "Chats, numbered from 1 within an application"),
        (name = "messages", description = "Messages, numbered from 1 within a chat, and search"),
        (name = "events", description = "Live events of a chat (Server-Sent Events), resumable with nothing missed"),
        (name = "operations", description = "Health, readiness and metrics"),
    ),
    components(
        schemas(Problem),
        responses(BadRequest, Unauthorized, NotFound, InFlight, TooLarge, NotJson, Unprocessable, Unavailable),
    ),
    modifiers(&AdminToken),
)]
pub struct ApiDoc;

/// The bearer scheme that guards `GET /applications` when an admin token is configured.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The server's CHATSYS_ADMIN_TOKEN"))
                    .build(),
            ),
        );
    }
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenParam {
    /// The application's token
    #[param(example = "pkOhfjpmyK6AbgTy0NgZrLjd1GcGrQhh")]
    token: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChatParam {
    /// The chat's number within the application
    #[param(minimum = 1, maximum = 9223372036854775807_i64, example = 1)]
    chat: i64,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessageParam {
    /// The message's number within the chat
    #[param(minimum = 1, maximum = 9223372036854775807_i64, example = 1)]
    message: i64,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: Option<u32>,
    /// The cursor from the previous page's `Link: <…>; rel="next"` (opaque; anything else is 400)
    after: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Whitespace-separated terms; each must occur in the body as a case-insensitive substring
    #[param(min_length = 1, max_length = 256, pattern = "\\S", example = "ell wor")]
    q: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes a create safe to repeat for 24 hours: a repeat on the same path answers the first
    /// response, the same key with another body 422, a repeat while the first runs 409.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    idempotency_key: Option<String>,
}

/// The optional body of a chat create.
#[derive(ToSchema)]
pub struct EmptyObject {}

#[derive(ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    status: String,
}

#[derive(ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    status: String,
    /// Each dependency: `ok` or `not configured`
    #[schema(example = json!({"store": "ok", "queue": "ok", "numbering": "ok", "search": "ok"}))]
    checks: std::collections::HashMap<String, String>,
}

/// The request is malformed: not JSON, a path number that is not a positive integer, a bad
/// `limit`, an `after` cursor the server did not issue, an invalid `Idempotency-Key`, a bad `q`
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(Problem);

/// Listing applications needs `Authorization: Bearer <admin token>`
#[derive(ToResponse)]
#[response(content_type = "application/problem+json", headers(("WWW-Authenticate" = String)))]
pub struct Unauthorized(Problem);

/// No such application, chat or message (one created a moment ago may not be readable yet)
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(Problem);

/// A request with this `Idempotency-Key` is still being processed
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct InFlight(Problem);

/// The body is larger than the server accepts (256 KiB by default)
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct TooLarge(Problem);

/// A body must be sent with `Content-Type: application/json`
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotJson(Problem);

/// The JSON is well-formed but a field is missing, of the wrong type, blank or too long, or an
/// `Idempotency-Key` was reused with another body
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unprocessable(Problem);

/// A dependency (store, queue, search) cannot answer; nothing was created. Retry later
#[derive(ToResponse)]
#[response(content_type = "application/problem+json", headers(("Retry-After" = String, description = "Seconds to wait")))]
pub struct Unavailable(Problem);
