//! Where live events go: one hub per API process. Each chat with subscribers here has a
//! feed that knows the last position it read; news that the chat moved (or a tick every
//! second, for news that was lost) makes the hub read the changes after it from the store,
//! once for all the chat's subscribers, and hand each subscriber the events past its own
//! position. A new subscriber first replays from the store on its own, and joins the feed
//! once it has caught up with it, so it misses nothing and sees nothing twice.
//!
//! Memory per subscriber is bounded: its events wait in a channel of `backlog` entries;
//! when that is full (the client stopped reading), the subscriber is cut off and reconnects
//! with `Last-Event-ID`, losing nothing.
//!
//! Over 300 lines on purpose: feeds, replay-then-join and the backlog cut-off are one
//! concurrency protocol, read together; rendering is in `render.rs`.

mod render;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chatsys_core::ports::{Bulletin, News, Store};
use chatsys_core::{AppId, ChatNumber, Error, Position, Result};
use futures::StreamExt as _;
use tokio::sync::{Notify, mpsc, watch};

pub use render::ready;

/// The bounds of live events in one process.
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// Open event streams at most; more get 503.
    pub max_subscribers: usize,
    /// Events waiting for one subscriber at most before it is cut off.
    pub backlog: usize,
    /// A comment line at least this often while nothing else is sent.
    pub heartbeat: Duration,
}

type Key = (AppId, ChatNumber);

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    position: Position,
}

struct Feed {
    /// Everything up to here has been read and handed out.
    position: Position,
    subscribers: Vec<Subscriber>,
}

pub struct Hub {
    store: Arc<dyn Store>,
    limits: LiveLimits,
    feeds: Mutex<HashMap<Key, Feed>>,
    /// Chats to read, each once however often it was asked for.
    pending: Mutex<HashSet<Key>>,
    wake: Notify,
    open: AtomicUsize,
    next_id: AtomicU64,
    closed: watch::Sender<bool>,
    /// Requests waiting for a chat to move (an edit answered once its row is written).
    waiters: Mutex<HashMap<Key, Arc<Notify>>>,
}

/// Chats read at once.
const READERS: usize = 8;
/// Changes per store read.
const PAGE: u32 = 256;
/// How often chats with subscribers are re-read without news.
const TICK: Duration = Duration::from_secs(1);

impl Hub {
    /// Starts the hub's reader and ticker, listening to `bulletin` for news.
    pub fn start(store: Arc<dyn Store>, bulletin: &dyn Bulletin, limits: LiveLimits) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            store,
            limits,
            feeds: Mutex::default(),
            pending: Mutex::default(),
            wake: Notify::new(),
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            closed: watch::channel(false).0,
            waiters: Mutex::default(),
        });
        let weak = Arc::downgrade(&hub);
        bulletin.subscribe(Arc::new(move |news| {
            let Some(hub) = weak.upgrade() else { return };
            match news {
                News::Advanced { app, chat, position } => hub.heard(app, chat, position),
                News::Erased { app } => hub.forget(app),
            }
        }));
        tokio::spawn(read_loop(hub.clone()));
        tokio::spawn(tick_loop(Arc::downgrade(&hub)));
        hub
    }

    /// Ends the streams of an erased application's chats.
    fn forget(&self, app: AppId) {
        self.feeds.lock().expect("poisoned").retain(|(a, _), _| *a != app);
    }

    /// Reads `read` again each time news says the chat moved, until it finds something or
    /// `wait` has passed: a request that needs a row the pipeline is writing reads once per
    /// announcement, not in a loop.
    pub async fn read_when_moved<T, F, Fut>(
        &self,
        app: AppId,
        chat: ChatNumber,
        wait: Duration,
        read: F,
    ) -> Result<Option<T>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.waiters.lock().expect("poisoned").entry((app, chat)).or_default().clone();
        let found = loop {
            let moved = notify.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let found = read().await;
            if !matches!(found, Ok(None)) || tokio::time::Instant::now() >= deadline {
                break found;
            }
            let _ = tokio::time::timeout_at(deadline, moved).await;
        };
        drop(notify);
        let mut waiters = self.waiters.lock().expect("poisoned");
        // the last waiter takes the entry away
        if waiters.get(&(app, chat)).is_some_and(|n| Arc::strong_count(n) == 1) {
            waiters.remove(&(app, chat));
        }
        found
    }

    fn heard(&self, app: AppId, chat: ChatNumber, position: Position) {
        if let Some(waiting) = self.waiters.lock().expect("poisoned").get(&(app, chat)) {
            waiting.notify_waiters();
        }
        let behind = self.feeds.lock().expect("poisoned").get(&(app, chat)).is_some_and(|f| f.position < position);
        if behind {
            self.pending.lock().expect("poisoned").insert((app, chat));
            self.wake.notify_one();
        }
    }

    /// A stream of the chat's events after `from`; 503 past the subscriber limit.
    pub fn subscribe(self: &Arc<Self>, app: AppId, chat: ChatNumber, from: Position) -> Result<Subscription> {
        if *self.closed.borrow() {
            return Err(Error::unavailable("the server is shutting down"));
        }
        let open = self.open.fetch_add(1, Ordering::SeqCst);
        let seat = Seat(self.clone());
        if open >= self.limits.max_subscribers {
            return Err(Error::unavailable("this server holds as many event streams as it may; retry shortly"));
        }
        metrics::gauge!("chatsys_event_subscribers").increment(1);
        let (tx, rx) = mpsc::channel(self.limits.backlog);
        let hub = self.clone();
        tokio::spawn(async move {
            let mut closed = hub.closed.subscribe();
            tokio::select! {
                joined = hub.join((app, chat), tx, from) => {
                    if let Err(e) = joined {
                        tracing::warn!(error = %e, "an event stream could not catch up; the client reconnects");
                    }
                }
                _ = closed.wait_for(|closed| *closed) => {}
            }
        });
        Ok(Subscription { rx, _seat: seat, heartbeat: self.limits.heartbeat })
    }

    /// Replays from the store until caught up with the chat's feed, then joins it.
    async fn join(&self, key: Key, tx: mpsc::Sender<Bytes>, from: Position) -> Result<()> {
        let mut position = from;
        loop {
            let page = self.store.message_changes(key.0, key.1, position, PAGE).await?;
            if let Some(last) = page.last() {
                let last = last.position;
                for change in page {
                    if tx.send(render::change(key.1, &change)).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
                position = last;
                continue;
            }
            let joined = {
                let mut feeds = self.feeds.lock().expect("poisoned");
                // `close` clears the feeds under this lock after it sets `closed`
                if *self.closed.borrow() {
                    return Ok(());
                }
                let feed = feeds.entry(key).or_insert_with(|| Feed { position, subscribers: Vec::new() });
                if feed.position <= position {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    feed.subscribers.push(Subscriber { id, tx: tx.clone(), position });
                    true
                } else {
                    false
                }
            };
            if joined {
                // whatever was committed since the last read of the store
                self.pending.lock().expect("poisoned").insert(key);
                self.wake.notify_one();
                return Ok(());
            }
            // the feed has read further than this replay: the store has more for us too,
            // unless the chat is gone (its messages erased): then this is its last event
            match self.store.chat_position(key.0, key.1).await? {
                Some(chat) if chat.deleted => {
                    let _ = tx.send(render::chat_deleted(key.1, chat.position)).await;
                    return Ok(());
                }
                Some(_) => {}
                None => return Ok(()),
            }
        }
    }

    /// Reads the chat's changes after its feed's position and hands them out.
    async fn read(&self, key: Key) -> Result<()> {
        let Some(mut from) = self.feeds.lock().expect("poisoned").get(&key).map(|f| f.position) else { return Ok(()) };
        loop {
            let page = self.store.message_changes(key.0, key.1, from, PAGE).await?;
            let full = page.len() == PAGE as usize;
            let Some(last) = page.last().map(|c| c.position) else { break };
            let events: Vec<(Position, Bytes)> = page.iter().map(|c| (c.position, render::change(key.1, c))).collect();
            self.hand_out(key, &events, last);
            from = last;
            if !full {
                break;
            }
        }
        // positions beyond the last message: the chat itself was deleted
        if let Some(chat) = self.store.chat_position(key.0, key.1).await?
            && chat.deleted
            && chat.position > from
        {
            self.hand_out(key, &[(chat.position, render::chat_deleted(key.1, chat.position))], chat.position);
            if let Some(feed) = self.feeds.lock().expect("poisoned").remove(&key) {
                drop(feed); // its streams end after the chat's last event
            }
        }
        Ok(())
    }

    fn hand_out(&self, key: Key, events: &[(Position, Bytes)], last: Position) {
        let mut feeds = self.feeds.lock().expect("poisoned");
        let Some(feed) = feeds.get_mut(&key) else { return };
        feed.subscribers.retain_mut(|sub| {
            for (position, event) in events {
                if *position <= sub.position {
                    continue;
                }
                if let Err(e) = sub.tx.try_send(event.clone()) {
                    if matches!(e, mpsc::error::TrySendError::Full(_)) {
                        metrics::counter!("chatsys_event_subscribers_cut_off_total").increment(1);
                        tracing::debug!(subscriber = sub.id, "a subscriber fell behind its backlog: cut off");
                    }
                    return false;
                }
                sub.position = *position;
            }
            true
        });
        feed.position = feed.position.max(last);
        if feed.subscribers.is_empty() {
            feeds.remove(&key);
        }
    }

    /// Ends every stream (on shutdown) and refuses new ones.
    pub fn close(&self) {
        let mut feeds = self.feeds.lock().expect("poisoned");
        self.closed.send_replace(true);
        feeds.clear();
    }
}

async fn read_loop(hub: Arc<Hub>) {
    loop {
        let wake = hub.wake.notified();
        let keys: Vec<Key> = hub.pending.lock().expect("poisoned").drain().collect();
        if keys.is_empty() {
            wake.await;
            continue;
        }
        futures::stream::iter(keys)
            .for_each_concurrent(READERS, |key| {
                let hub = hub.clone();
                async move {
                    if let Err(e) = hub.read(key).await {
                        // the next news or tick tries again
                        tracing::warn!(error = %e, "reading a chat's changes for its subscribers failed");
                    }
                }
            })
            .await;
    }
}

async fn tick_loop(hub: std::sync::Weak<Hub>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let watched: Vec<(Key, Position)> =
            hub.feeds.lock().expect("poisoned").iter().map(|(k, f)| (*k, f.position)).collect();
        if watched.is_empty() {
            continue;
        }
        let keys: Vec<Key> = watched.iter().map(|(k, _)| *k).collect();
        match hub.store.chat_positions(&keys).await {
            Ok(positions) => {
                let known: HashMap<Key, Position> = watched.into_iter().collect();
                let mut pending = hub.pending.lock().expect("poisoned");
                for (app, chat, now) in positions {
                    if known.get(&(app, chat)).is_some_and(|p| *p < now.position) {
                        pending.insert((app, chat));
                    }
                }
                drop(pending);
                hub.wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the positions of subscribed chats failed"),
        }
    }
}

/// One open event stream's place in the subscriber limit.
struct Seat(Arc<Hub>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("chatsys_event_subscribers").decrement(1);
    }
}

/// The events of one subscriber, as SSE text, with a comment line while nothing happens.
pub struct Subscription {
    rx: mpsc::Receiver<Bytes>,
    /// Held until the stream ends.
    _seat: Seat,
    heartbeat: Duration,
}

impl Subscription {
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        futures::stream::unfold(self, |mut sub| async move {
            let next = tokio::time::timeout(sub.heartbeat, sub.rx.recv()).await;
            match next {
                Ok(Some(event)) => Some((Ok(event), sub)),
                Ok(None) => None,
                Err(_) => Some((Ok(Bytes::from_static(b": keep-alive\n\n")), sub)),
            }
        })
    }
}
