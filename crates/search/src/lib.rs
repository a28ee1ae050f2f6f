//! Exact substring search per chat behind [`chatsys_core::ports::SearchIndex`]: Tantivy for
//! embedded mode, Elasticsearch for distributed mode. What a match is, and how hits are highlighted, lives in
//! [`chatsys_core::search`], so that every backend answers alike.

pub mod elasticsearch;
mod merges;
pub mod ngram;
pub mod tantivy;
mod windowed;

pub use self::elasticsearch::{ElasticConfig, ElasticIndex};
pub use self::tantivy::{TantivyConfig, TantivyIndex};
