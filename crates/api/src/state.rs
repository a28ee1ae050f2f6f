use std::ops::Deref;
use std::sync::Arc;

use chatsys_core::ports::{Bulletin, CreateQueue, IdempotencyKeys, Numbering, SearchIndex, Store};
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
    /// When set, `GET /applications` requires `Authorization: Bearer <admin token>`.
    pub admin_token: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// News of chats that moved and applications erased, from every process.
    pub bulletin: Arc<dyn Bulletin>,
    pub live: LiveLimits,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    services: Services,
    hub: Arc<Hub>,
    /// Token → internal id. Tokens never change and applications are never deleted, so
    /// entries never go stale; only hits are cached (a token may come into being later).
    app_ids: Cache<AppToken, AppId>,
}

const APP_ID_CACHE_ENTRIES: usize = 100_000;

impl AppState {
    /// Starts the live-events hub too: call within the runtime.
    pub fn new(services: Services) -> Self {
        let hub = Hub::start(services.store.clone(), services.bulletin.as_ref(), services.live);
        Self(Arc::new(Inner { services, hub, app_ids: Cache::new(APP_ID_CACHE_ENTRIES) }))
    }

    pub fn live(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// Ends every live-event stream and refuses new ones (on shutdown: the server waits for
    /// open responses, and these would never end by themselves).
    pub fn close_streams(&self) {
        self.0.hub.close();
    }

    /// The application named by a token from the path: 404 when there is none.
    pub async fn app_id(&self, token: &str) -> Result<AppId, ApiError> {
        let token = AppToken::parse(token).map_err(|_| unknown_application())?;
        if let Some(id) = self.0.app_ids.get(&token) {
            return Ok(id);
        }
        let app = self.store.application(&token).await?.ok_or_else(unknown_application)?;
        self.0.app_ids.insert(token, app.id);
        Ok(app.id)
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
