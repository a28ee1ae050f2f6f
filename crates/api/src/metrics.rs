//! Prometheus metrics: one process-wide recorder (the `metrics` facade), rendered at
//! `GET /metrics`. Every crate records through the facade; names are described here.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const UPKEEP_INTERVAL: Duration = Duration::from_secs(2);
const SIZES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_commands".into()), SIZES))
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        spawn_upkeep(handle.clone());
        handle
    })
}

/// Histograms keep every recorded value until an upkeep folds them into their buckets; a
/// scrape runs one, but nothing says anybody scrapes, so a thread does it every few seconds
/// (without it, memory grows by every request's latency sample).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded only on scrape");
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests answered, by route, method and status");
    describe_histogram!("http_request_duration_seconds", "HTTP request latency, by route and method");
    describe_counter!("chatsys_creates_total", "Creates answered 201, by kind (application, chat, message)");
    describe_counter!("chatsys_batches_total", "Batches taken by the writer, by outcome (written, failed)");
    describe_histogram!("chatsys_batch_commands", "Commands per written batch");
    describe_histogram!("chatsys_batch_write_seconds", "Time to write one batch to the store");
    describe_histogram!("chatsys_create_commit_lag_seconds", "From a create's number to its commit in the store");
    describe_gauge!("chatsys_queue_in_flight", "Commands handed to the queue and not yet settled");
    describe_histogram!("chatsys_search_duration_seconds", "Search latency in the index");
    describe_counter!("chatsys_counter_seeds_total", "Counters seeded from the store, by kind (chat, message)");
    describe_counter!("chatsys_rate_limited_total", "Requests answered 429: an application's rate limit was used up");
    describe_counter!(
        "chatsys_rate_limit_errors_total",
        "Requests let through because the rate limiter did not answer"
    );
}

/// Counts and times every request by its route template (never its concrete path, which
/// holds tokens) and its method. Both come from fixed sets: a client cannot grow the
/// number of series by sending odd paths or methods.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("http_request_duration_seconds", "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("http_requests_total", "route" => route, "method" => method, "status" => status).increment(1);
    response
}

/// The method as a label: the standard ones by name, anything else `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
pub async fn render() -> Response {
    let handle = handle();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}
