//! The pipeline driven one step at a time: batches by size, acknowledgement after commit,
//! and a clean end when the producers are gone.

use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::{CreateQueue, Store};
use chatsys_core::{AppName, AppToken, ChatNumber, Command, NewApplication, Queued, Timestamp};
use chatsys_queue::in_process;
use chatsys_store::SqliteStore;
use chatsys_worker::{BatchConfig, Consumer, Outcome};

#[tokio::test]
async fn batches_fill_up_to_their_size_and_producers_hear_back_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let new = NewApplication { token: AppToken::generate(), name: AppName::parse("w").unwrap(), at: Timestamp::now() };
    let app = store.create_application(&new, None).await.unwrap().id;
    let (queue, source) = in_process::channel(100, Duration::from_secs(1));
    let config = BatchConfig { max_commands: 2, linger: Duration::from_millis(50) };
    let mut consumer = Consumer::new(Box::new(source), store.clone(), config);

    let submits: Vec<_> = (1..=5)
        .map(|n| {
            let queue = queue.clone();
            let command = Command::CreateChat { app, chat: ChatNumber::new(n).unwrap(), at: Timestamp::now() };
            tokio::spawn(async move { queue.submit(Queued::from(command)).await })
        })
        .collect();
    let mut sizes = Vec::new();
    for _ in 0..3 {
        match consumer.process_next_batch().await {
            Outcome::Written { commands, outcome } => {
                assert_eq!(outcome.chats_created as usize, commands);
                sizes.push(commands);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sizes, [2, 2, 1]);
    for s in submits {
        s.await.unwrap().expect("acknowledged after the commit");
    }
    assert_eq!(store.list_chats(app, None, 10).await.unwrap().len(), 5);

    drop(queue);
    assert!(matches!(consumer.process_next_batch().await, Outcome::Closed));
}
