//! The store contract, written once and run against every backend: each backend's test file
//! calls `store_contract!(open)` with a function that opens a fresh, empty store (`None`
//! when its server does not answer: the test is skipped, see `chatsys_testkit`).
//!
//! Over 300 lines on purpose: the whole store contract in one place, so every backend runs
//! the same checks.

use chatsys_core::ports::{ChatPosition, ChatSeed, Erasure, Store};
use chatsys_core::{
    AppId, AppName, AppToken, ChatNumber, Command, IdempotencyRecord, MessageBody, MessageNumber, NewApplication,
    Position, Queued, Timestamp, Version,
};

#[macro_export]
macro_rules! store_contract {
    ($open:path) => {
        $crate::store_contract!($open;
            a_redelivered_batch_changes_nothing,
            an_edit_that_overtakes_its_create_still_wins,
            the_highest_version_wins_whatever_the_order_or_the_clocks,
            positions_follow_commits_and_a_replay_carries_each_change_once,
            a_message_delete_is_final_and_keeps_its_number,
            a_chat_delete_erases_its_messages_and_drops_what_comes_later,
            a_message_before_its_chat_creates_the_chat_and_the_create_sets_its_time,
            counts_move_by_the_rows_actually_inserted,
            idempotency_records_are_kept_with_the_batch_and_expire_after_a_day,
            lists_page_in_order_and_seeds_report_the_highest_numbers,
            applications_are_created_renamed_and_listed_in_creation_order,
        );
    };
    ($open:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((store, _guard)) = $open().await else { return };
                suite::$name(store.as_ref()).await;
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

fn msg(n: u64) -> MessageNumber {
    MessageNumber::new(n).unwrap()
}

fn body(s: &str) -> MessageBody {
    MessageBody::parse(s.to_owned()).unwrap()
}

pub fn create_chat(app: AppId, n: u64, at: i64) -> Queued {
    Command::CreateChat { app, chat: chat(n), at: Timestamp::from_micros(at) }.into()
}

pub fn create_message(app: AppId, c: u64, n: u64, text: &str, at: i64) -> Queued {
    Command::CreateMessage { app, chat: chat(c), number: msg(n), body: body(text), at: Timestamp::from_micros(at) }
        .into()
}

/// An edit of version `v`, accepted at `at` (clocks play no part in which edit wins).
pub fn edit_message(app: AppId, c: u64, n: u64, text: &str, at: i64, v: u64) -> Queued {
    Command::EditMessage {
        app,
        chat: chat(c),
        number: msg(n),
        body: body(text),
        at: Timestamp::from_micros(at),
        version: Version(v),
    }
    .into()
}

pub fn delete_message(app: AppId, c: u64, n: u64, at: i64, v: u64) -> Queued {
    Command::DeleteMessage { app, chat: chat(c), number: msg(n), at: Timestamp::from_micros(at), version: Version(v) }
        .into()
}

pub fn delete_chat(app: AppId, c: u64, at: i64) -> Queued {
    Command::DeleteChat { app, chat: chat(c), at: Timestamp::from_micros(at) }.into()
}

async fn counts(store: &dyn Store, app: AppId, chats: &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    for c in chats {
        out.push(store.chat(app, chat(*c)).await.unwrap().map_or(u64::MAX, |c| c.messages_count));
    }
    out
}

async fn chats_count(store: &dyn Store, app: AppId) -> u64 {
    let apps = store.list_applications(None, 1000).await.unwrap();
    apps.iter().find(|a| a.id == app).unwrap().chats_count
}

const T: i64 = 1_795_000_000_000_000;

pub async fn a_redelivered_batch_changes_nothing(store: &dyn Store) {
    let app = new_app(store).await;
    let mut batch = vec![
        create_chat(app, 1, T),
        create_message(app, 1, 1, "one", T + 1),
        create_message(app, 1, 2, "two", T + 2),
        edit_message(app, 1, 1, "one, edited", T + 3, 1),
    ];
    batch[1].idempotency = Some(IdempotencyRecord {
        scope: "/s".into(),
        key: "k".into(),
        fingerprint: "f".into(),
        status: 201,
        location: "/l".into(),
        body: "{}".into(),
        created_at: Timestamp::now(),
    });
    let first = store.write_batch(&batch).await.unwrap();
    assert_eq!((first.chats_created, first.messages_created, first.edits_applied), (1, 2, 1));
    assert_eq!(first.changed.len(), 2, "each changed message once, with its final body");
    assert_eq!(first.changed.iter().find(|c| c.number == msg(1)).unwrap().body.as_deref(), Some("one, edited"));
    assert!(first.changed.iter().all(|c| c.first_write), "the batch inserted both rows: no index holds them");
    let again = store.write_batch(&batch).await.unwrap();
    assert_eq!((again.chats_created, again.messages_created, again.edits_applied), (0, 0, 0));
    assert!(again.changed.is_empty() && again.advanced.is_empty(), "{again:?}");
    let mut unchanged: Vec<(u64, Option<&str>)> =
        again.unchanged.iter().map(|c| (c.number.get(), c.body.as_deref())).collect();
    unchanged.sort_unstable();
    assert_eq!(unchanged, [(1, Some("one, edited")), (2, Some("two"))], "what a versioned index takes again");
    assert_eq!(counts(store, app, &[1]).await, [2]);
    assert_eq!(chats_count(store, app).await, 1);
    let m = store.message(app, chat(1), msg(1)).await.unwrap().unwrap();
    assert_eq!((m.body.as_str(), m.created_at.as_micros(), m.updated_at.as_micros()), ("one, edited", T + 1, T + 3));
}

pub async fn an_edit_that_overtakes_its_create_still_wins(store: &dyn Store) {
    let app = new_app(store).await;
    store.write_batch(&[create_chat(app, 1, T)]).await.unwrap();
    // the edit lands first, in a batch of its own
    let edit = store.write_batch(&[edit_message(app, 1, 1, "edited", T + 5, 1)]).await.unwrap();
    assert_eq!((edit.messages_created, edit.edits_applied), (1, 1));
    assert!(edit.changed[0].first_write, "the edit inserted the row");
    let create = store.write_batch(&[create_message(app, 1, 1, "original", T + 1)]).await.unwrap();
    assert_eq!(create.messages_created, 0);
    assert_eq!(create.changed[0].body.as_deref(), Some("edited"), "the create changes no text");
    let m = store.message(app, chat(1), msg(1)).await.unwrap().unwrap();
    assert_eq!(m.body, "edited");
    assert_eq!(m.created_at.as_micros(), T + 1, "the create still sets the creation time");
    assert_eq!(m.updated_at.as_micros(), T + 5);
    assert_eq!(counts(store, app, &[1]).await, [1], "counted once");

    // in one batch, edit first and create second, with an edit timestamp that lags the
    // create's (clock skew between servers): the edit still wins
    let out = store
        .write_batch(&[edit_message(app, 1, 2, "edited too", T + 1, 1), create_message(app, 1, 2, "original", T + 9)])
        .await
        .unwrap();
    assert_eq!(out.messages_created, 1);
    assert_eq!(store.message(app, chat(1), msg(2)).await.unwrap().unwrap().body, "edited too");
    assert_eq!(counts(store, app, &[1]).await, [2]);
}

pub async fn the_highest_version_wins_whatever_the_order_or_the_clocks(store: &dyn Store) {
    let app = new_app(store).await;
    store.write_batch(&[create_chat(app, 1, T), create_message(app, 1, 1, "v0", T + 1)]).await.unwrap();
    // version 3 was accepted by a server whose clock is behind: its timestamp is older
    store.write_batch(&[edit_message(app, 1, 1, "v3", T + 5, 3)]).await.unwrap();
    let stale = store.write_batch(&[edit_message(app, 1, 1, "v2", T + 90, 2)]).await.unwrap();
    assert_eq!((stale.edits_applied, stale.changed.len()), (0, 0), "a lower version is a no-op");
    let both = store
        .write_batch(&[edit_message(app, 1, 1, "v5", T + 10, 5), edit_message(app, 1, 1, "v4", T + 40, 4)])
        .await
        .unwrap();
    assert_eq!(both.changed.len(), 1);
    assert_eq!(both.changed[0].body.as_deref(), Some("v5"));
    assert!(!both.changed[0].first_write, "an edit of a stored row replaces what an index holds");
    let m = store.message(app, chat(1), msg(1)).await.unwrap().unwrap();
    assert_eq!((m.body.as_str(), m.updated_at.as_micros()), ("v5", T + 10));
    assert_eq!(store.chat_seed(app, chat(1)).await.unwrap().unwrap().highest_version, Version(5));
}

pub async fn positions_follow_commits_and_a_replay_carries_each_change_once(store: &dyn Store) {
    let app = new_app(store).await;
    let other = new_app(store).await;
    assert_eq!(store.chat_position(app, chat(1)).await.unwrap(), None);
    store.write_batch(&[create_chat(app, 1, T), create_chat(other, 1, T)]).await.unwrap();
    assert_eq!(
        store.chat_position(app, chat(1)).await.unwrap(),
        Some(ChatPosition { position: Position(0), deleted: false })
    );
    // message 2 reaches the store before message 1 (numbers are allocated before the write)
    let first = store
        .write_batch(&[create_message(app, 1, 2, "two", T + 2), create_message(other, 1, 1, "x", T)])
        .await
        .unwrap();
    assert_eq!(first.changed.iter().find(|c| c.app == app).unwrap().position, Position(1));
    let second = store
        .write_batch(&[create_message(app, 1, 1, "one", T + 1), create_message(app, 1, 3, "three", T + 3)])
        .await
        .unwrap();
    let mut advanced: Vec<(AppId, u64)> = second.advanced.iter().map(|a| (a.app, a.position.get())).collect();
    advanced.sort_unstable();
    assert_eq!(advanced, [(app, 3)], "one announcement per chat, with its new position");
    let edit = store.write_batch(&[edit_message(app, 1, 2, "two, edited", T + 4, 1)]).await.unwrap();
    assert_eq!(edit.changed[0].position, Position(4), "an edit moves the message to a new position");
    assert_eq!(store.chat_position(app, chat(1)).await.unwrap().unwrap().position, Position(4));

    let replay: Vec<(u64, u64, String)> = store
        .message_changes(app, chat(1), Position(0), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.position.get(), c.number.get(), c.message.unwrap().body))
        .collect();
    assert_eq!(
        replay,
        [(2, 1, "one".into()), (3, 3, "three".into()), (4, 2, "two, edited".into())],
        "each message once, in its latest state, in position order"
    );
    let after: Vec<u64> =
        store.message_changes(app, chat(1), Position(2), 1).await.unwrap().iter().map(|c| c.position.get()).collect();
    assert_eq!(after, [3], "strictly after the position, at most the limit");
    let theirs = store.message_changes(other, chat(1), Position(0), 100).await.unwrap();
    assert_eq!(theirs.len(), 1, "another application's chat has its own positions");
    let mut positions: Vec<(AppId, u64, u64)> = store
        .chat_positions(&[(app, chat(1)), (other, chat(1)), (app, chat(9))])
        .await
        .unwrap()
        .into_iter()
        .map(|(a, c, p)| (a, c.get(), p.position.get()))
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, [(app, 1, 4), (other, 1, 1)], "every stored chat asked for, once");
}

pub async fn a_message_delete_is_final_and_keeps_its_number(store: &dyn Store) {
    let app = new_app(store).await;
    store
        .write_batch(&[
            create_chat(app, 1, T),
            create_message(app, 1, 1, "one", T),
            create_message(app, 1, 2, "two", T),
        ])
        .await
        .unwrap();
    let out = store.write_batch(&[delete_message(app, 1, 2, T + 1, 1)]).await.unwrap();
    assert_eq!(out.messages_deleted, 1);
    assert_eq!((out.changed[0].body.clone(), out.changed[0].position), (None, Position(3)));
    assert_eq!(store.message(app, chat(1), msg(2)).await.unwrap(), None, "gone from reads");
    let listed: Vec<u64> =
        store.list_messages(app, chat(1), None, 10).await.unwrap().iter().map(|m| m.number.get()).collect();
    assert_eq!(listed, [1], "gone from lists");
    assert_eq!(counts(store, app, &[1]).await, [1], "gone from counts");
    assert_eq!(store.chat_seed(app, chat(1)).await.unwrap().unwrap().highest_message, 2, "the number stays taken");
    // a late create, a redelivered create, an edit of a higher version: none brings it back
    let late = store
        .write_batch(&[create_message(app, 1, 2, "two again", T + 2), edit_message(app, 1, 2, "edited", T + 3, 9)])
        .await
        .unwrap();
    assert!(late.changed.is_empty() && late.edits_applied == 0, "{late:?}");
    assert_eq!(store.message(app, chat(1), msg(2)).await.unwrap(), None);
    // a delete that overtakes its create leaves a tombstone the create cannot pass
    store.write_batch(&[delete_message(app, 1, 3, T + 4, 2)]).await.unwrap();
    store.write_batch(&[create_message(app, 1, 3, "three", T + 3)]).await.unwrap();
    assert_eq!(store.message(app, chat(1), msg(3)).await.unwrap(), None);
    assert_eq!(counts(store, app, &[1]).await, [1]);
    let replay: Vec<(u64, Option<String>)> = store
        .message_changes(app, chat(1), Position(2), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.number.get(), c.message.map(|m| m.body)))
        .collect();
    assert_eq!(replay, [(2, None), (3, None)], "a replay carries the deletes");
    let r = store.reconcile().await.unwrap();
    assert_eq!((r.applications_fixed, r.chats_fixed), (0, 0), "counts already right");
}

pub async fn a_chat_delete_erases_its_messages_and_drops_what_comes_later(store: &dyn Store) {
    let app = new_app(store).await;
    store
        .write_batch(&[
            create_chat(app, 1, T),
            create_chat(app, 2, T),
            create_message(app, 1, 1, "one", T),
            create_message(app, 2, 1, "stays", T),
        ])
        .await
        .unwrap();
    let out = store.write_batch(&[delete_chat(app, 1, T + 1), create_message(app, 1, 2, "late", T + 2)]).await.unwrap();
    assert_eq!((out.chats_deleted, out.dropped), (1, 1));
    assert_eq!(out.erased_chats, [Erasure::Chat(app, chat(1))]);
    assert_eq!(out.advanced.len(), 1, "the chat takes one last position");
    assert_eq!(store.chat(app, chat(1)).await.unwrap(), None);
    assert_eq!(
        store.chat_position(app, chat(1)).await.unwrap(),
        Some(ChatPosition { position: Position(2), deleted: true })
    );
    assert_eq!(store.chat_seed(app, chat(1)).await.unwrap(), None, "a deleted chat takes no more numbers");
    assert_eq!(store.highest_chat_number(app).await.unwrap(), Some(2), "its number stays taken");
    assert!(store.message_changes(app, chat(1), Position(0), 10).await.unwrap().is_empty(), "its messages are erased");
    assert_eq!(chats_count(store, app).await, 1);
    let listed: Vec<u64> = store.list_chats(app, None, 10).await.unwrap().iter().map(|c| c.number.get()).collect();
    assert_eq!(listed, [2]);
    let later = store
        .write_batch(&[create_chat(app, 1, T), create_message(app, 1, 3, "later", T + 3), delete_chat(app, 1, T + 4)])
        .await
        .unwrap();
    assert_eq!((later.dropped, later.chats_created, later.chats_deleted), (2, 0, 0), "{later:?}");
    // a delete that overtakes the chat's create
    store.write_batch(&[delete_chat(app, 3, T)]).await.unwrap();
    store.write_batch(&[create_chat(app, 3, T), create_message(app, 3, 1, "x", T)]).await.unwrap();
    assert_eq!(store.chat(app, chat(3)).await.unwrap(), None);
    assert_eq!(chats_count(store, app).await, 1);
    let r = store.reconcile().await.unwrap();
    assert_eq!((r.applications_fixed, r.chats_fixed), (0, 0), "counts already right");
}

pub async fn a_message_before_its_chat_creates_the_chat_and_the_create_sets_its_time(store: &dyn Store) {
    let app = new_app(store).await;
    let out = store.write_batch(&[create_message(app, 3, 1, "early", T + 10)]).await.unwrap();
    assert_eq!((out.chats_created, out.messages_created), (1, 1));
    assert_eq!(chats_count(store, app).await, 1);
    let out = store.write_batch(&[create_chat(app, 3, T)]).await.unwrap();
    assert_eq!(out.chats_created, 0);
    let c = store.chat(app, chat(3)).await.unwrap().unwrap();
    assert_eq!((c.created_at.as_micros(), c.messages_count), (T, 1));
    assert_eq!(chats_count(store, app).await, 1, "the chat is counted once");
}

pub async fn counts_move_by_the_rows_actually_inserted(store: &dyn Store) {
    let app = new_app(store).await;
    let other = new_app(store).await;
    let batch = vec![
        create_chat(app, 1, T),
        create_chat(app, 1, T), // a duplicate inside one batch
        create_chat(app, 2, T),
        create_chat(other, 1, T),
        create_message(app, 1, 1, "a", T),
        create_message(app, 1, 1, "a", T),
        create_message(app, 1, 2, "b", T),
        create_message(app, 2, 1, "c", T),
        create_message(other, 1, 1, "d", T),
    ];
    let out = store.write_batch(&batch).await.unwrap();
    assert_eq!((out.chats_created, out.messages_created), (3, 4));
    assert_eq!(counts(store, app, &[1, 2]).await, [2, 1]);
    assert_eq!(counts(store, other, &[1]).await, [1]);
    assert_eq!((chats_count(store, app).await, chats_count(store, other).await), (2, 1));
    let r = store.reconcile().await.unwrap();
    assert_eq!((r.applications_fixed, r.chats_fixed), (0, 0), "nothing to repair");
}

pub async fn idempotency_records_are_kept_with_the_batch_and_expire_after_a_day(store: &dyn Store) {
    let app = new_app(store).await;
    let record = |key: &str, age_micros: i64| IdempotencyRecord {
        scope: "/applications/x/chats".into(),
        key: key.into(),
        fingerprint: "fp".into(),
        status: 201,
        location: "/applications/x/chats/1".into(),
        body: r#"{"number":1}"#.into(),
        created_at: Timestamp::from_micros(Timestamp::now().as_micros() - age_micros),
    };
    let mut fresh = create_chat(app, 1, T);
    fresh.idempotency = Some(record("fresh", 0));
    let mut old = create_chat(app, 2, T);
    old.idempotency = Some(record("old", IdempotencyRecord::RETENTION_MICROS + 1_000_000));
    store.write_batch(&[fresh, old]).await.unwrap();
    let got = store.idempotency_record("/applications/x/chats", "fresh").await.unwrap().unwrap();
    assert_eq!(got, record("fresh", 0).clone_with_time(got.created_at));
    assert_eq!(store.idempotency_record("/applications/x/chats", "old").await.unwrap(), None, "expired");
    assert_eq!(store.idempotency_record("/other/scope", "fresh").await.unwrap(), None, "keys are per path");
    // a record past its retention but not purged yet gives way to a new one
    let mut again = create_chat(app, 3, T);
    again.idempotency = Some(IdempotencyRecord { fingerprint: "new".into(), ..record("old", 0) });
    store.write_batch(&[again]).await.unwrap();
    let got = store.idempotency_record("/applications/x/chats", "old").await.unwrap().expect("the new record");
    assert_eq!(got.fingerprint, "new");
    // and a fresh record is never replaced
    let mut twice = create_chat(app, 4, T);
    twice.idempotency = Some(IdempotencyRecord { fingerprint: "other".into(), ..record("fresh", 0) });
    store.write_batch(&[twice]).await.unwrap();
    let got = store.idempotency_record("/applications/x/chats", "fresh").await.unwrap().unwrap();
    assert_eq!(got.fingerprint, "fp");
    assert_eq!(store.reconcile().await.unwrap().idempotency_records_expired, 0);
}

trait WithTime {
    fn clone_with_time(&self, at: Timestamp) -> Self;
}

impl WithTime for IdempotencyRecord {
    fn clone_with_time(&self, at: Timestamp) -> Self {
        IdempotencyRecord { created_at: at, ..self.clone() }
    }
}

pub async fn lists_page_in_order_and_seeds_report_the_highest_numbers(store: &dyn Store) {
    let app = new_app(store).await;
    assert_eq!(store.highest_chat_number(app).await.unwrap(), Some(0));
    assert_eq!(store.chat_seed(app, chat(1)).await.unwrap(), None);
    let mut batch: Vec<Queued> = (1..=5).map(|n| create_chat(app, n, T + n as i64)).collect();
    batch.extend((1..=7).map(|n| create_message(app, 2, n, &format!("m{n}"), T + 10 + n as i64)));
    store.write_batch(&batch).await.unwrap();
    assert_eq!(store.highest_chat_number(app).await.unwrap(), Some(5));
    let seed = |n| Some(ChatSeed { highest_message: n, highest_version: Version(0) });
    assert_eq!(store.chat_seed(app, chat(2)).await.unwrap(), seed(7));
    assert_eq!(store.chat_seed(app, chat(1)).await.unwrap(), seed(0));
    assert_eq!(store.chat_seed(app, chat(6)).await.unwrap(), None);

    let page: Vec<u64> = store.list_chats(app, None, 2).await.unwrap().iter().map(|c| c.number.get()).collect();
    assert_eq!(page, [1, 2]);
    let page: Vec<u64> =
        store.list_chats(app, Some(chat(2)), 10).await.unwrap().iter().map(|c| c.number.get()).collect();
    assert_eq!(page, [3, 4, 5]);
    let page: Vec<u64> =
        store.list_messages(app, chat(2), Some(msg(4)), 2).await.unwrap().iter().map(|m| m.number.get()).collect();
    assert_eq!(page, [5, 6]);
    let m = store.message(app, chat(2), msg(7)).await.unwrap().unwrap();
    assert_eq!((m.chat_number, m.body.as_str(), m.created_at.as_micros()), (chat(2), "m7", T + 17));
    assert_eq!(store.message(app, chat(2), msg(8)).await.unwrap(), None);
    let first = store.scan_messages(None, 4).await.unwrap();
    let rest = store.scan_messages(first.last(), 100).await.unwrap();
    let scanned: Vec<(u64, u64)> =
        first.iter().chain(&rest).filter(|m| m.app == app).map(|m| (m.chat.get(), m.number.get())).collect();
    assert_eq!(scanned, (1..=7).map(|n| (2, n)).collect::<Vec<_>>(), "a scan visits every message once, in key order");
    assert_eq!(store.message(app, chat(1), msg(1)).await.unwrap(), None);
}

pub async fn applications_are_created_renamed_and_listed_in_creation_order(store: &dyn Store) {
    let mut tokens = Vec::new();
    for i in 0..3 {
        let new = NewApplication {
            token: AppToken::generate(),
            name: AppName::parse(&format!("app {i}")).unwrap(),
            at: Timestamp::now(),
        };
        let app = store.create_application(&new, None).await.unwrap();
        assert_eq!((app.name.as_str(), app.chats_count, app.created_at), (new.name.as_str(), 0, new.at));
        tokens.push(new.token);
    }
    let renamed = store
        .rename_application(&tokens[1], &AppName::parse("renamed").unwrap(), Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "renamed");
    assert!(renamed.updated_at > renamed.created_at);
    assert_eq!(store.application(&tokens[1]).await.unwrap().unwrap().name, "renamed");
    assert_eq!(
        store.rename_application(&AppToken::generate(), &AppName::parse("x").unwrap(), Timestamp::now()).await.unwrap(),
        None
    );
    assert_eq!(store.application(&AppToken::generate()).await.unwrap(), None);

    let first = store.list_applications(None, 2).await.unwrap();
    let last = &first[1];
    let rest = store.list_applications(Some(&(last.created_at, last.token.clone())), 10).await.unwrap();
    let listed: Vec<AppToken> = first.iter().chain(&rest).map(|a| a.token.clone()).collect();
    assert_eq!(listed, tokens);
}
