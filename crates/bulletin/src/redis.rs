//! News across processes through Redis pub/sub: a publisher `PUBLISH`es a batch of news as
//! one JSON message on `<prefix>:news`; each subscribing process holds one connection that
//! listens and hands every item to its listeners, reconnecting by itself. Pub/sub keeps
//! nothing: what is published while a process is disconnected is lost to it, which costs
//! its subscribers latency (their chats are re-read every second), never an event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{Bulletin, Listener, News};
use chatsys_core::{Error, Result};
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;

pub struct RedisBulletin {
    client: redis::Client,
    publisher: ConnectionManager,
    channel: String,
    listeners: Arc<Mutex<Vec<Listener>>>,
    listening: Mutex<bool>,
}

impl RedisBulletin {
    /// `publisher`: a connection for publishing (bounded in time, shared with other uses).
    pub fn new(url: &str, publisher: ConnectionManager, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid("CHATSYS_REDIS_URL is not a valid redis:// URL").with_source(e))?;
        Ok(Self {
            client,
            publisher,
            channel: format!("{prefix}:news"),
            listeners: Arc::default(),
            listening: Mutex::new(false),
        })
    }
}

#[async_trait]
impl Bulletin for RedisBulletin {
    async fn publish(&self, news: &[News]) -> Result<()> {
        if news.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_string(news).map_err(|e| Error::internal("cannot encode news").with_source(e))?;
        let _: i64 = self
            .publisher
            .clone()
            .publish(&self.channel, payload)
            .await
            .map_err(|e| Error::unavailable("redis is unavailable (publishing news)").with_source(e))?;
        Ok(())
    }

    fn subscribe(&self, listener: Listener) {
        self.listeners.lock().expect("poisoned").push(listener);
        let mut listening = self.listening.lock().expect("poisoned");
        if !*listening {
            *listening = true;
            tokio::spawn(listen(self.client.clone(), self.channel.clone(), self.listeners.clone()));
        }
    }
}

/// Listens as long as the process lives, reconnecting with a growing delay.
async fn listen(client: redis::Client, channel: String, listeners: Arc<Mutex<Vec<Listener>>>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    tracing::info!(%channel, "listening for news");
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let payload: String = match message.get_payload() {
                            Ok(payload) => payload,
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable news");
                                continue;
                            }
                        };
                        match serde_json::from_str::<Vec<News>>(&payload) {
                            Ok(news) => {
                                let listeners = listeners.lock().expect("poisoned").clone();
                                for item in news {
                                    for listener in &listeners {
                                        listener(item);
                                    }
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "undecodable news"),
                        }
                    }
                    tracing::warn!("lost the news subscription: reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to news"),
            },
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot connect for news"),
        }
        metrics::counter!("chatsys_news_reconnects_total").increment(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
