//! The create pipeline's queue: [`chatsys_core::ports::CreateQueue`] for producers and
//! [`chatsys_core::ports::CommandSource`] for the worker; in-process for embedded mode,
//! RabbitMQ for distributed mode. Both sides gather items with the one [`batcher`].

pub mod batcher;
pub mod hold;
pub mod in_process;
pub mod rabbitmq;

pub use batcher::BatchConfig;
