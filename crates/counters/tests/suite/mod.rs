//! The numbering contract, written once and run against every backend: each backend's test
//! file calls `numbering_contract!(open)` with a function that opens a fresh numbering over
//! a fresh store (both returned, plus whatever must live as long as they do).

use std::sync::Arc;

use chatsys_core::ports::{Numbering, Store};
use chatsys_core::{AppId, AppName, AppToken, ChatNumber, MessageNumber, NewApplication, Timestamp};

#[macro_export]
macro_rules! numbering_contract {
    ($open:path) => {
        $crate::numbering_contract!($open;
            sixty_four_racing_tasks_get_exactly_one_to_n,
            a_message_number_needs_a_chat_that_exists,
            a_voided_number_never_exists,
        );
    };
    ($open:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let (numbering, store, _guard) = $open().await;
                suite::$name(numbering, store).await;
            }
        )+
    };
}

pub async fn new_app(store: &dyn Store) -> AppId {
    let new =
        NewApplication { token: AppToken::generate(), name: AppName::parse("suite").unwrap(), at: Timestamp::now() };
    store.create_application(&new, None).await.unwrap().id
}

fn chat(n: u64) -> ChatNumber {
    ChatNumber::new(n).unwrap()
}

pub async fn sixty_four_racing_tasks_get_exactly_one_to_n(numbering: Arc<dyn Numbering>, store: Arc<dyn Store>) {
    let app = new_app(store.as_ref()).await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let numbering = numbering.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..20 {
                    got.push(numbering.next_chat(app).await.unwrap().get());
                }
                got
            })
        })
        .collect();
    let mut chats: Vec<u64> = Vec::new();
    for t in tasks {
        chats.extend(t.await.unwrap());
    }
    chats.sort_unstable();
    assert_eq!(chats, (1..=1280).collect::<Vec<_>>());

    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let numbering = numbering.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..20 {
                    got.push(numbering.next_message(app, chat(5)).await.unwrap().expect("chat 5 exists").get());
                }
                got
            })
        })
        .collect();
    let mut messages: Vec<u64> = Vec::new();
    for t in tasks {
        messages.extend(t.await.unwrap());
    }
    messages.sort_unstable();
    assert_eq!(messages, (1..=1280).collect::<Vec<_>>());
}

pub async fn a_message_number_needs_a_chat_that_exists(numbering: Arc<dyn Numbering>, store: Arc<dyn Store>) {
    let app = new_app(store.as_ref()).await;
    let other = new_app(store.as_ref()).await;
    assert_eq!(numbering.next_message(app, chat(1)).await.unwrap(), None);
    assert!(!numbering.chat_exists(app, chat(1)).await.unwrap());
    assert_eq!(numbering.next_chat(app).await.unwrap(), chat(1));
    assert!(numbering.chat_exists(app, chat(1)).await.unwrap());
    assert!(!numbering.chat_exists(app, chat(2)).await.unwrap());
    assert!(!numbering.chat_exists(other, chat(1)).await.unwrap(), "chats are per application");
    let first = numbering.next_message(app, chat(1)).await.unwrap();
    assert_eq!(first, Some(MessageNumber::new(1).unwrap()));
    assert!(numbering.message_exists(app, chat(1), MessageNumber::new(1).unwrap()).await.unwrap());
    assert!(!numbering.message_exists(app, chat(1), MessageNumber::new(2).unwrap()).await.unwrap());
    assert_eq!(numbering.next_message(app, chat(2)).await.unwrap(), None);
    assert_eq!(numbering.next_chat(other).await.unwrap(), chat(1), "each application counts from 1");
}

pub async fn a_voided_number_never_exists(numbering: Arc<dyn Numbering>, store: Arc<dyn Store>) {
    let app = new_app(store.as_ref()).await;
    let one = numbering.next_chat(app).await.unwrap();
    let two = numbering.next_chat(app).await.unwrap();
    numbering.void_chat(app, two).await.unwrap();
    assert!(!numbering.chat_exists(app, two).await.unwrap());
    assert_eq!(numbering.next_message(app, two).await.unwrap(), None);
    assert_eq!(numbering.next_chat(app).await.unwrap(), chat(3), "a voided number is skipped, not reused");
    let m1 = numbering.next_message(app, one).await.unwrap().unwrap();
    numbering.void_message(app, one, m1).await.unwrap();
    assert!(!numbering.message_exists(app, one, m1).await.unwrap());
    assert_eq!(numbering.next_message(app, one).await.unwrap().unwrap().get(), 2);
}
