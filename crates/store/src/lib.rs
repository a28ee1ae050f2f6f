//! The source of truth behind [`chatsys_core::ports::Store`]: SQLite for embedded mode,
//! MySQL for distributed mode.
//! Each backend keeps its own migrations under `migrations/<backend>/`.

mod error;
pub mod mysql;
mod plan;
pub mod sqlite;

pub use mysql::MySqlStore;
pub use sqlite::SqliteStore;
