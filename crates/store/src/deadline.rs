//! Where a hung store is handled: every call gets a deadline. A database that stops answering
//! (a stopped process, a black-holed port) sends no error at all; past the deadline the
//! call fails as `Unavailable`, so a request answers 503 and a worker retries, instead of
//! waiting forever. A write cut short is rolled back by the database (its transaction never
//! committed) or found already applied when it is retried (batches are idempotent).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{BatchOutcome, ChangedMessage, ChatPosition, ChatSeed, MessageChange, Reconciled, Store};
use chatsys_core::{
    AppId, AppName, AppToken, Application, Chat, ChatNumber, Error, IdempotencyRecord, Message, MessageNumber,
    NewApplication, Position, Queued, Result, Timestamp,
};

pub struct Deadline {
    inner: Arc<dyn Store>,
    limit: Duration,
}

impl Deadline {
    pub fn new(inner: Arc<dyn Store>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn run<T>(&self, what: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => {
                metrics::counter!("chatsys_store_timeouts_total").increment(1);
                Err(Error::unavailable(format!("the store did not answer in time ({what})")))
            }
        }
    }
}

#[async_trait]
impl Store for Deadline {
    async fn ping(&self) -> Result<()> {
        self.run("pinging", self.inner.ping()).await
    }

    async fn create_application(
        &self,
        new: &NewApplication,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<Application> {
        self.run("creating an application", self.inner.create_application(new, idempotency)).await
    }

    async fn rename_application(&self, token: &AppToken, name: &AppName, at: Timestamp) -> Result<Option<Application>> {
        self.run("renaming an application", self.inner.rename_application(token, name, at)).await
    }

    async fn application(&self, token: &AppToken) -> Result<Option<Application>> {
        self.run("reading an application", self.inner.application(token)).await
    }

    async fn list_applications(&self, after: Option<&(Timestamp, AppToken)>, limit: u32) -> Result<Vec<Application>> {
        self.run("listing applications", self.inner.list_applications(after, limit)).await
    }

    async fn chat(&self, app: AppId, chat: ChatNumber) -> Result<Option<Chat>> {
        self.run("reading a chat", self.inner.chat(app, chat)).await
    }

    async fn list_chats(&self, app: AppId, after: Option<ChatNumber>, limit: u32) -> Result<Vec<Chat>> {
        self.run("listing chats", self.inner.list_chats(app, after, limit)).await
    }

    async fn message(&self, app: AppId, chat: ChatNumber, number: MessageNumber) -> Result<Option<Message>> {
        self.run("reading a message", self.inner.message(app, chat, number)).await
    }

    async fn list_messages(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Option<MessageNumber>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.run("listing messages", self.inner.list_messages(app, chat, after, limit)).await
    }

    async fn scan_messages(&self, after: Option<&ChangedMessage>, limit: u32) -> Result<Vec<ChangedMessage>> {
        self.run("scanning messages", self.inner.scan_messages(after, limit)).await
    }

    async fn messages_by_number(
        &self,
        app: AppId,
        chat: ChatNumber,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>> {
        self.run("reading messages", self.inner.messages_by_number(app, chat, numbers)).await
    }

    async fn idempotency_record(&self, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>> {
        self.run("reading an idempotency key", self.inner.idempotency_record(scope, key)).await
    }

    async fn highest_chat_number(&self, app: AppId) -> Result<Option<u64>> {
        self.run("reading the highest chat number", self.inner.highest_chat_number(app)).await
    }

    async fn chat_seed(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatSeed>> {
        self.run("reading a chat's seed", self.inner.chat_seed(app, chat)).await
    }

    async fn chat_position(&self, app: AppId, chat: ChatNumber) -> Result<Option<ChatPosition>> {
        self.run("reading a chat's position", self.inner.chat_position(app, chat)).await
    }

    async fn chat_positions(&self, chats: &[(AppId, ChatNumber)]) -> Result<Vec<(AppId, ChatNumber, ChatPosition)>> {
        self.run("reading chats' positions", self.inner.chat_positions(chats)).await
    }

    async fn message_changes(
        &self,
        app: AppId,
        chat: ChatNumber,
        after: Position,
        limit: u32,
    ) -> Result<Vec<MessageChange>> {
        self.run("reading a chat's changes", self.inner.message_changes(app, chat, after, limit)).await
    }

    async fn write_batch(&self, batch: &[Queued]) -> Result<BatchOutcome> {
        self.run("writing a batch", self.inner.write_batch(batch)).await
    }

    async fn reconcile(&self) -> Result<Reconciled> {
        self.run("reconciling counts", self.inner.reconcile()).await
    }

    async fn erase_application(&self, app: AppId, token: &AppToken) -> Result<bool> {
        self.run("erasing an application", self.inner.erase_application(app, token)).await
    }
}
