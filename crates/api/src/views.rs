//! The JSON shapes of API.md's resources. Internal ids have no field here.

use chatsys_core::{Application, Chat, Message, NewApplication};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplicationView {
    pub token: String,
    pub name: String,
    pub chats_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Application> for ApplicationView {
    fn from(a: &Application) -> Self {
        Self {
            token: a.token.to_string(),
            name: a.name.clone(),
            chats_count: a.chats_count,
            created_at: a.created_at.to_rfc3339(),
            updated_at: a.updated_at.to_rfc3339(),
        }
    }
}

impl From<&NewApplication> for ApplicationView {
    fn from(a: &NewApplication) -> Self {
        Self {
            token: a.token.to_string(),
            name: a.name.as_str().to_owned(),
            chats_count: 0,
            created_at: a.at.to_rfc3339(),
            updated_at: a.at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChatView {
    pub number: u64,
    pub messages_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Chat> for ChatView {
    fn from(c: &Chat) -> Self {
        Self {
            number: c.number.get(),
            messages_count: c.messages_count,
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MessageView {
    pub number: u64,
    pub chat_number: u64,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            number: m.number.get(),
            chat_number: m.chat_number.get(),
            body: m.body.clone(),
            created_at: m.created_at.to_rfc3339(),
            updated_at: m.updated_at.to_rfc3339(),
        }
    }
}

/// A search hit: the message and its body with every match marked.
#[derive(Debug, Serialize, Deserialize)]
pub struct SearchHitView {
    #[serde(flatten)]
    pub message: MessageView,
    /// The body, HTML-escaped, with each match wrapped in `<mark>…</mark>`.
    pub highlight: String,
}

/// The body of `POST /applications` and `PUT /applications/{token}`.
#[derive(Debug, Deserialize)]
pub struct NameInput {
    pub name: String,
}

/// The body of `POST …/messages` and `PUT …/messages/{number}`.
#[derive(Debug, Deserialize)]
pub struct BodyInput {
    pub body: String,
}
