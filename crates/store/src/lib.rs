//! The source of truth behind [`chatsys_core::ports::Store`]: SQLite for embedded mode.
//! Each backend keeps its own migrations under `migrations/<backend>/`.

mod error;
pub mod sqlite;

pub use sqlite::SqliteStore;
