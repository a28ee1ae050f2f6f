//! Config → adapters. The one place where the run mode is decided.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chatsys_api::{AppState, Services, router};
use chatsys_bulletin::InProcessBulletin;
use chatsys_core::ports::Store;
use chatsys_counters::{InProcessNumbering, LocalIdempotencyKeys};
use chatsys_queue::in_process;
use chatsys_search::{TantivyConfig, TantivyIndex};
use chatsys_store::SqliteStore;
use chatsys_worker::{Consumer, reconcile};
use tokio::net::TcpListener;

use crate::config::{Config, Mode};
use crate::distributed;

/// How long a create may wait for room in the embedded queue before it answers 503.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(config: Config) -> anyhow::Result<()> {
    match config.mode().map_err(anyhow::Error::msg)? {
        Mode::Embedded => serve_embedded(config).await,
        Mode::Distributed => distributed::serve(config).await,
    }
}

pub async fn worker(config: Config) -> anyhow::Result<()> {
    match config.mode().map_err(anyhow::Error::msg)? {
        Mode::Embedded => bail!(
            "`chatsys worker` is for distributed mode (CHATSYS_DATABASE_URL, CHATSYS_REDIS_URL, CHATSYS_AMQP_URL); \
             in embedded mode `chatsys serve` writes by itself"
        ),
        Mode::Distributed => distributed::worker(config).await,
    }
}

pub async fn reconcile_once(config: Config) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = match config.mode().map_err(anyhow::Error::msg)? {
        Mode::Embedded => open_embedded_store(&config).await?,
        Mode::Distributed => distributed::open_store(&config).await?,
    };
    let r = store.reconcile().await.context("reconciling counts")?;
    tracing::info!(
        applications_fixed = r.applications_fixed,
        chats_fixed = r.chats_fixed,
        idempotency_records_expired = r.idempotency_records_expired,
        "counts reconciled"
    );
    Ok(())
}

async fn open_embedded_store(config: &Config) -> anyhow::Result<Arc<SqliteStore>> {
    let store = SqliteStore::open(&config.data_dir)
        .await
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

pub async fn reindex(config: Config) -> anyhow::Result<()> {
    match config.mode().map_err(anyhow::Error::msg)? {
        Mode::Embedded => {
            let store = open_embedded_store(&config).await?;
            let dir = search_dir(&config);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            // opening an empty index catches it up with everything in the store
            let index = open_embedded_index(&config, &store).await?;
            index.close().await;
            store.close().await;
            tracing::info!(dir = %dir.display(), "search index rebuilt");
            Ok(())
        }
        Mode::Distributed => distributed::reindex(config).await,
    }
}

fn search_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("search")
}

async fn open_embedded_index(config: &Config, store: &Arc<SqliteStore>) -> anyhow::Result<Arc<TantivyIndex>> {
    let search = TantivyConfig::new(config.search_commit_interval, config.search_threads());
    let index = TantivyIndex::open(search_dir(config), store.clone(), search)
        .await
        .with_context(|| format!("opening the search index in {}", search_dir(config).display()))?;
    Ok(Arc::new(index))
}

/// The cursor key: from the configured secret, else one made once and kept in `dir`.
fn embedded_cursor_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    if let Some(secret) = &config.cursor_secret {
        return Ok(key_of(secret));
    }
    let path = config.data_dir.join("cursor.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(key_of(text.trim()));
    }
    let made: [u8; 32] = rand::random();
    let text: String = made.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(&config.data_dir)?;
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(key_of(&text))
}

pub(crate) fn key_of(secret: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

async fn serve_embedded(config: Config) -> anyhow::Result<()> {
    chatsys_api::cursor::set_key(embedded_cursor_key(&config)?);
    let store = open_embedded_store(&config).await?;
    let index = open_embedded_index(&config, &store).await?;
    tracing::info!(data_dir = %config.data_dir.display(), "embedded mode: sqlite store, tantivy search, in-process numbering and queue");
    let (queue, source) = in_process::channel(config.queue_capacity as usize, ENQUEUE_TIMEOUT);
    let bulletin = Arc::new(InProcessBulletin::default());
    let consumer = Consumer::new(Box::new(source), store.clone(), config.batches())
        .with_search(index.clone())
        .with_bulletin(bulletin.clone());
    let writer = tokio::spawn(consumer.run());
    let reconciler = tokio::spawn(reconcile::run(store.clone(), config.reconcile_interval));

    let services = Services {
        store: store.clone(),
        numbering: Arc::new(InProcessNumbering::in_process(store.clone())),
        queue: Arc::new(queue),
        idempotency: Arc::new(LocalIdempotencyKeys::new(store.clone())),
        search: Some(index.clone()),
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        rate_limiter: config.rate_limit.map(|rate| {
            Arc::new(chatsys_counters::rate_limit::InProcessRateLimiter::new(rate))
                as Arc<dyn chatsys_core::ports::RateLimiter>
        }),
        cors_origins: config.cors_origins.clone(),
        body_limit: config.body_limit,
        page_bytes: config.page_bytes as usize,
        request_limits: config.request_limits(),
        search_limits: config.search_limits(),
        bulletin,
        live: config.live(),
    };
    serve_http(&config, AppState::new(services)).await?;

    // Every handler has finished and dropped its handle on the queue: the writer commits
    // what is left and stops.
    writer.await.context("the writer task failed")?;
    reconciler.abort();
    index.close().await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn serve_http(config: &Config, state: AppState) -> anyhow::Result<()> {
    if state.admin_token.is_none() {
        tracing::warn!(
            "no admin token configured: GET /applications lists every token to anyone (set CHATSYS_ADMIN_TOKEN)"
        );
    }
    let listener =
        TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    let streams = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        // event streams never end by themselves: end them, so the server can finish
        streams.close_streams();
    };
    chatsys_api::server::serve(listener, router(state), config.server_limits(), shutdown).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM: the server stops accepting and finishes what is in flight.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
