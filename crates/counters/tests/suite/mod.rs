//! The numbering contract, written once and run against every backend: each backend's test
//! file calls `numbering_contract!(open, lose)` with a function that opens a fresh numbering
//! over a fresh store (both returned, plus whatever must live as long as they do; `None`
//! when its server does not answer: the test is skipped), and one
//! that loses that numbering's counters (a restart in embedded mode, a data loss in Redis)
//! and returns a numbering that has recovered.

use std::sync::Arc;

use chatsys_core::ports::{Numbering, Store};
use chatsys_core::{
    AppId, AppName, AppToken, ChatNumber, Command, MessageBody, MessageNumber, NewApplication, Queued, Timestamp,
    Version,
};

#[macro_export]
macro_rules! numbering_contract {
    ($open:path, $lose:path) => {
        $crate::numbering_contract!($open;
            sixty_four_racing_tasks_get_exactly_one_to_n,
            a_message_number_needs_a_chat_that_exists,
            a_voided_number_never_exists,
            versions_increase_with_every_accepted_change,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn after_losing_the_counters_nothing_voided_or_deleted_comes_back() {
            let Some((numbering, store, guard)) = $open().await else { return };
            let lost = suite::before_losing_the_counters(numbering, store.clone()).await;
            suite::after_losing_the_counters(lost, $lose(&guard).await).await;
        }
    };
    ($open:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let Some((numbering, store, _guard)) = $open().await else { return };
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
    assert!(numbering.next_version(app, chat(1), MessageNumber::new(1).unwrap()).await.unwrap().is_some());
    assert_eq!(numbering.next_version(app, chat(1), MessageNumber::new(2).unwrap()).await.unwrap(), None);
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
    assert_eq!(numbering.next_version(app, one, m1).await.unwrap(), None);
    assert_eq!(numbering.next_message(app, one).await.unwrap().unwrap().get(), 2);
}

pub async fn versions_increase_with_every_accepted_change(numbering: Arc<dyn Numbering>, store: Arc<dyn Store>) {
    let app = new_app(store.as_ref()).await;
    let one = numbering.next_chat(app).await.unwrap();
    let m1 = numbering.next_message(app, one).await.unwrap().unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let numbering = numbering.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.push(numbering.next_version(app, one, m1).await.unwrap().expect("the message exists"));
                }
                got
            })
        })
        .collect();
    let mut versions: Vec<Version> = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "versions increase in the order they are taken: {got:?}");
        versions.extend(got);
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 160, "no version is handed out twice");
    assert!(versions[0] > Version(0), "a create is version 0: every change is above it");
}

/// What survives a loss of the counters, written to the store as the pipeline would.
pub struct Lost {
    app: AppId,
    versions_taken: Version,
}

fn message(app: AppId, chat_n: u64, number: u64) -> Queued {
    Command::CreateMessage {
        app,
        chat: chat(chat_n),
        number: MessageNumber::new(number).unwrap(),
        body: MessageBody::parse(format!("m{number}")).unwrap(),
        at: Timestamp::now(),
    }
    .into()
}

/// Chats 1..=3 handed out, 2 voided (its create failed), 3 deleted; chat 1 holds messages
/// 1..=5 of which 2 was voided and 4 deleted; 5 stored, 6 handed out but voided too.
pub async fn before_losing_the_counters(numbering: Arc<dyn Numbering>, store: Arc<dyn Store>) -> Lost {
    let app = new_app(store.as_ref()).await;
    for n in 1..=3 {
        assert_eq!(numbering.next_chat(app).await.unwrap(), chat(n));
    }
    numbering.void_chat(app, chat(2)).await.unwrap();
    for n in 1..=6 {
        assert_eq!(numbering.next_message(app, chat(1)).await.unwrap().unwrap().get(), n);
    }
    numbering.void_message(app, chat(1), MessageNumber::new(2).unwrap()).await.unwrap();
    numbering.void_message(app, chat(1), MessageNumber::new(6).unwrap()).await.unwrap();
    let mut versions_taken = Version(0);
    for _ in 0..3 {
        versions_taken = numbering.next_version(app, chat(1), MessageNumber::new(1).unwrap()).await.unwrap().unwrap();
    }
    let delete = numbering.next_version(app, chat(1), MessageNumber::new(4).unwrap()).await.unwrap().unwrap();
    let at = Timestamp::now();
    let mut batch: Vec<Queued> = vec![
        Command::CreateChat { app, chat: chat(1), at }.into(),
        Command::CreateChat { app, chat: chat(3), at }.into(),
    ];
    batch.extend([1, 3, 4, 5].into_iter().map(|n| message(app, 1, n)));
    batch.push(
        Command::EditMessage {
            app,
            chat: chat(1),
            number: MessageNumber::new(1).unwrap(),
            body: MessageBody::parse("edited".into()).unwrap(),
            at,
            version: versions_taken,
        }
        .into(),
    );
    batch.push(
        Command::DeleteMessage { app, chat: chat(1), number: MessageNumber::new(4).unwrap(), at, version: delete }
            .into(),
    );
    batch.push(Command::DeleteChat { app, chat: chat(3), at }.into());
    store.write_batch(&batch).await.unwrap();
    Lost { app, versions_taken: delete }
}

pub async fn after_losing_the_counters(lost: Lost, numbering: Arc<dyn Numbering>) {
    let app = lost.app;
    let m = |n| MessageNumber::new(n).unwrap();
    assert!(numbering.chat_exists(app, chat(1)).await.unwrap());
    assert!(!numbering.chat_exists(app, chat(2)).await.unwrap(), "a chat voided before the loss stays void");
    assert!(!numbering.chat_exists(app, chat(3)).await.unwrap(), "a deleted chat stays deleted");
    assert_eq!(numbering.next_message(app, chat(3)).await.unwrap(), None);
    assert_eq!(numbering.next_chat(app).await.unwrap(), chat(4), "chat numbers continue after the highest stored");
    assert_eq!(numbering.next_version(app, chat(1), m(2)).await.unwrap(), None, "a voided message stays void");
    assert_eq!(numbering.next_version(app, chat(1), m(4)).await.unwrap(), None, "a deleted message stays deleted");
    let version = numbering.next_version(app, chat(1), m(1)).await.unwrap().expect("message 1 exists");
    assert!(version > lost.versions_taken, "versions continue above the highest stored ({version:?})");
    assert!(numbering.next_version(app, chat(1), m(5)).await.unwrap().is_some());
    assert_eq!(
        numbering.next_message(app, chat(1)).await.unwrap().unwrap().get(),
        6,
        "message numbers continue after the highest stored (6 was voided, never answered)"
    );
}
