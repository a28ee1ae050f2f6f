//! Events as Server-Sent Events text, rendered once and shared by every subscriber.

use bytes::Bytes;
use chatsys_core::ports::MessageChange;
use chatsys_core::{ChatNumber, Position};
use serde_json::json;

use crate::views::MessageView;

fn event(position: Position, name: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {position}\nevent: {name}\ndata: {data}\n\n"))
}

/// A message as it is after a change, or its deletion.
pub fn change(chat: ChatNumber, change: &MessageChange) -> Bytes {
    match &change.message {
        Some(message) => {
            let data = serde_json::to_string(&MessageView::from(message)).expect("views serialize");
            event(change.position, "message", &data)
        }
        None => {
            let data = json!({"number": change.number.get(), "chat_number": chat.get()});
            event(change.position, "deleted", &data.to_string())
        }
    }
}

/// The chat itself was deleted: the last event of its streams.
pub fn chat_deleted(chat: ChatNumber, position: Position) -> Bytes {
    event(position, "deleted", &json!({"chat_number": chat.get()}).to_string())
}

/// The first event of a fresh subscription: where it starts.
pub fn ready(position: Position) -> Bytes {
    event(position, "ready", "{}")
}
