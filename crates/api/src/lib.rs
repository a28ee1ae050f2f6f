//! The HTTP layer: one handler per verb and resource under [`routes`], the problem documents
//! of [`error`], and the extractors of [`extract`] that turn bad input into clear 4xx answers.

mod body_limit;
pub mod cursor;
mod docs;
mod durable;
mod error;
mod extract;
mod idempotent;
pub mod live;
pub mod metrics;
mod openapi;
mod router;
mod routes;
pub mod server;
mod state;
mod views;

pub use error::ApiError;
pub use router::{openapi, router, worker_router};

pub use state::{AppState, RequestLimits, SearchLimits, Services};
