//! Elasticsearch 8: the shared search index of distributed mode (plain HTTP, `reqwest`).
//!
//! The index lives behind an alias (`chatsys-messages` by default) so that `chatsys reindex`
//! can build a new one and swap it in. It is created at start-up if absent, with explicit
//! settings and a strict mapping: the body is analysed into lower-cased character trigrams
//! (an `ngram` tokenizer with min = max = 3 and no `token_chars` restriction gives each gram
//! its character position), searched with `match_phrase` for terms of 3+ characters, and
//! into 1–2-grams (`body.short`) for shorter terms. Documents are keyed by their natural key,
//! routed by their chat, and written with external versioning (the message's position, which
//! grows with every change of it), so replays and stale edits are no-ops (409 per item =
//! already applied). A deleted message is written as an empty document of its delete's
//! position: no text is left, and no older state can come back over it.
//! Highlights are computed in Rust from the stored body, as for Tantivy.
//!
//! Over 300 lines on purpose: the index definition, versioned bulk writes, queries and
//! erasure are one HTTP protocol, tested against one set of recorded responses.

use std::time::Duration;

use async_trait::async_trait;
use chatsys_core::ports::{ChangedMessage, Erasure, SearchHit, SearchIndex, SearchPosition};
use chatsys_core::{AppId, ChatNumber, Error, MessageNumber, Result, SearchQuery, Timestamp};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ElasticConfig {
    /// `http://host:9200`
    pub url: String,
    /// The alias every request goes through.
    pub alias: String,
    /// Replicas of the index (0 for a single node).
    pub replicas: u32,
}

impl ElasticConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into().trim_end_matches('/').to_owned(), alias: "chatsys-messages".into(), replicas: 0 }
    }
}

pub struct ElasticIndex {
    http: reqwest::Client,
    config: ElasticConfig,
}

/// Attempts for a bulk item or a search that the cluster answers with 429 or 5xx.
const ATTEMPTS: u32 = 5;

fn unavailable(context: &'static str) -> impl Fn(reqwest::Error) -> Error {
    move |e| Error::unavailable(format!("elasticsearch is unavailable ({context})")).with_source(e)
}

/// The index's settings and mapping.
pub fn index_definition(replicas: u32) -> Value {
    json!({
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": replicas,
            "index.max_ngram_diff": 1,
            "analysis": {
                "tokenizer": {
                    "chatsys_trigram": {"type": "ngram", "min_gram": 3, "max_gram": 3, "token_chars": []},
                    "chatsys_short": {"type": "ngram", "min_gram": 1, "max_gram": 2, "token_chars": []}
                },
                "analyzer": {
                    "chatsys_trigrams": {"type": "custom", "tokenizer": "chatsys_trigram", "filter": ["lowercase"]},
                    "chatsys_short_grams": {"type": "custom", "tokenizer": "chatsys_short", "filter": ["lowercase"]}
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "_routing": {"required": true},
            "_source": {"excludes": ["body"]},
            "properties": {
                "app": {"type": "long"},
                "chat": {"type": "keyword"},
                "number": {"type": "long"},
                "length": {"type": "long"},
                "body": {
                    "type": "text",
                    "analyzer": "chatsys_trigrams",
                    "fields": {"short": {"type": "text", "analyzer": "chatsys_short_grams", "index_options": "freqs"}}
                }
            }
        }
    })
}

fn chat_key(app: AppId, chat: ChatNumber) -> String {
    format!("{}/{chat}", app.0)
}

/// The `_bulk` body: an action line and a document line per message, NDJSON, newline-ended.
pub fn bulk_body(index: &str, docs: &[ChangedMessage]) -> String {
    let mut out = String::new();
    for d in docs {
        let action = json!({"index": {
            "_index": index,
            "_id": format!("{}_{}_{}", d.app.0, d.chat, d.number),
            "routing": chat_key(d.app, d.chat),
            "version": d.position.get(),
            "version_type": "external"
        }});
        let body = d.body.as_deref().unwrap_or("");
        let length = body.chars().count();
        let doc = json!({"app": d.app.0, "chat": chat_key(d.app, d.chat), "number": d.number.get(), "length": length, "body": body});
        out.push_str(&action.to_string());
        out.push('\n');
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    out
}

/// The `_delete_by_query` body of an erasure, and its routing (a chat's documents live on
/// its chat's shard).
pub fn erase_query(erasure: Erasure) -> (Value, Option<String>) {
    match erasure {
        Erasure::Chat(app, chat) => {
            (json!({"query": {"term": {"chat": chat_key(app, chat)}}}), Some(chat_key(app, chat)))
        }
        Erasure::Application(app) => (json!({"query": {"term": {"app": app.0}}}), None),
    }
}

/// What a `_bulk` response says: the positions of items to send again (429, 5xx); an
/// error for an item the cluster refused for good. 409 means the same or a newer version is
/// there already: done.
pub fn bulk_outcome(response: &Value) -> Result<Vec<usize>> {
    if response["errors"].as_bool() != Some(true) {
        return Ok(Vec::new());
    }
    let items = response["items"].as_array().ok_or_else(|| Error::internal("a bulk response without items"))?;
    let mut retry = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let result = item.get("index").unwrap_or(item);
        match result["status"].as_u64().unwrap_or(0) {
            200 | 201 | 409 => {}
            429 | 500..=599 => retry.push(i),
            status => {
                let reason = result["error"]["reason"].as_str().unwrap_or("unknown");
                return Err(Error::internal(format!("elasticsearch refused a document ({status}): {reason}")));
            }
        }
    }
    Ok(retry)
}

/// The search request: the chat as a filter, one clause per term, ranked by the body's
/// length then the number (relevance from the message alone: see `SearchPosition`), with
/// no scoring at all.
pub fn search_body(
    app: AppId,
    chat: ChatNumber,
    query: &SearchQuery,
    after: Option<SearchPosition>,
    size: u32,
) -> Value {
    let must: Vec<Value> = query
        .terms()
        .iter()
        .map(|term| {
            if term.chars().count() >= 3 {
                json!({"match_phrase": {"body": {"query": term}}})
            } else {
                json!({"match": {"body.short": {"query": term, "operator": "and"}}})
            }
        })
        .collect();
    let mut body = json!({
        "size": size,
        "track_total_hits": false,
        "_source": false,
        "query": {"bool": {"filter": [{"term": {"chat": chat_key(app, chat)}}], "must": must}},
        "sort": [{"length": "asc"}, {"number": "desc"}]
    });
    if let Some(after) = after {
        body["search_after"] = json!([after.length, after.number.get()]);
    }
    body
}

/// The hits of a search response, from their `sort` values.
pub fn search_hits(response: &Value) -> Result<Vec<SearchHit>> {
    let hits = response["hits"]["hits"].as_array().ok_or_else(|| Error::internal("a search response without hits"))?;
    hits.iter()
        .map(|hit| {
            let sort = &hit["sort"];
            let length = sort[0].as_u64().ok_or_else(|| Error::internal("a hit without its length"))?;
            let number = sort[1].as_u64().and_then(|n| MessageNumber::new(n).ok());
            let number = number.ok_or_else(|| Error::internal("a hit without its number"))?;
            Ok(SearchHit { length, number })
        })
        .collect()
}

impl ElasticIndex {
    /// Connects and makes sure the alias points at an index, creating one if needed.
    pub async fn connect(config: ElasticConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::internal("cannot build an HTTP client").with_source(e))?;
        let index = Self { http, config };
        index.ensure_alias().await?;
        Ok(index)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.url)
    }

    async fn ensure_alias(&self) -> Result<()> {
        let response = self
            .http
            .head(self.url(&format!("/_alias/{}", self.config.alias)))
            .send()
            .await
            .map_err(unavailable("reading the alias"))?;
        if response.status().is_success() {
            return Ok(());
        }
        let name = format!("{}-{}", self.config.alias, Timestamp::now().as_micros());
        self.create_index(&name, true).await
    }

    /// Creates an index; with `aliased`, the alias points at it (as its write index).
    async fn create_index(&self, name: &str, aliased: bool) -> Result<()> {
        let mut definition = index_definition(self.config.replicas);
        if aliased {
            definition["aliases"] = json!({ &self.config.alias: {"is_write_index": true} });
        }
        let response = self
            .http
            .put(self.url(&format!("/{name}")))
            .json(&definition)
            .send()
            .await
            .map_err(unavailable("creating the index"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200 | 201 => {
                tracing::info!(index = name, alias = %self.config.alias, "search index created");
                Ok(())
            }
            // another server created it at the same moment
            400 if body["error"]["type"] == "resource_already_exists_exception" => Ok(()),
            _ => Err(Error::unavailable(format!(
                "elasticsearch did not create the index ({status}): {}",
                body["error"]["reason"]
            ))),
        }
    }

    /// Writes documents to `index`, sending again what the cluster could not take yet.
    async fn bulk(&self, index: &str, docs: &[ChangedMessage]) -> Result<()> {
        let mut pending: Vec<ChangedMessage> = docs.to_vec();
        for attempt in 1..=ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            let response = self
                .http
                .post(self.url("/_bulk"))
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(bulk_body(index, &pending))
                .send()
                .await
                .map_err(unavailable("indexing"))?;
            let status = response.status();
            if status.as_u16() == 429 || status.is_server_error() {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let body: Value = response.json().await.map_err(unavailable("reading a bulk response"))?;
            if !status.is_success() {
                return Err(Error::unavailable(format!(
                    "elasticsearch refused a bulk request ({status}): {}",
                    body["error"]["reason"]
                )));
            }
            let retry = bulk_outcome(&body)?;
            pending = retry.into_iter().map(|i| pending[i].clone()).collect();
            if !pending.is_empty() {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(Error::unavailable(format!("elasticsearch kept refusing {} documents (429/5xx)", pending.len())))
        }
    }

    /// Deletes every document of a deleted chat or an erased application, and refreshes, so
    /// that no search finds them and no document keeps their text.
    async fn erase(&self, erasure: Erasure) -> Result<()> {
        let (query, routing) = erase_query(erasure);
        let mut request = self
            .http
            .post(self.url(&format!("/{}/_delete_by_query", self.config.alias)))
            .query(&[("refresh", "true"), ("conflicts", "proceed")])
            .json(&query);
        if let Some(routing) = routing {
            request = request.query(&[("routing", routing)]);
        }
        let response = request.send().await.map_err(unavailable("erasing"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() && body["failures"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        Err(Error::unavailable(format!("elasticsearch did not erase ({status}): {}", body["error"]["reason"])))
    }

    /// Builds a new index from the store's messages and swaps the alias to it: a first pass
    /// into the new index, the swap, then a second pass through the alias (versions make it
    /// a no-op for what is there) for what changed during the first.
    pub async fn rebuild(&self, store: &dyn chatsys_core::ports::Store) -> Result<u64> {
        let name = format!("{}-{}", self.config.alias, Timestamp::now().as_micros());
        self.create_index(&name, false).await?;
        let copied = self.copy(store, &name).await?;
        let old = self
            .http
            .get(self.url(&format!("/_alias/{}", self.config.alias)))
            .send()
            .await
            .map_err(unavailable("reading the alias"))?;
        let old: Value = old.json().await.unwrap_or(Value::Null);
        let mut actions = vec![json!({"add": {"index": name, "alias": self.config.alias, "is_write_index": true}})];
        let previous: Vec<String> = old.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        for index in &previous {
            actions.push(json!({"remove": {"index": index, "alias": self.config.alias}}));
        }
        let swapped = self
            .http
            .post(self.url("/_aliases"))
            .json(&json!({"actions": actions}))
            .send()
            .await
            .map_err(unavailable("swapping the alias"))?;
        if !swapped.status().is_success() {
            return Err(Error::unavailable(format!("elasticsearch did not swap the alias ({})", swapped.status())));
        }
        self.copy(store, &self.config.alias).await?;
        for index in previous {
            let _ = self.http.delete(self.url(&format!("/{index}"))).send().await;
        }
        Ok(copied)
    }

    async fn copy(&self, store: &dyn chatsys_core::ports::Store, index: &str) -> Result<u64> {
        let mut after: Option<ChangedMessage> = None;
        let mut copied = 0;
        loop {
            let page = store.scan_messages(after.as_ref(), 2_000).await?;
            let Some(last) = page.last().cloned() else { return Ok(copied) };
            self.bulk(index, &page).await?;
            copied += page.len() as u64;
            after = Some(last);
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(6)))
}

#[async_trait]
impl SearchIndex for ElasticIndex {
    async fn ping(&self) -> Result<()> {
        let response = self
            .http
            .get(self.url("/_cluster/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(unavailable("checking health"))?;
        let health: Value = response.json().await.map_err(unavailable("reading health"))?;
        match health["status"].as_str() {
            Some("green" | "yellow") => Ok(()),
            other => Err(Error::unavailable(format!("elasticsearch cluster status is {}", other.unwrap_or("unknown")))),
        }
    }

    async fn index(&self, changed: &[ChangedMessage], erased: &[Erasure], _rev: u64) -> Result<()> {
        for erasure in erased {
            self.erase(*erasure).await?;
        }
        if changed.is_empty() {
            return Ok(());
        }
        self.bulk(&self.config.alias, changed).await
    }

    fn keeps_versions(&self) -> bool {
        true
    }

    async fn search(
        &self,
        app: AppId,
        chat: ChatNumber,
        query: &SearchQuery,
        after: Option<SearchPosition>,
        limit: u32,
    ) -> Result<Vec<SearchHit>> {
        let body = search_body(app, chat, query, after, limit);
        let url = self.url(&format!("/{}/_search", self.config.alias));
        for attempt in 1..=2 {
            let response = self
                .http
                .post(&url)
                .query(&[("routing", chat_key(app, chat))])
                .json(&body)
                .send()
                .await
                .map_err(unavailable("searching"))?;
            let status = response.status();
            let answer: Value = response.json().await.map_err(unavailable("reading search results"))?;
            match status.as_u16() {
                200 => return search_hits(&answer),
                429 | 500..=599 if attempt == 1 => tokio::time::sleep(backoff(1)).await,
                404 => return Err(Error::unavailable("the search index does not exist; run `chatsys reindex`")),
                _ => {
                    return Err(Error::unavailable(format!(
                        "elasticsearch did not search ({status}): {}",
                        answer["error"]["reason"]
                    )));
                }
            }
        }
        Err(Error::unavailable("elasticsearch is overloaded"))
    }
}
