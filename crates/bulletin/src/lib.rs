//! Where news is announced ([`chatsys_core::ports::Bulletin`]): chats that moved to a new
//! position, applications erased. In this process for embedded mode; Redis pub/sub for
//! distributed mode (one subscription per process, not per client).

pub mod in_process;
pub mod redis;

pub use in_process::InProcessBulletin;
pub use redis::RedisBulletin;
