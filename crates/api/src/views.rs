//! The JSON shapes of API.md's resources. Internal ids have no field here.

use chatsys_core::{Application, Chat, Message, NewApplication};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An application, named by its server-made token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Application)]
pub struct ApplicationView {
    /// Made by the server: URL-safe, 192 random bits. The application's only name in URLs.
    #[schema(example = "pkOhfjpmyK6AbgTy0NgZrLjd1GcGrQhh", pattern = "^[A-Za-z0-9_-]+$")]
    pub token: String,
    #[schema(example = "My app", min_length = 1, max_length = 255)]
    pub name: String,
    /// Chats in the application; may lag creates by seconds (exact within an hour).
    #[schema(example = 2)]
    pub chats_count: u64,
    #[schema(format = DateTime, example = "2026-11-27T16:42:59.123456Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2026-11-27T16:42:59.123456Z")]
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

/// A chat, numbered from 1 within its application.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Chat)]
pub struct ChatView {
    #[schema(example = 1, minimum = 1)]
    pub number: u64,
    /// Messages in the chat; may lag creates by seconds (exact within an hour).
    #[schema(example = 14)]
    pub messages_count: u64,
    #[schema(format = DateTime, example = "2026-11-27T16:42:59.123456Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2026-11-27T16:42:59.123456Z")]
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

/// A message, numbered from 1 within its chat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView {
    #[schema(example = 3, minimum = 1)]
    pub number: u64,
    #[schema(example = 1, minimum = 1)]
    pub chat_number: u64,
    #[schema(example = "hello world")]
    pub body: String,
    #[schema(format = DateTime, example = "2026-11-27T16:42:59.123456Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2026-11-27T16:42:59.123456Z")]
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = SearchHit)]
pub struct SearchHitView {
    #[serde(flatten)]
    pub message: MessageView,
    /// The body, HTML-escaped, with each match wrapped in `<mark>…</mark>`.
    #[schema(example = "<mark>hello</mark> world")]
    pub highlight: String,
}

/// The body of `POST /applications` and `PUT /applications/{token}`. Other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ApplicationInput)]
pub struct NameInput {
    /// 1–255 characters (code points), not only whitespace; stored trimmed.
    #[schema(example = "My app", min_length = 1, max_length = 255, pattern = "\\S")]
    pub name: String,
}

/// The body of `POST …/messages` and `PUT …/messages/{number}`. Other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = MessageInput)]
pub struct BodyInput {
    /// 1–10,000 characters (code points), not only whitespace; kept exactly as sent.
    #[schema(example = "hello world", min_length = 1, max_length = 10000, pattern = "\\S")]
    pub body: String,
}
