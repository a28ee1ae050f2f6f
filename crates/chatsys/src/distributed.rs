//! Distributed mode: MySQL, Redis and RabbitMQ; `serve` runs the API, `worker` the writer.

use std::sync::Arc;

use anyhow::Context as _;
use chatsys_api::{AppState, Services};
use chatsys_bulletin::RedisBulletin;
use chatsys_core::ports::{SearchIndex, Store};
use chatsys_counters::{RedisHolds, RedisIdempotencyKeys, RedisNumbering, RedisNumberingConfig};
use chatsys_queue::rabbitmq::{RabbitConfig, RabbitQueue, RabbitSource};
use chatsys_search::{ElasticConfig, ElasticIndex};
use chatsys_store::{Deadline, MySqlStore};
use chatsys_worker::{Consumer, Patience, reconcile};

use crate::config::Config;
use crate::wiring::{serve_http, shutdown_signal};

fn url(value: &Option<String>, name: &str) -> anyhow::Result<String> {
    value.clone().with_context(|| format!("{name} is not set"))
}

pub async fn open_store(config: &Config) -> anyhow::Result<Arc<MySqlStore>> {
    let store = MySqlStore::connect(&url(&config.database_url, "CHATSYS_DATABASE_URL")?, config.database_pool)
        .await
        .context("connecting to the database (CHATSYS_DATABASE_URL)")?;
    Ok(Arc::new(store))
}

fn rabbit(config: &Config) -> anyhow::Result<RabbitConfig> {
    Ok(RabbitConfig {
        url: url(&config.amqp_url, "CHATSYS_AMQP_URL")?,
        queue: config.amqp_queue.clone(),
        batch: config.batches(),
        confirm_timeout: config.write_timeout,
    })
}

/// Elasticsearch, when configured: the index behind its alias is created if absent.
async fn open_search(config: &Config) -> anyhow::Result<Option<Arc<ElasticIndex>>> {
    let Some(url) = &config.elasticsearch_url else { return Ok(None) };
    let index = ElasticIndex::connect(ElasticConfig::new(url.clone()))
        .await
        .context("connecting to Elasticsearch (CHATSYS_ELASTICSEARCH_URL)")?;
    Ok(Some(Arc::new(index)))
}

/// Builds a new index from the database and swaps the alias to it.
pub async fn reindex(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let index = open_search(&config)
        .await?
        .context("distributed mode searches with Elasticsearch: set CHATSYS_ELASTICSEARCH_URL to rebuild its index")?;
    let copied = index.rebuild(store.as_ref()).await.context("rebuilding the Elasticsearch index")?;
    tracing::info!(messages = copied, "search index rebuilt and swapped in");
    store.close().await;
    Ok(())
}

/// The store as the pipeline and the handlers use it: every call bounded in time.
fn bounded(store: &Arc<MySqlStore>, config: &Config) -> Arc<dyn Store> {
    Arc::new(Deadline::new(store.clone(), config.write_timeout))
}

/// The cursor key every server shares: from the configured secret, else one made by the
/// first server and kept in Redis (lost with Redis's data: cursors then answer 400 and
/// clients start their lists again).
async fn cursor_key(config: &Config, redis: &redis::aio::ConnectionManager) -> anyhow::Result<[u8; 32]> {
    if let Some(secret) = &config.cursor_secret {
        return Ok(crate::wiring::key_of(secret));
    }
    let name = format!("{}:cursor_secret", config.redis_prefix);
    let made: [u8; 32] = rand::random();
    let made: String = made.iter().map(|b| format!("{b:02x}")).collect();
    let mut redis = redis.clone();
    let _: bool = redis::AsyncCommands::set_nx(&mut redis, &name, made).await.context("storing the cursor secret")?;
    let secret: String = redis::AsyncCommands::get(&mut redis, &name).await.context("reading the cursor secret")?;
    Ok(crate::wiring::key_of(&secret))
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let mysql = open_store(&config).await?;
    let store = bounded(&mysql, &config);
    let redis = chatsys_counters::redis::connect(&url(&config.redis_url, "CHATSYS_REDIS_URL")?)
        .await
        .context("connecting to Redis (CHATSYS_REDIS_URL)")?;
    let holds = Arc::new(RedisHolds::new(redis.clone(), &config.redis_prefix));
    let queue = Arc::new(
        RabbitQueue::start(rabbit(&config)?)
            .await
            .context("connecting to RabbitMQ (CHATSYS_AMQP_URL)")?
            .with_holds(holds),
    );
    let numbering = RedisNumbering::redis(
        redis.clone(),
        RedisNumberingConfig { prefix: config.redis_prefix.clone(), drain_settle: config.redis_recovery_settle },
        store.clone(),
        queue.clone(),
    );
    numbering.counters().initialize().await.context("initialising the counters in Redis")?;
    chatsys_api::cursor::set_key(cursor_key(&config, &redis).await?);
    let search = open_search(&config).await?;
    let bulletin = Arc::new(RedisBulletin::new(
        &url(&config.redis_url, "CHATSYS_REDIS_URL")?,
        redis.clone(),
        &config.redis_prefix,
    )?);
    tracing::info!(
        search = if search.is_some() { "elasticsearch" } else { "not configured (answers 503)" },
        "distributed mode: mysql store, redis numbering, rabbitmq queue"
    );
    let services = Services {
        store: store.clone(),
        numbering: Arc::new(numbering),
        queue,
        idempotency: Arc::new(RedisIdempotencyKeys::new(redis.clone(), config.redis_prefix.clone(), store.clone())),
        search: search.map(|s| s as Arc<dyn SearchIndex>),
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        rate_limiter: config.rate_limit.map(|rate| {
            Arc::new(chatsys_counters::rate_limit::RedisRateLimiter::new(
                rate,
                redis.clone(),
                config.redis_prefix.clone(),
            )) as Arc<dyn chatsys_core::ports::RateLimiter>
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
    mysql.close().await;
    tracing::info!("stopped");
    Ok(())
}

pub async fn worker(config: Config) -> anyhow::Result<()> {
    let mysql = open_store(&config).await?;
    let store = bounded(&mysql, &config);
    let redis_url = url(&config.redis_url, "CHATSYS_REDIS_URL")?;
    let redis =
        chatsys_counters::redis::connect(&redis_url).await.context("connecting to Redis (CHATSYS_REDIS_URL)")?;
    let holds = Arc::new(RedisHolds::new(redis.clone(), &config.redis_prefix));
    let bulletin = Arc::new(RedisBulletin::new(&redis_url, redis, &config.redis_prefix)?);
    let mut consumer = Consumer::new(Box::new(RabbitSource::new(rabbit(&config)?)), store.clone(), config.batches())
        .with_patience(Patience::UntilAvailable)
        .with_holds(holds)
        .with_bulletin(bulletin);
    if let Some(search) = open_search(&config).await? {
        consumer = consumer.with_search(search);
    }
    let reconciler = tokio::spawn(reconcile::run(mysql.clone() as Arc<dyn Store>, config.reconcile_interval));
    if let Some(listen) = &config.ops_listen {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(addr = %listener.local_addr()?, "worker ops listening");
        tokio::spawn(async move { axum::serve(listener, chatsys_api::worker_router()).await });
    }
    tracing::info!(queue = %config.amqp_queue, "worker started");
    tokio::select! {
        () = consumer.run() => {}
        () = shutdown_signal() => {}
    }
    // a batch cut short is rolled back and its deliveries come again: nothing is lost
    reconciler.abort();
    mysql.close().await;
    tracing::info!("stopped");
    Ok(())
}
