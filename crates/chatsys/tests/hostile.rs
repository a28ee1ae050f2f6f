//! A hostile or broken client, with real sockets against the real binary: slow and idle
//! connections, odd methods, heavy pages, odd request ids. The server's time and memory per
//! client stay bounded, and everyone else is served meanwhile.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Seconds until the server closes a connection that sent `bytes` and then nothing.
fn closed_after(addr: &str, bytes: &[u8], give_up: Duration) -> Option<f64> {
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.write_all(bytes).unwrap();
    socket.set_read_timeout(Some(give_up)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return Some(started.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(started.elapsed().as_secs_f64()),
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_connections_are_cut_and_others_are_served_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("CHATSYS_HEADER_TIMEOUT", "1s"), ("CHATSYS_BODY_TIMEOUT", "1s"), ("CHATSYS_IDLE_TIMEOUT", "2s")];
    let server = Server::start_with(dir.path(), &env);
    let addr = address(&server);
    let token = server.new_app().await;

    // a thousand sockets that hang: idle, half-sent headers, half-sent bodies
    let mut hanging = Vec::new();
    for i in 0..1000 {
        let mut socket = TcpStream::connect(&addr).unwrap();
        match i % 3 {
            0 => {}
            1 => socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap(),
            _ => socket
                .write_all(
                    format!(
                        "POST /applications/{token}/chats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                         Content-Length: 100\r\n\r\n{{"
                    )
                    .as_bytes(),
                )
                .unwrap(),
        }
        hanging.push(socket);
    }
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(server.get("/healthz").await.status, 200, "others are served while 1000 sockets hang");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "and promptly ({:?})", started.elapsed());

    let header = closed_after(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10));
    assert!(header.is_some_and(|s| s < 3.0), "half-sent headers are cut at the header timeout: {header:?}");
    let idle = closed_after(&addr, b"", Duration::from_secs(10));
    assert!(idle.is_some_and(|s| s < 4.0), "an idle socket is closed: {idle:?}");
    // a body that does not arrive, declared or chunked; a chunked one that cannot be read
    let start = format!("POST /applications/{token}/chats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n");
    for (rest, status) in [
        ("Content-Length: 50\r\n\r\n{", "408"),
        ("Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n", "408"),
        ("Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "400"),
    ] {
        let (_, answer) = exchange(&addr, format!("{start}{rest}")).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{rest:?}: {answer}");
        assert!(answer.contains("application/problem+json"), "{rest:?}: {answer}");
    }

    // every hanging socket has been closed by now
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut still_open = 0;
    for socket in &mut hanging {
        socket.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => {
                    still_open += 1;
                    break;
                }
            }
        }
    }
    assert_eq!(still_open, 0, "every hanging socket was closed");
    assert_eq!(server.new_chat(&token).await, 1, "and nothing half-sent was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn odd_methods_leave_the_metrics_and_memory_flat_and_request_ids_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let rss_kib = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    // warm up: the first requests of each kind allocate for good
    for i in 0..200 {
        let method = format!("W{i:0>200}");
        server.http.request(method.parse().unwrap(), server.url("/healthz")).send().await.unwrap();
    }
    let before = server.get("/metrics").await.text.len();
    let rss_before = rss_kib();
    for i in 0..10_000 {
        let method = format!("X{i:0>200}");
        let r = server.http.request(method.parse().unwrap(), server.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 405);
    }
    let after = server.get("/metrics").await.text;
    assert!(after.len() < before + 4000, "the metrics grew from {before} to {} bytes", after.len());
    let rss_after = rss_kib();
    assert!(rss_after < rss_before + 8 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    assert!(after.contains("method=\"other\""));

    let echo = |id: String| {
        let server = &server;
        async move {
            let r = server.http.get(server.url("/healthz")).header("x-request-id", &id).send().await.unwrap();
            r.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(echo("abc-123".into()).await, "abc-123");
    let long = "a".repeat(300);
    assert_ne!(echo(long.clone()).await, long, "a 300-character id is replaced");
    assert_ne!(echo("has space".into()).await, "has space");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_stays_under_its_byte_cap_and_links_to_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_PAGE_BYTES", "200000")]);
    let token = server.new_app().await;
    let chat = server.new_chat(&token).await;
    let path = format!("/applications/{token}/chats/{chat}/messages");
    // control characters escape to six bytes each in JSON
    let body: String = "\u{1}".repeat(5_000);
    for _ in 0..30 {
        assert_eq!(server.post(&path, json!({"body": body})).await.status, 201);
    }
    let first = server.get(&format!("{path}?limit=1000")).await;
    assert!(first.text.len() <= 200_000, "{} bytes", first.text.len());
    let n = first.json.as_array().unwrap().len();
    assert!((1..30).contains(&n), "a page cut short by its size ({n} items)");
    assert!(first.link_next.is_some(), "links to the rest");
    assert_eq!(server.all_pages(&format!("{path}?limit=1000")).await.len(), 30, "which is all there");
}

#[tokio::test]
async fn the_docs_page_sends_its_security_headers_and_bearer_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_ADMIN_TOKEN", "s3cret")]);
    let docs = server.get("/docs").await;
    assert!(docs.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(docs.headers["x-content-type-options"], "nosniff");
    assert_eq!(docs.headers["x-frame-options"], "DENY");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = server
            .http
            .get(server.url("/applications"))
            .header("authorization", format!("{scheme} s3cret"))
            .send()
            .await;
        assert_eq!(r.unwrap().status(), 200, "{scheme}");
    }
    let r = server.http.get(server.url("/applications")).header("authorization", "Bearer s3cre").send().await;
    assert_eq!(r.unwrap().status(), 401);
}

#[tokio::test]
async fn an_oversized_target_or_headers_get_a_problem_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let long = server.get(&format!("/healthz?pad={}", "a".repeat(10_000))).await;
    assert!(long.is_problem(414), "{long:?}");
    let r = server.http.get(server.url("/healthz")).header("x-pad", "b".repeat(40_000)).send().await.unwrap();
    let big = common::Reply::from(r).await;
    assert!(big.is_problem(431), "{big:?}");
    assert!(big.headers.contains_key("x-request-id"));
    assert_eq!(server.get(&format!("/healthz?pad={}", "a".repeat(4_000))).await.status, 200, "below the limits");
}

/// Writes `request` on a new connection while reading every answer until the server closes.
async fn exchange(addr: &str, request: String) -> (std::io::Result<()>, String) {
    let addr = addr.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut socket = TcpStream::connect(&addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        socket.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = socket.try_clone().unwrap();
        let writer = std::thread::spawn(move || socket.write_all(request.as_bytes()));
        let mut answers = String::new();
        let _ = reader.read_to_string(&mut answers);
        (writer.join().unwrap(), answers)
    })
    .await
    .unwrap()
}

/// A body over the limit, declared (`Content-Length`, as nginx sends it) or not (chunked),
/// is read before its 413: the connection then serves the next request. Answered with the
/// body unread, the connection was reset, and nginx in front turned the 413 into a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_body_is_read_before_its_413_so_the_connection_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.post("/applications", json!({"name": "big"})).await.json["token"].as_str().unwrap().to_owned();
    let addr = address(&server);
    let body = format!("{{\"body\": \"{}\"}}", "x".repeat(1 << 20));
    let declared = format!("Content-Length: {}\r\n\r\n{body}", body.len());
    let chunks: String = body
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| format!("{:x}\r\n{}\r\n", c.len(), std::str::from_utf8(c).unwrap()))
        .collect();
    let chunked = format!("Transfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n");
    for framed in [declared, chunked] {
        let request = format!(
            "POST /applications/{token}/chats/1/messages HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             {framed}GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        );
        let framing = framed.lines().next().unwrap().to_owned();
        let (written, answers) = exchange(&addr, request).await;
        assert!(written.is_ok(), "{framing}: the whole request was taken: {written:?}");
        assert!(answers.starts_with("HTTP/1.1 413"), "{framing}: {}", &answers[..answers.len().min(300)]);
        assert!(answers.contains("application/problem+json"), "{framing}: {answers}");
        assert!(
            answers.contains("HTTP/1.1 200"),
            "{framing}: the request after it on the same connection is answered: {answers}"
        );
    }
    // a chunked body within the limit is taken as any other
    let request = format!(
        "POST /applications/{token}/chats HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n{{\r\n1\r\n}}\r\n0\r\n\r\n"
    );
    let (_, answer) = exchange(&addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
