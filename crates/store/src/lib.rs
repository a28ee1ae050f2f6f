//! The source of truth behind [`chatsys_core::ports::Store`]: SQLite for embedded mode,
//! MySQL for distributed mode. Both write batches with the one algorithm in [`batch`] over
//! their own primitives; each backend keeps its own migrations under `migrations/<backend>/`.

mod batch;
pub mod deadline;
mod error;
pub mod mysql;
pub mod sqlite;

pub use deadline::Deadline;
pub use mysql::MySqlStore;
pub use sqlite::SqliteStore;
