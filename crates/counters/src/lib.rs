//! Number allocation ([`chatsys_core::ports::Numbering`]): one algorithm ([`floor`]) over
//! counters in this process (embedded mode) or in Redis (distributed mode); and
//! idempotency-key coordination ([`chatsys_core::ports::IdempotencyKeys`]), in-process or
//! in Redis; the rate limit of application tokens ([`rate_limit`]), likewise; and the
//! holds of distributed mode's workers and API servers, which Redis numbering's recovery
//! after a data loss (`recovery.rs`) waits for ([`holds`]).

pub mod floor;
pub mod holds;
pub mod idempotency;
pub mod in_process;
pub mod rate_limit;
mod recovery;
pub mod redis;

pub use floor::FloorNumbering;
pub use holds::RedisHolds;
pub use idempotency::{LocalIdempotencyKeys, RedisIdempotencyKeys};
pub use in_process::InProcessNumbering;
pub use redis::{RedisNumbering, RedisNumberingConfig};
