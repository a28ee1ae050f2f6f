//! The domain of chatsys: identifiers, validated text, the commands that travel the create
//! pipeline and the ports (traits) that every backend implements. Nothing here does I/O.

pub mod command;
pub mod error;
pub mod ids;
pub mod model;
pub mod ports;
pub mod search;
pub mod text;
pub mod time;

pub use command::{Command, IdempotencyRecord, Queued};
pub use error::{Error, ErrorKind, InvalidInput, Result};
pub use ids::{AppId, AppToken, ChatNumber, MessageNumber, Position, Version};
pub use model::{Application, Chat, Message, NewApplication};
pub use search::SearchQuery;
pub use text::{AppName, MessageBody};
pub use time::Timestamp;
