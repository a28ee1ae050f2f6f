//! The create pipeline's queue: [`chatsys_core::ports::CreateQueue`] for producers and
//! [`chatsys_core::ports::CommandSource`] for the worker. In-process for embedded mode.

pub mod in_process;
pub mod rabbitmq;
