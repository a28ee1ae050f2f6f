//! The create pipeline's consumer, shared by both run modes: take deliveries in batches
//! ([`chatsys_queue::batcher`]), write each batch in one transaction ([`consumer`]),
//! acknowledge, and keep the counts honest ([`reconcile`]). In distributed mode a worker
//! holds what it took until it is settled (`chatsys_queue::hold`).

pub mod consumer;
pub mod reconcile;

pub use chatsys_queue::batcher::BatchConfig;
pub use consumer::{Consumer, Outcome, Patience};
