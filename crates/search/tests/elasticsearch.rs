//! The Elasticsearch adapter against a mock HTTP server that records requests and answers
//! with Elasticsearch 8 responses (shapes from its documentation; `fixtures/elasticsearch/`).
//! No Elasticsearch runs on the CI machines; `elasticsearch_live.rs` runs the conformance
//! suite against a real one when `CHATSYS_TEST_ES_URL` is set.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chatsys_core::ports::{ChangedMessage, SearchIndex, SearchPosition};
use chatsys_core::{AppId, ChatNumber, ErrorKind, MessageNumber, Position, SearchQuery};
use chatsys_search::elasticsearch::{ElasticConfig, ElasticIndex, index_definition};
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/elasticsearch/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: String,
}

#[derive(Default)]
struct Mock {
    seen: Mutex<Vec<Seen>>,
    answers: Mutex<VecDeque<(u16, String)>>,
}

async fn answer(State(mock): State<Arc<Mock>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    mock.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        content_type: parts.headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, text) = mock.answers.lock().unwrap().pop_front().unwrap_or((500, "{}".into()));
    (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], text).into_response()
}

/// A mock cluster answering `answers` in order; returns its URL.
async fn mock(answers: Vec<(u16, String)>) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock { seen: Mutex::default(), answers: Mutex::new(answers.into()) });
    let app = Router::new().fallback(answer).with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, mock)
}

/// An adapter whose alias already exists (HEAD /_alias answers 200), and the mock.
async fn connected(answers: Vec<(u16, String)>) -> (ElasticIndex, Arc<Mock>) {
    let mut all = vec![(200, String::new())];
    all.extend(answers);
    let (url, mock) = mock(all).await;
    let index = ElasticIndex::connect(ElasticConfig::new(url)).await.unwrap();
    mock.seen.lock().unwrap().clear();
    (index, mock)
}

fn doc(number: u64, body: &str, position: u64) -> ChangedMessage {
    ChangedMessage {
        app: AppId(1),
        chat: ChatNumber::new(1).unwrap(),
        number: MessageNumber::new(number).unwrap(),
        body: Some(body.into()),
        position: Position(position),
        first_write: false,
    }
}

#[test]
fn the_index_definition_is_the_reviewed_snapshot() {
    let snapshot: Value = serde_json::from_str(&fixture("index_definition.json")).unwrap();
    assert_eq!(index_definition(0), snapshot, "update tests/fixtures/elasticsearch/index_definition.json on purpose");
}

#[tokio::test]
async fn a_missing_alias_gets_an_index_created_behind_it() {
    let (url, mock) = mock(vec![(404, "{}".into()), (200, fixture("create_index_ok.json"))]).await;
    ElasticIndex::connect(ElasticConfig::new(url)).await.unwrap();
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("HEAD", "/_alias/chatsys-messages"));
    assert_eq!(seen[1].method, "PUT");
    assert!(seen[1].path.starts_with("/chatsys-messages-"), "{}", seen[1].path);
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body["aliases"]["chatsys-messages"]["is_write_index"], true);
    assert_eq!(body["mappings"], index_definition(0)["mappings"]);
    assert_eq!(body["settings"], index_definition(0)["settings"]);
}

#[tokio::test]
async fn bulk_requests_are_ndjson_with_natural_ids_routing_and_external_versions() {
    let (index, mock) = connected(vec![(200, fixture("bulk_ok.json"))]).await;
    index.index(&[doc(1, "hello \"world\"\nsecond line", 7), doc(2, "x", 9)], &[], 0).await.unwrap();
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/_bulk"));
    assert_eq!(seen[0].content_type, "application/x-ndjson");
    assert!(seen[0].body.ends_with('\n'), "NDJSON ends with a newline");
    let lines: Vec<Value> = seen[0].body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "an action and a document per message, one JSON value per line");
    assert_eq!(
        lines[0]["index"],
        serde_json::json!({"_index": "chatsys-messages", "_id": "1_1_1", "routing": "1/1", "version": 7, "version_type": "external"})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"app": 1, "chat": "1/1", "number": 1, "length": 25, "body": "hello \"world\"\nsecond line"})
    );
    assert_eq!(lines[2]["index"]["version"], 9);
}

#[tokio::test]
async fn a_bulk_with_errors_counts_409_as_done_and_retries_only_the_429() {
    let (index, mock) = connected(vec![(200, fixture("bulk_errors.json")), (200, fixture("bulk_ok.json"))]).await;
    index.index(&[doc(1, "a", 1), doc(2, "b", 1), doc(3, "c", 1)], &[], 0).await.unwrap();
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one retry");
    let retried: Vec<Value> = seen[1].body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(retried.len(), 2, "only the refused item is sent again");
    assert_eq!(retried[0]["index"]["_id"], "1_1_3");
}

#[tokio::test]
async fn a_document_the_cluster_refuses_for_good_is_an_error_not_a_retry() {
    let (index, mock) = connected(vec![(200, fixture("bulk_mapping_error.json"))]).await;
    let error = index.index(&[doc(1, "a", 1)], &[], 0).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Internal);
    assert!(error.detail().contains("strict"), "{}", error.detail());
    assert_eq!(mock.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn searches_filter_the_chat_route_to_it_and_page_by_sort_values() {
    let (index, mock) = connected(vec![(200, fixture("search_hits.json"))]).await;
    let query = SearchQuery::parse("ell W").unwrap();
    let after = SearchPosition { length: 11, number: MessageNumber::new(9).unwrap() };
    let hits = index.search(AppId(1), ChatNumber::new(7).unwrap(), &query, Some(after), 3).await.unwrap();
    let numbers: Vec<u64> = hits.iter().map(|h| h.number.get()).collect();
    assert_eq!(numbers, [5, 3, 1]);
    assert_eq!(hits.iter().map(|h| h.length).collect::<Vec<_>>(), [11, 11, 40]);
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/chatsys-messages/_search"));
    assert_eq!(seen[0].query, "routing=1%2F7");
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["query"]["bool"]["filter"][0], serde_json::json!({"term": {"chat": "1/7"}}));
    assert_eq!(body["query"]["bool"]["must"][0], serde_json::json!({"match_phrase": {"body": {"query": "ell"}}}));
    assert_eq!(
        body["query"]["bool"]["must"][1],
        serde_json::json!({"match": {"body.short": {"query": "w", "operator": "and"}}})
    );
    assert_eq!(body["sort"], serde_json::json!([{"length": "asc"}, {"number": "desc"}]));
    assert_eq!(body["search_after"], serde_json::json!([11, 9]));
    assert_eq!(body["size"], 3);
}

#[tokio::test]
async fn a_missing_index_is_reported_as_unavailable_with_the_fix() {
    let (index, _mock) = connected(vec![(404, fixture("index_not_found.json"))]).await;
    let error = index
        .search(AppId(1), ChatNumber::new(1).unwrap(), &SearchQuery::parse("x").unwrap(), None, 10)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.detail().contains("reindex"), "{}", error.detail());
}

#[tokio::test]
async fn a_cluster_that_refuses_connections_is_unavailable() {
    let error =
        ElasticIndex::connect(ElasticConfig::new("http://127.0.0.1:1")).await.err().expect("nothing listens on port 1");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn an_erasure_deletes_by_query_on_the_chat_s_shard_or_the_whole_application_and_refreshes() {
    use chatsys_core::ports::Erasure;
    let (index, mock) =
        connected(vec![(200, fixture("delete_by_query.json")), (200, fixture("delete_by_query.json"))]).await;
    let erased = [Erasure::Chat(AppId(1), ChatNumber::new(2).unwrap()), Erasure::Application(AppId(1))];
    index.index(&[], &erased, 0).await.unwrap();
    let seen = mock.seen.lock().unwrap().clone();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/chatsys-messages/_delete_by_query"));
    for part in ["refresh=true", "conflicts=proceed", "routing=1%2F2"] {
        assert!(seen[0].query.contains(part), "{part} in {}", seen[0].query);
    }
    let body: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"query": {"term": {"chat": "1/2"}}}));
    assert!(!seen[1].query.contains("routing"), "an application spans every shard");
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body, serde_json::json!({"query": {"term": {"app": 1}}}));
}

#[tokio::test]
async fn a_deleted_message_is_written_as_an_empty_document_of_its_position() {
    let (index, mock) = connected(vec![(200, fixture("bulk_ok.json"))]).await;
    let mut gone = doc(3, "x", 12);
    gone.body = None;
    index.index(&[gone], &[], 0).await.unwrap();
    let seen = mock.seen.lock().unwrap().clone();
    let lines: Vec<Value> = seen[0].body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["index"]["version"], 12);
    assert_eq!(lines[1]["body"], "", "no text is left");
}
