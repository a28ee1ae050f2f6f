use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chatsys_core::ports::{
    Bulletin, CreateQueue, Erasure, IdempotencyKeys, News, Numbering, RateLimiter, SearchIndex, Store,
};
use chatsys_core::{AppId, AppToken};
use quick_cache::sync::Cache;

use crate::error::ApiError;
use crate::live::{Hub, LiveLimits};

/// The ports the handlers use, chosen once by the binary's wiring.
pub struct Services {
    pub store: Arc<dyn Store>,
    pub numbering: Arc<dyn Numbering>,
    pub queue: Arc<dyn CreateQueue>,
    pub idempotency: Arc<dyn IdempotencyKeys>,
    /// `None` where no shared index is configured: search then answers 503.
    pub search: Option<Arc<dyn SearchIndex>>,
    /// When set, every request naming an application token draws from that application's
    /// allowance (429 past it).
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// The origins a browser client may call from (`*`: any); empty: no CORS.
    pub cors_origins: Vec<String>,
    /// When set, `GET /applications` requires `Authorization: Bearer <admin token>`.
    pub admin_token: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The largest page of a list or search, in bytes (a page cut short links to the rest).
    pub page_bytes: usize,
    /// How long a request may take to arrive (its body) and to be answered.
    pub request_limits: RequestLimits,
    /// How long a search may take, and how many run their CPU work at once.
    pub search_limits: SearchLimits,
    /// News of chats that moved and applications erased, from every process.
    pub bulletin: Arc<dyn Bulletin>,
    pub live: LiveLimits,
}

/// How long a request may take: its body to arrive (else 408), and its answer (else 503).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub body_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
}

/// A search answers 503 past `timeout`; its CPU work (the index, then checking and marking
/// the hits) runs on at most `threads` blocking threads at once, so searches never take
/// every core from the request threads.
#[derive(Debug, Clone, Copy)]
pub struct SearchLimits {
    pub timeout: std::time::Duration,
    pub threads: usize,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    services: Services,
    hub: Arc<Hub>,
    /// Token → internal id. Tokens never change; an erased application's entry is dropped at
    /// once on every server (news of the erasure); only hits are cached (a token may come
    /// into being later).
    app_ids: Cache<AppToken, AppId>,
    /// One permit per thread that may check and highlight search hits.
    highlighters: Arc<tokio::sync::Semaphore>,
}

const APP_ID_CACHE_ENTRIES: usize = 100_000;

impl AppState {
    /// Starts the live-events hub too: call within the runtime.
    pub fn new(services: Services) -> Self {
        let hub = Hub::start(services.store.clone(), services.bulletin.as_ref(), services.live);
        let highlighters = Arc::new(tokio::sync::Semaphore::new(services.search_limits.threads.max(1)));
        let inner = Arc::new(Inner { services, hub, app_ids: Cache::new(APP_ID_CACHE_ENTRIES), highlighters });
        let weak = Arc::downgrade(&inner);
        inner.services.bulletin.subscribe(Arc::new(move |news| {
            if let (News::Erased { app }, Some(inner)) = (news, weak.upgrade()) {
                inner.app_ids.retain(|_, id| *id != app);
            }
        }));
        Self(inner)
    }

    /// Erases an application: the store first (one transaction), then its counters, its
    /// search documents and, on every server, its token.
    pub async fn erase_application(&self, app: AppId, token: &AppToken) -> Result<(), ApiError> {
        if !self.store.erase_application(app, token).await? {
            return Err(unknown_application());
        }
        self.0.app_ids.remove(token);
        if let Err(e) = self.numbering.forget_application(app).await {
            tracing::warn!(error = %e, "an erased application's counters were not removed");
        }
        if let Err(e) = self.idempotency.forget_under(&format!("/applications/{token}")).await {
            tracing::warn!(error = %e, "an erased application's idempotency answers were not removed; they expire in 24 h");
        }
        if let Some(search) = self.search.clone() {
            // the store is erased; the index must follow, however long that takes
            tokio::spawn(async move {
                let mut wait = Duration::from_millis(200);
                for _ in 0..30 {
                    match search.index(&[], &[Erasure::Application(app)], 0).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "an erased application's search documents remain: retrying")
                        }
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                tracing::error!("an erased application's search documents could not be removed");
            });
        }
        if let Err(e) = self.bulletin.publish(&[News::Erased { app }]).await {
            tracing::warn!(error = %e, "news of an erasure not announced; other servers forget the token later");
        }
        metrics::counter!("chatsys_applications_erased_total").increment(1);
        Ok(())
    }

    /// A turn on a highlighting thread; it goes with the work into the blocking task, so a
    /// search given up at its deadline still holds its turn until the work ends.
    pub async fn highlighter_turn(&self) -> chatsys_core::Result<tokio::sync::OwnedSemaphorePermit> {
        self.0
            .highlighters
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| chatsys_core::Error::unavailable("search is closed"))
    }

    pub fn live(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// Ends every live-event stream and refuses new ones (on shutdown: the server waits for
    /// open responses, and these would never end by themselves).
    pub fn close_streams(&self) {
        self.0.hub.close();
    }

    /// The application named by a token from the path: 404 when there is none, 429 when
    /// its rate limit is used up. Every request that names a token passes here.
    pub async fn app_id(&self, token: &str) -> Result<AppId, ApiError> {
        let token = AppToken::parse(token).map_err(|_| unknown_application())?;
        let app = match self.0.app_ids.get(&token) {
            Some(id) => id,
            None => {
                let app = self.store.application(&token).await?.ok_or_else(unknown_application)?;
                self.0.app_ids.insert(token, app.id);
                app.id
            }
        };
        self.within_rate(app).await?;
        Ok(app)
    }

    /// Draws one request from the application's allowance. A limiter that cannot answer
    /// (Redis down) lets the request through: the limit protects the service, it must not
    /// take it down.
    async fn within_rate(&self, app: AppId) -> Result<(), ApiError> {
        let Some(limiter) = &self.rate_limiter else { return Ok(()) };
        match limiter.take(app).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => {
                metrics::counter!("chatsys_rate_limited_total").increment(1);
                Err(ApiError::too_many_requests(wait, limiter.rate()))
            }
            Err(e) => {
                metrics::counter!("chatsys_rate_limit_errors_total").increment(1);
                tracing::debug!(error = %e, "the rate limiter did not answer: the request goes on");
                Ok(())
            }
        }
    }
}

pub fn unknown_application() -> ApiError {
    ApiError::not_found("no application has this token")
}

impl Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0.services
    }
}
