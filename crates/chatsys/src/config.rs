//! Every setting is a flag and a `CHATSYS_*` environment variable (DESIGN.md's
//! configuration contract); defaults live here and nowhere else.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Clone, Args)]
pub struct Config {
    /// HTTP address to listen on (`:0` picks a free port and logs it)
    #[arg(long, env = "CHATSYS_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: String,

    /// `chatsys worker`: where to serve `/healthz` and `/metrics` (unset: nowhere)
    #[arg(long, env = "CHATSYS_OPS_LISTEN", global = true)]
    pub ops_listen: Option<String>,

    /// Embedded mode: folder of the SQLite database and the search index
    #[arg(long, env = "CHATSYS_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// `mysql://…`: selects the MySQL store (distributed mode)
    #[arg(long, env = "CHATSYS_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// `redis://…`: selects Redis numbering and shared caches (distributed mode)
    #[arg(long, env = "CHATSYS_REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// `amqp://…`: selects the RabbitMQ create queue (distributed mode)
    #[arg(long, env = "CHATSYS_AMQP_URL", global = true, hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// `http://…`: selects Elasticsearch search (distributed mode)
    #[arg(long, env = "CHATSYS_ELASTICSEARCH_URL", global = true, hide_env_values = true)]
    pub elasticsearch_url: Option<String>,

    /// Distributed mode: the RabbitMQ queue of create commands (`<name>.dead` beside it)
    #[arg(long, env = "CHATSYS_AMQP_QUEUE", default_value = "chatsys.commands", global = true)]
    pub amqp_queue: String,

    /// Distributed mode: the prefix of every Redis key (deployments may share a Redis)
    #[arg(long, env = "CHATSYS_REDIS_PREFIX", default_value = "chatsys", global = true)]
    pub redis_prefix: String,

    /// Distributed mode: after a Redis data loss, how long the queue must stay empty before
    /// the counters re-seed from the database
    #[arg(long, env = "CHATSYS_REDIS_RECOVERY_SETTLE", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub redis_recovery_settle: Duration,

    /// Distributed mode: connections to the database per process
    #[arg(long, env = "CHATSYS_DATABASE_POOL", default_value_t = 16, global = true)]
    pub database_pool: u32,

    /// Guards `GET /applications` (`Authorization: Bearer <token>`); unset leaves it open
    #[arg(long, env = "CHATSYS_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The secret that authenticates pagination cursors (every server of a deployment must
    /// share it); unset: embedded mode keeps one in the data directory, distributed mode in
    /// Redis
    #[arg(long, env = "CHATSYS_CURSOR_SECRET", global = true, hide_env_values = true)]
    pub cursor_secret: Option<String>,

    /// The rate limit of each application token, e.g. `50/s,200` (requests per s, min or h,
    /// then the burst); unset: no limit. Distributed servers share one allowance in Redis
    #[arg(long, env = "CHATSYS_RATE_LIMIT", value_parser = chatsys_counters::rate_limit::parse_rate, global = true)]
    pub rate_limit: Option<chatsys_core::ports::Rate>,

    /// Origins a browser client may call from, comma-separated (`https://app.example.com`;
    /// `*`: any); unset: no CORS
    #[arg(long, env = "CHATSYS_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin, global = true)]
    pub cors_origins: Vec<String>,

    /// Log output: `text` or `json`
    #[arg(long, env = "CHATSYS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// How often the counts are recomputed from the rows (e.g. `1h`, `10m`)
    #[arg(long, env = "CHATSYS_RECONCILE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration, global = true)]
    pub reconcile_interval: Duration,

    /// The most commands written in one transaction
    #[arg(long, env = "CHATSYS_BATCH_MAX", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub batch_max: u32,

    /// How long a batch waits for more commands after its first (e.g. `500us`, `2ms`)
    #[arg(long, env = "CHATSYS_BATCH_LINGER", default_value = "500us", value_parser = humantime::parse_duration, global = true)]
    pub batch_linger: Duration,

    /// Embedded mode: creates that may wait for the writer before new ones get 503
    #[arg(long, env = "CHATSYS_QUEUE_CAPACITY", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub queue_capacity: u32,

    /// Embedded mode: how often new and edited messages are committed to the search index
    #[arg(long, env = "CHATSYS_SEARCH_COMMIT_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration, global = true)]
    pub search_commit_interval: Duration,

    /// Searches run at once per server (embedded mode: threads of the index); more wait
    /// their turn (0: half the cores)
    #[arg(long, env = "CHATSYS_SEARCH_THREADS", default_value_t = 0, global = true)]
    pub search_threads: u32,

    /// How long a search may take before it answers 503
    #[arg(long, env = "CHATSYS_SEARCH_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub search_timeout: Duration,

    /// How long a create, edit or delete may take to become durable before it answers 503,
    /// and the bound of every call to the database (e.g. `10s`)
    #[arg(long, env = "CHATSYS_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub write_timeout: Duration,

    /// Live events: open event streams per server at most (more get 503)
    #[arg(long, env = "CHATSYS_EVENTS_MAX_SUBSCRIBERS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub events_max_subscribers: u32,

    /// Live events: events waiting for one subscriber at most before it is cut off (it then
    /// reconnects with Last-Event-ID and loses nothing)
    #[arg(long, env = "CHATSYS_EVENTS_BACKLOG", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub events_backlog: u32,

    /// Live events: a comment line at least this often while nothing else is sent
    #[arg(long, env = "CHATSYS_EVENTS_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration, global = true)]
    pub events_heartbeat: Duration,

    /// Open connections at most; more wait to be accepted
    #[arg(long, env = "CHATSYS_MAX_CONNECTIONS", default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections: u32,

    /// How long a client may take to send a request's headers (and how long a connection may
    /// wait between requests)
    #[arg(long, env = "CHATSYS_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub header_timeout: Duration,

    /// How long a request's body may take to arrive (else 408)
    #[arg(long, env = "CHATSYS_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub body_timeout: Duration,

    /// How long a request may take to be answered (else 503); live-event streams are exempt
    /// once they have started
    #[arg(long, env = "CHATSYS_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub request_timeout: Duration,

    /// A connection on which nothing moves this long is closed
    #[arg(long, env = "CHATSYS_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub idle_timeout: Duration,

    /// On shutdown, how long open requests may take to finish before they are cut
    #[arg(long, env = "CHATSYS_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_timeout: Duration,

    /// The largest page of a list or search, in bytes (a page cut short links to the rest)
    #[arg(long, env = "CHATSYS_PAGE_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..), global = true)]
    pub page_bytes: u64,

    /// The largest request body accepted, in bytes (larger ones get 413)
    #[arg(long, env = "CHATSYS_BODY_LIMIT", default_value_t = 256 * 1024, global = true)]
    pub body_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which adapters the URLs select.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
}

impl Config {
    /// How commands are gathered: into one transaction (the writer) or one message (the
    /// RabbitMQ publisher).
    pub fn batches(&self) -> chatsys_worker::BatchConfig {
        chatsys_worker::BatchConfig { max_commands: self.batch_max as usize, linger: self.batch_linger }
    }

    pub fn server_limits(&self) -> chatsys_api::server::ServerLimits {
        chatsys_api::server::ServerLimits {
            max_connections: self.max_connections as usize,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
        }
    }

    pub fn request_limits(&self) -> chatsys_api::RequestLimits {
        chatsys_api::RequestLimits { body_timeout: self.body_timeout, request_timeout: self.request_timeout }
    }

    pub fn search_limits(&self) -> chatsys_api::SearchLimits {
        chatsys_api::SearchLimits { timeout: self.search_timeout, threads: self.search_threads() }
    }

    /// Searches at once: as configured, else half the cores (at least one), so searches
    /// never take every core from the request threads.
    pub fn search_threads(&self) -> usize {
        match self.search_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() / 2).max(1),
            n => n as usize,
        }
    }

    pub fn live(&self) -> chatsys_api::live::LiveLimits {
        chatsys_api::live::LiveLimits {
            max_subscribers: self.events_max_subscribers as usize,
            backlog: self.events_backlog as usize,
            heartbeat: self.events_heartbeat,
        }
    }

    /// Embedded with none of the database, Redis and AMQP URLs; distributed with all three;
    /// anything in between is an error that names what is missing.
    pub fn mode(&self) -> Result<Mode, String> {
        let urls = [
            ("CHATSYS_DATABASE_URL", &self.database_url),
            ("CHATSYS_REDIS_URL", &self.redis_url),
            ("CHATSYS_AMQP_URL", &self.amqp_url),
        ];
        let missing: Vec<&str> = urls.iter().filter(|(_, v)| v.is_none()).map(|(name, _)| *name).collect();
        match missing.len() {
            0 => Ok(Mode::Distributed),
            3 if self.elasticsearch_url.is_none() => Ok(Mode::Embedded),
            3 => Err("CHATSYS_ELASTICSEARCH_URL is set, but it is only used in distributed mode, \
                      which also needs CHATSYS_DATABASE_URL, CHATSYS_REDIS_URL and CHATSYS_AMQP_URL"
                .into()),
            _ => Err(format!(
                "distributed mode needs CHATSYS_DATABASE_URL, CHATSYS_REDIS_URL and CHATSYS_AMQP_URL together; missing: {}",
                missing.join(", ")
            )),
        }
    }
}

/// Secrets (URLs may carry passwords, the admin token is one) never reach the logs.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("ops_listen", &self.ops_listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redacted(&self.database_url))
            .field("redis_url", &redacted(&self.redis_url))
            .field("amqp_url", &redacted(&self.amqp_url))
            .field("elasticsearch_url", &redacted(&self.elasticsearch_url))
            .field("amqp_queue", &self.amqp_queue)
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_recovery_settle", &self.redis_recovery_settle)
            .field("database_pool", &self.database_pool)
            .field("admin_token", &redacted(&self.admin_token))
            .field("rate_limit", &self.rate_limit)
            .field("cors_origins", &self.cors_origins)
            .field("cursor_secret", &redacted(&self.cursor_secret))
            .field("log_format", &self.log_format)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("batch_max", &self.batch_max)
            .field("batch_linger", &self.batch_linger)
            .field("write_timeout", &self.write_timeout)
            .field("queue_capacity", &self.queue_capacity)
            .field("search_commit_interval", &self.search_commit_interval)
            .field("search_threads", &self.search_threads)
            .field("search_timeout", &self.search_timeout)
            .field("events_max_subscribers", &self.events_max_subscribers)
            .field("events_backlog", &self.events_backlog)
            .field("events_heartbeat", &self.events_heartbeat)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("page_bytes", &self.page_bytes)
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

/// An origin as browsers send it: `*`, or `http(s)://host[:port]` with nothing after.
fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://"));
    let fine = text == "*"
        || rest
            .is_some_and(|host| !host.is_empty() && !host.contains('/') && host.bytes().all(|b| b.is_ascii_graphic()));
    if fine { Ok(text.to_owned()) } else { Err(format!("{text:?} is not an origin: write https://host[:port], or *")) }
}
