//! Number allocation ([`chatsys_core::ports::Numbering`]) and idempotency-key coordination
//! ([`chatsys_core::ports::IdempotencyKeys`]): in-process for embedded mode, Redis for
//! distributed mode.

pub mod idempotency;
pub mod in_process;
pub mod redis;

pub use idempotency::{LocalIdempotencyKeys, RedisIdempotencyKeys};
pub use in_process::InProcessNumbering;
pub use redis::{RedisNumbering, RedisNumberingConfig};
