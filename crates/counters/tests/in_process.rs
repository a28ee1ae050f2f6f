//! The numbering contract against the in-process counters, plus their seeding from the store.

mod suite;

use std::sync::Arc;

use chatsys_core::ports::{Numbering, Store};
use chatsys_core::{ChatNumber, Command, MessageBody, MessageNumber, Queued, Timestamp};
use chatsys_counters::InProcessNumbering;
use chatsys_store::SqliteStore;
use tempfile::TempDir;

async fn open() -> (Arc<dyn Numbering>, Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    (Arc::new(InProcessNumbering::new(store.clone())), store, dir)
}

numbering_contract!(open);

#[tokio::test]
async fn counters_continue_from_the_store_and_gaps_below_it_stay_void() {
    let (_, store, _dir) = open().await;
    let app = suite::new_app(store.as_ref()).await;
    let c = |n| ChatNumber::new(n).unwrap();
    let at = Timestamp::now();
    // chats 1 and 3 were stored before a restart; 2 was voided (its create failed)
    let mut batch: Vec<Queued> =
        [1, 3].iter().map(|n| Queued::from(Command::CreateChat { app, chat: c(*n), at })).collect();
    batch.extend((1..=4).map(|n| {
        Queued::from(Command::CreateMessage {
            app,
            chat: c(3),
            number: MessageNumber::new(n).unwrap(),
            body: MessageBody::parse(format!("m{n}")).unwrap(),
            at,
        })
    }));
    store.write_batch(&batch).await.unwrap();

    let numbering = InProcessNumbering::new(store.clone());
    assert!(numbering.chat_exists(app, c(1)).await.unwrap());
    assert!(!numbering.chat_exists(app, c(2)).await.unwrap(), "a gap below the stored maximum is not a chat");
    assert_eq!(numbering.next_message(app, c(2)).await.unwrap(), None);
    assert_eq!(numbering.next_message(app, c(3)).await.unwrap().unwrap().get(), 5);
    assert_eq!(numbering.next_message(app, c(1)).await.unwrap().unwrap().get(), 1);
    assert!(numbering.message_exists(app, c(3), MessageNumber::new(4).unwrap()).await.unwrap());
    assert_eq!(numbering.next_chat(app).await.unwrap(), c(4));
    assert!(numbering.chat_exists(app, c(4)).await.unwrap(), "handed out in this process, not yet stored");
}
