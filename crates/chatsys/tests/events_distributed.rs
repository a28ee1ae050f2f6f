//! Live events through a cluster (3 API servers, 2 workers, this machine's MariaDB, Redis
//! and RabbitMQ): subscribers that drop and reconnect at random moments, to random servers,
//! while several clients create and edit, each end with exactly the acknowledged state.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Client;
use common::cluster::Cluster;
use common::sse::Sse;
use rand::Rng as _;
use serde_json::json;

/// The chat's state as the writers were told it: number → body of the last acknowledged change.
type State = Arc<Mutex<BTreeMap<u64, String>>>;

async fn write(
    servers: Vec<String>,
    path: String,
    writer: usize,
    state: State,
    created: Arc<Mutex<Vec<(u64, Instant)>>>,
) {
    let clients: Vec<Client> = servers.iter().map(|s| Client::new(s)).collect();
    let mut mine = Vec::new();
    for i in 0..60 {
        let client = &clients[rand::rng().random_range(0..clients.len())];
        if mine.is_empty() || rand::rng().random_bool(0.6) {
            let body = format!("writer {writer} message {i}");
            let r = client.post(&path, json!({"body": body})).await;
            assert_eq!(r.status, 201, "{r:?}");
            let n = r.json["number"].as_u64().unwrap();
            created.lock().unwrap().push((n, Instant::now()));
            state.lock().unwrap().insert(n, body);
            mine.push(n);
        } else {
            let n = mine[rand::rng().random_range(0..mine.len())];
            let body = format!("writer {writer} edit {i}");
            let r = client.request("PUT", &format!("{path}/{n}"), Some(json!({"body": body}))).await;
            assert_eq!(r.status, 200, "{r:?}");
            state.lock().unwrap().insert(n, body);
        }
    }
}

/// Reads events of `chat` until told to stop, reconnecting at random moments to random
/// servers with the id of the last event read; the state it ends with.
async fn subscribe(
    servers: Vec<String>,
    path: String,
    chat: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    started: Arc<tokio::sync::Barrier>,
) -> BTreeMap<u64, String> {
    let http = reqwest::Client::new();
    let mut state = BTreeMap::new();
    let mut last: Option<u64> = None;
    let mut finishing = false;
    loop {
        let server = &servers[rand::rng().random_range(0..servers.len())];
        let mut stream = Sse::open(&http, &format!("{server}{path}"), last).await;
        assert_eq!(stream.status, 200, "{:?}", stream.problem);
        if last.is_none() {
            // the first stream starts at the chat's current position (`ready`): nothing
            // committed before it is carried, so the writers wait until every subscriber has it
            let ready = stream.next(Duration::from_secs(5)).await.expect("a first event");
            assert_eq!(ready.event, "ready");
            last = Some(ready.id.expect("every event has an id"));
            started.wait().await;
        }
        let until = Instant::now() + Duration::from_millis(rand::rng().random_range(30..400));
        let mut previous = last.unwrap_or(0);
        loop {
            let wait = if finishing { Duration::from_secs(2) } else { until.saturating_duration_since(Instant::now()) };
            let Some(event) = stream.next(wait).await else { break };
            let id = event.id.expect("every event has an id");
            assert!(
                id > previous || (event.event == "ready" && id >= previous),
                "positions only increase on a connection"
            );
            previous = id;
            last = Some(id);
            match event.event.as_str() {
                "ready" => {}
                "message" => {
                    assert_eq!(event.data["chat_number"], chat, "no event of another chat or application");
                    state.insert(
                        event.data["number"].as_u64().unwrap(),
                        event.data["body"].as_str().unwrap().to_owned(),
                    );
                }
                other => panic!("unexpected event {other}"),
            }
        }
        if finishing {
            return state;
        }
        finishing = stop.load(std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_reconnecting_to_random_servers_end_with_exactly_the_acknowledged_state() {
    let Some(cluster) = Cluster::start(3, 2, false).await else { return };
    let servers: Vec<String> = cluster.apis.iter().map(|a| a.base.clone()).collect();
    let front = Client::new(&servers[0]);
    let token = front.new_app().await;
    let chat = front.new_chat(&token).await;
    let noise_chat = front.new_chat(&token).await;
    let other_token = front.new_app().await;
    let other_chat = front.new_chat(&other_token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let events = format!("/applications/{token}/chats/{chat}/events");

    // one subscriber that stays on one server: how long from a 201 to its event
    let http = reqwest::Client::new();
    let mut steady = Sse::open(&http, &format!("{}{events}", servers[1]), None).await;
    assert_eq!(steady.next(Duration::from_secs(5)).await.unwrap().event, "ready");
    let arrivals = Arc::new(Mutex::new(BTreeMap::<u64, Instant>::new()));
    let steady_task = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(e) = steady.next(Duration::from_secs(4)).await {
                if let Some(n) = e.data["number"].as_u64() {
                    arrivals.lock().unwrap().entry(n).or_insert_with(Instant::now);
                }
            }
        })
    };

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Arc::new(tokio::sync::Barrier::new(6));
    let subscribers: Vec<_> = (0..5)
        .map(|_| tokio::spawn(subscribe(servers.clone(), events.clone(), chat, stop.clone(), started.clone())))
        .collect();
    started.wait().await;
    let state: State = Arc::default();
    let created = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> =
        (0..4).map(|w| tokio::spawn(write(servers.clone(), path.clone(), w, state.clone(), created.clone()))).collect();
    let noise: Vec<_> = [(token.clone(), noise_chat), (other_token.clone(), other_chat)]
        .into_iter()
        .map(|(t, c)| {
            let servers = servers.clone();
            tokio::spawn(async move {
                let client = Client::new(&servers[2]);
                for i in 0..40 {
                    client
                        .post(&format!("/applications/{t}/chats/{c}/messages"), json!({"body": format!("noise {i}")}))
                        .await;
                }
            })
        })
        .collect();
    for w in writers.into_iter().chain(noise) {
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let expected = state.lock().unwrap().clone();
    for s in subscribers {
        assert_eq!(s.await.unwrap(), expected, "a subscriber ends with exactly the acknowledged state");
    }
    let stored: BTreeMap<u64, String> = front
        .all_pages(&format!("{path}?limit=1000"))
        .await
        .iter()
        .map(|m| (m["number"].as_u64().unwrap(), m["body"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(stored, expected, "which is the stored state");

    steady_task.await.unwrap();
    let arrivals = arrivals.lock().unwrap();
    let mut delays: Vec<Duration> = created
        .lock()
        .unwrap()
        .iter()
        .map(|(n, acked)| {
            arrivals.get(n).expect("every create reached the steady subscriber").saturating_duration_since(*acked)
        })
        .collect();
    delays.sort_unstable();
    let p99 = delays[(delays.len() * 99).div_ceil(100) - 1];
    assert!(p99 <= Duration::from_secs(1), "201 to event p99 {p99:?} (median {:?})", delays[delays.len() / 2]);
    eprintln!("201 to event: median {:?}, p99 {p99:?} over {} creates", delays[delays.len() / 2], delays.len());
}
