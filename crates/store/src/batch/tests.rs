//! The fold alone, without an engine (the store contract suite runs it through both).

use std::collections::{BTreeMap, BTreeSet};

use chatsys_core::{AppId, ChatNumber, Command, MessageBody, MessageNumber, Queued, Timestamp, Version};

use super::fold::fold;
use super::{ChatRow, MessageRow};

const APP: AppId = AppId(7);

fn at(t: i64) -> Timestamp {
    Timestamp::from_micros(t)
}

fn chat_row(last_position: i64, messages_count: i64) -> ChatRow {
    ChatRow { last_position, messages_count, deleted: false, created_at: at(0), updated_at: at(0) }
}

fn create(chat: u64, n: u64) -> Queued {
    Command::CreateMessage {
        app: APP,
        chat: ChatNumber::new(chat).unwrap(),
        number: MessageNumber::new(n).unwrap(),
        body: MessageBody::parse(format!("m{n}")).unwrap(),
        at: at(n as i64),
    }
    .into()
}

fn edit(chat: u64, n: u64, version: u64) -> Queued {
    Command::EditMessage {
        app: APP,
        chat: ChatNumber::new(chat).unwrap(),
        number: MessageNumber::new(n).unwrap(),
        body: MessageBody::parse(format!("v{version}")).unwrap(),
        at: at(100),
        version: Version(version),
    }
    .into()
}

#[test]
fn positions_continue_from_the_chat_in_the_order_the_batch_names_messages() {
    let chats = BTreeMap::from([((7, 1), chat_row(10, 3)), ((7, 2), chat_row(0, 0))]);
    let batch = [create(1, 5), create(2, 1), create(1, 4), edit(1, 5, 1)];
    let out = fold(&batch, chats, &BTreeSet::new(), BTreeMap::new(), 9);
    let positions: Vec<(u64, u64, u64)> =
        out.new_messages.iter().map(|((_, c, n), row)| (*c as u64, *n as u64, row.position as u64)).collect();
    assert_eq!(positions, [(1, 5, 11), (2, 1, 1), (1, 4, 12)]);
    let five = &out.new_messages[0].1;
    assert_eq!((five.body.as_deref(), five.version), (Some("v1"), 1), "the edit folds into the insert");
    let chats: Vec<(i64, i64, i64)> =
        out.updated_chats.iter().map(|((_, c), row)| (*c, row.last_position, row.messages_count)).collect();
    assert_eq!(chats, [(1, 12, 5), (2, 1, 1)]);
    assert_eq!((out.outcome.rev, out.outcome.messages_created, out.outcome.edits_applied), (9, 3, 1));
}

#[test]
fn a_stale_edit_changes_nothing_and_moves_no_position() {
    let stored = MessageRow { body: Some("v3".into()), version: 3, position: 4, created_at: at(1), updated_at: at(2) };
    let out = fold(
        &[edit(1, 1, 2)],
        BTreeMap::from([((7, 1), chat_row(4, 1))]),
        &BTreeSet::new(),
        BTreeMap::from([((7, 1, 1), stored)]),
        0,
    );
    assert!(out.updated_messages.is_empty() && out.updated_chats.is_empty() && out.outcome.advanced.is_empty());
    assert_eq!(out.outcome.unchanged.len(), 1, "named, unchanged: a versioned index may take it again");
}

#[test]
fn commands_for_a_chat_the_batch_could_not_find_are_dropped() {
    // the application is gone: its chat was neither found nor inserted
    let out = fold(&[create(1, 1), edit(1, 1, 1)], BTreeMap::new(), &BTreeSet::new(), BTreeMap::new(), 0);
    assert_eq!(out.outcome.dropped, 2);
    assert!(out.new_messages.is_empty() && out.app_deltas.is_empty());
}

#[test]
fn an_inserted_chat_counts_once_for_its_application() {
    let inserted = BTreeSet::from([(7, 3)]);
    let batch = [Command::CreateChat { app: APP, chat: ChatNumber::new(3).unwrap(), at: at(0) }.into(), create(3, 1)];
    let out = fold(&batch, BTreeMap::from([((7, 3), chat_row(0, 0))]), &inserted, BTreeMap::new(), 0);
    assert_eq!(out.app_deltas, BTreeMap::from([(7, 1)]));
    assert_eq!(out.outcome.chats_created, 1);
}
