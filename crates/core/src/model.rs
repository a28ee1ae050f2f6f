//! What the store hands back. Internal ids stay out of these, except [`AppId`] on the
//! application, which the server needs to address its chats and never shows.

use crate::ids::{AppId, AppToken, ChatNumber, MessageNumber};
use crate::text::AppName;
use crate::time::Timestamp;

/// An application as it is about to be written: every field chosen by the server but the name.
#[derive(Debug, Clone)]
pub struct NewApplication {
    pub token: AppToken,
    pub name: AppName,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: AppId,
    pub token: AppToken,
    pub name: String,
    pub chats_count: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub number: ChatNumber,
    pub messages_count: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub chat_number: ChatNumber,
    pub number: MessageNumber,
    pub body: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
