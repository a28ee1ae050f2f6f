//! Number allocation ([`chatsys_core::ports::Numbering`]) and idempotency-key coordination
//! ([`chatsys_core::ports::IdempotencyKeys`]): in-process for embedded mode.

pub mod idempotency;
pub mod in_process;

pub use idempotency::LocalIdempotencyKeys;
pub use in_process::InProcessNumbering;
