//! Live-events benchmark against a running chatsys (see `bench/events.sh`, which starts one).
//!
//!   chatsys-bench-events idle BASE PID N             RSS of PID before and after N idle subscribers
//!   chatsys-bench-events fanout BASE N RATE SECONDS  N subscribers of one chat, RATE creates/s:
//!                                                    201 → event latency at every subscriber
//!   chatsys-bench-events throughput BASE IDLE SECONDS CONCURRENCY
//!                                                    closed-loop creates without, with IDLE idle
//!                                                    subscribers open, and without again
//!
//! Subscribers are plain sockets (one read buffer each), so thousands fit in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: idle BASE PID N | fanout BASE N RATE SECONDS | throughput BASE IDLE SECONDS CONCURRENCY";
    let arg = |i: usize| args.get(i).cloned().ok_or(usage);
    match arg(1)?.as_str() {
        "idle" => idle(&arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?).await,
        "fanout" => fanout(&arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?, arg(5)?.parse()?).await,
        "throughput" => throughput(&arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?, arg(5)?.parse()?).await,
        _ => Err(usage.into()),
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Self {
        let http = reqwest::Client::builder().pool_max_idle_per_host(512).tcp_nodelay(true).build().unwrap();
        Self { base: base.trim_end_matches('/').to_owned(), http }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self.http.post(format!("{}{path}", self.base)).json(&body).send().await?;
        if r.status() != 201 {
            return Err(format!("POST {path}: {}", r.status()).into());
        }
        Ok(r.json().await?)
    }

    /// A new application and a chat in it: (token, chat number).
    async fn chat(&self) -> Result<(String, u64)> {
        let app = self.post("/applications", json!({"name": "bench"})).await?;
        let token = app["token"].as_str().ok_or("no token")?.to_owned();
        let chat = self.post(&format!("/applications/{token}/chats"), json!({})).await?;
        Ok((token, chat["number"].as_u64().ok_or("no number")?))
    }
}

/// Opens an event stream and reads up to its `ready` event.
async fn subscribe(base: &str, path: &str) -> Result<(TcpStream, Vec<u8>)> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut socket = TcpStream::connect(host).await?;
    socket.set_nodelay(true)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(12).any(|w| w == b"event: ready") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(format!("stream closed before ready: {}", String::from_utf8_lossy(&seen)).into());
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok((socket, seen))
}

fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

async fn idle(base: &str, pid: u32, n: usize) -> Result<()> {
    let api = Api::new(base);
    let (token, chat) = api.chat().await?;
    let path = format!("/applications/{token}/chats/{chat}/events");
    let (before, _) = rss_kib(pid)?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(subscribe(base, &path).await?.0);
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, peak) = rss_kib(pid)?;
    let each = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "idle subscribers: {n} opened in {:.1} s; server RSS {:.1} MiB before, {:.1} MiB after (peak {:.1} MiB): {each:.1} KiB each",
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // a create still reaches all of them
    api.post(&format!("/applications/{token}/chats/{chat}/messages"), json!({"body": "hello"})).await?;
    let mut reached = 0;
    for socket in &mut sockets {
        let mut buf = [0u8; 4096];
        if let Ok(Ok(k)) = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            reached += usize::from(buf[..k].windows(14).any(|w| w == b"event: message"));
        }
    }
    println!("one create reached {reached} of {n} idle subscribers");
    Ok(())
}

/// Reads events from a stream, recording when each message number first arrived.
async fn record(mut socket: TcpStream, mut seen: Vec<u8>, wanted: usize, arrived: Arc<Mutex<Vec<(u64, Instant)>>>) {
    let mut mine = Vec::with_capacity(wanted);
    let mut buf = vec![0u8; 16384];
    let mut from = 0;
    loop {
        // events end with a blank line; the number is in the data line
        while let Some(end) = seen[from..].windows(2).position(|w| w == b"\n\n") {
            let event = &seen[from..from + end];
            from += end + 2;
            if event.windows(14).any(|w| w == b"event: message") {
                let text = String::from_utf8_lossy(event);
                let number = text
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                    .and_then(|v| v["number"].as_u64());
                if let Some(number) = number {
                    mine.push((number, Instant::now()));
                }
            }
        }
        if mine.len() >= wanted {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => break,
        }
        if from > 65536 {
            seen.drain(..from);
            from = 0;
        }
    }
    arrived.lock().unwrap().extend(mine);
}

async fn fanout(base: &str, n: usize, rate: u64, seconds: u64) -> Result<()> {
    let api = Arc::new(Api::new(base));
    let (token, chat) = api.chat().await?;
    let events = format!("/applications/{token}/chats/{chat}/events");
    let total = (rate * seconds) as usize;
    let arrived = Arc::new(Mutex::new(Vec::with_capacity(n * total)));
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let (socket, seen) = subscribe(base, &events).await?;
        readers.push(tokio::spawn(record(socket, seen, total, arrived.clone())));
    }
    // paced creates; each 201's instant is kept by number
    let acked = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let path = format!("/applications/{token}/chats/{chat}/messages");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut creates = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let (api, path, acked) = (api.clone(), path.clone(), acked.clone());
        creates.push(tokio::spawn(async move {
            let created = api.post(&path, json!({"body": format!("message {i}")})).await?;
            let number = created["number"].as_u64().ok_or("no number")?;
            acked.lock().unwrap().insert(number, Instant::now());
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for create in creates {
        create.await??;
    }
    for reader in readers {
        reader.await?;
    }
    let acked = acked.lock().unwrap();
    let arrived = arrived.lock().unwrap();
    // an event may arrive before its client has read the 201: that counts as 0
    let mut latencies: Vec<Duration> = arrived
        .iter()
        .filter_map(|(number, at)| acked.get(number).map(|acked| at.saturating_duration_since(*acked)))
        .collect();
    latencies.sort_unstable();
    let pct = |p: usize| latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1))).copied();
    let expected = n * total;
    println!(
        "fan-out: {n} subscribers, {rate} creates/s for {seconds} s: {} of {expected} events arrived; 201 → event p50 {:?}, p99 {:?}, max {:?}",
        arrived.len(),
        pct(50).unwrap_or_default(),
        pct(99).unwrap_or_default(),
        latencies.last().copied().unwrap_or_default()
    );
    Ok(())
}

/// Creates per second over `seconds` with `concurrency` clients each creating in a loop.
async fn creates_per_second(api: &Arc<Api>, path: &str, seconds: u64, concurrency: usize) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (api, path) = (api.clone(), path.to_owned());
        clients.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                api.post(&path, json!({"body": "throughput"})).await?;
                done += 1;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(done)
        }));
    }
    let mut done = 0;
    for client in clients {
        done += client.await??;
    }
    Ok(done as f64 / seconds as f64)
}

async fn throughput(base: &str, idle: usize, seconds: u64, concurrency: usize) -> Result<()> {
    let api = Arc::new(Api::new(base));
    let (token, chat) = api.chat().await?;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    creates_per_second(&api, &path, 2, concurrency).await?; // warm-up
    // without, with, without: the store grows during the run, so the two runs without
    // subscribers bracket the one with them
    let before = creates_per_second(&api, &path, seconds, concurrency).await?;
    let (other_token, other_chat) = api.chat().await?;
    let events = format!("/applications/{other_token}/chats/{other_chat}/events");
    let mut sockets = Vec::with_capacity(idle);
    for _ in 0..idle {
        sockets.push(subscribe(base, &events).await?.0);
    }
    let with = creates_per_second(&api, &path, seconds, concurrency).await?;
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = creates_per_second(&api, &path, seconds, concurrency).await?;
    let without = (before + after) / 2.0;
    println!(
        "creates/s with {concurrency} clients: {before:.0} without subscribers, {with:.0} with {idle} idle subscribers open, \
         {after:.0} without again ({:+.1} % against the mean without)",
        (with / without - 1.0) * 100.0
    );
    Ok(())
}
