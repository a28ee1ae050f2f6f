//! Every row of API.md's error table, against the real binary, and proof that no bad
//! request leaves anything behind. A client can never choose a token or a number.

mod common;

use common::{Reply, Server};
use serde_json::{Value, json};

async fn raw(server: &Server, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    let mut req = server.http.request(method.parse().unwrap(), server.url(path)).body(body.to_vec());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// What the store holds for the application: its view, its chats and chat 1's messages.
async fn snapshot(server: &Server, token: &str) -> (Value, Vec<Value>, Vec<Value>, usize) {
    let app = server.get(&format!("/applications/{token}")).await.json;
    let chats = server.all_pages(&format!("/applications/{token}/chats")).await;
    let messages = server.all_pages(&format!("/applications/{token}/chats/1/messages")).await;
    let apps = server.all_pages("/applications?limit=1000").await.len();
    (app, chats, messages, apps)
}

#[tokio::test]
async fn every_row_of_the_error_table_answers_its_status_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let token = server.new_app().await;
    server.new_app().await; // a second one, so that the application list has two pages below
    assert_eq!(server.new_chat(&token).await, 1);
    let first = server.post(&format!("/applications/{token}/chats/1/messages"), json!({"body": "kept"})).await;
    assert_eq!(first.status, 201);
    let before = snapshot(&server, &token).await;

    let apps = "/applications".to_owned();
    let app = format!("/applications/{token}");
    let chats = format!("/applications/{token}/chats");
    let messages = format!("/applications/{token}/chats/1/messages");
    let message = format!("/applications/{token}/chats/1/messages/1");
    let json_ct = Some("application/json");

    // body is not valid JSON -> 400
    for (method, path) in [("POST", &apps), ("PUT", &app), ("POST", &chats), ("POST", &messages), ("PUT", &message)] {
        for body in [&b"{not json"[..], b"", b"{\"body\": \"x\"} trailing", b"\xff\xfe"] {
            let r = raw(&server, method, path, json_ct, body).await;
            // an empty body is fine for a chat create, which takes none
            let expected = if path == &chats && body.is_empty() { 201 } else { 400 };
            if expected == 201 {
                assert_eq!(r.status, 201);
                continue;
            }
            assert!(r.is_problem(400), "{method} {path} {body:?}: {r:?}");
        }
    }

    // path number is not a positive integer -> 400
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999999", "1e3", "%201"] {
        for path in [
            format!("/applications/{token}/chats/{bad}"),
            format!("/applications/{token}/chats/{bad}/messages"),
            format!("/applications/{token}/chats/1/messages/{bad}"),
        ] {
            let r = server.get(&path).await;
            assert!(r.is_problem(400), "GET {path}: {r:?}");
        }
        let r = server.post(&format!("/applications/{token}/chats/{bad}/messages"), json!({"body": "x"})).await;
        assert!(r.is_problem(400), "POST message to chat {bad}: {r:?}");
        let r = server
            .request("PUT", &format!("/applications/{token}/chats/1/messages/{bad}"), Some(json!({"body": "x"})))
            .await;
        assert!(r.is_problem(400), "PUT message {bad}: {r:?}");
    }

    // query parameter or header malformed -> 400
    for query in ["limit=abc", "limit=0", "limit=1001", "limit=-5", "limit=", "after=garbage", "after=AQE"] {
        for path in [&apps, &chats, &messages] {
            let r = server.get(&format!("{path}?{query}")).await;
            assert!(r.is_problem(400), "GET {path}?{query}: {r:?}");
        }
    }
    // a cursor of one list is no cursor of another
    let page = server.get(&format!("{apps}?limit=1")).await;
    let app_cursor =
        page.link_next.clone().expect("two applications: a next link").split("after=").nth(1).unwrap().to_owned();
    let r = server.get(&format!("{messages}?after={app_cursor}")).await;
    assert!(r.is_problem(400), "{r:?}");
    let long_key = "k".repeat(256);
    for key in ["", "has space", "tab\there", long_key.as_str(), "ünï"] {
        let mut req = server.http.post(server.url(&messages)).json(&json!({"body": "x"}));
        req = match reqwest::header::HeaderValue::from_bytes(key.as_bytes()) {
            Ok(v) => req.header("Idempotency-Key", v),
            Err(_) => continue,
        };
        let r = Reply::from(req.send().await.unwrap()).await;
        assert!(r.is_problem(400), "Idempotency-Key {key:?}: {r:?}");
    }

    // wrong or missing Content-Type on a request that needs a body -> 415
    for (method, path, body) in [
        ("POST", &apps, &br#"{"name":"x"}"#[..]),
        ("PUT", &app, br#"{"name":"x"}"#),
        ("POST", &chats, b"{}"),
        ("POST", &messages, br#"{"body":"x"}"#),
        ("PATCH", &message, br#"{"body":"x"}"#),
    ] {
        for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let r = raw(&server, method, path, ct, body).await;
            assert!(r.is_problem(415), "{method} {path} {ct:?}: {r:?}");
        }
    }

    // well-formed JSON, wrong content -> 422
    let long_name = "n".repeat(256);
    let long_body = "b".repeat(10_001);
    for (method, path, body) in [
        ("POST", &apps, json!({})),
        ("POST", &apps, json!({"nom": "x"})),
        ("POST", &apps, json!({"name": 42})),
        ("POST", &apps, json!({"name": null})),
        ("POST", &apps, json!({"name": ""})),
        ("POST", &apps, json!({"name": " \t "})),
        ("POST", &apps, json!({"name": long_name})),
        ("POST", &apps, json!(["name"])),
        ("PUT", &app, json!({"name": ""})),
        ("PATCH", &app, json!({})),
        ("POST", &chats, json!([1, 2])),
        ("POST", &messages, json!({})),
        ("POST", &messages, json!({"body": ""})),
        ("POST", &messages, json!({"body": "   "})),
        ("POST", &messages, json!({"body": ["x"]})),
        ("POST", &messages, json!({"body": long_body})),
        ("PUT", &message, json!({"body": ""})),
        ("PATCH", &message, json!({"text": "x"})),
    ] {
        let r = server.request(method, path, Some(body.clone())).await;
        assert!(r.is_problem(422), "{method} {path} {body}: {r:?}");
    }
    let r = server.post(&apps, json!({"name": 42})).await;
    assert!(r.json["detail"].as_str().unwrap().contains("name"), "the detail names the field: {r:?}");

    // body larger than the request limit -> 413 problem
    let huge = format!(r#"{{"body": "{}"}}"#, "x".repeat(300 * 1024));
    for (method, path) in [("POST", &apps), ("POST", &messages), ("PUT", &message)] {
        let r = raw(&server, method, path, json_ct, huge.as_bytes()).await;
        assert!(r.is_problem(413), "{method} {path}: {r:?}");
    }

    // unknown token, chat number or message number -> 404
    for (method, path, body) in [
        ("GET", "/applications/doesnotexist0000000000".to_owned(), None),
        ("GET", "/applications/not%20a%20token".to_owned(), None),
        ("PUT", "/applications/doesnotexist0000000000".to_owned(), Some(json!({"name": "x"}))),
        ("POST", "/applications/doesnotexist0000000000/chats".to_owned(), Some(json!({}))),
        ("GET", "/applications/doesnotexist0000000000/chats".to_owned(), None),
        ("GET", format!("/applications/{token}/chats/99"), None),
        ("GET", format!("/applications/{token}/chats/99/messages"), None),
        ("POST", format!("/applications/{token}/chats/99/messages"), Some(json!({"body": "x"}))),
        ("GET", format!("/applications/{token}/chats/1/messages/99"), None),
        ("PUT", format!("/applications/{token}/chats/1/messages/99"), Some(json!({"body": "x"}))),
        ("GET", "/no/such/path".to_owned(), None),
    ] {
        let r = server.request(method, &path, body).await;
        assert!(r.is_problem(404), "{method} {path}: {r:?}");
        assert!(!r.text.contains(&token), "a 404 does not echo tokens");
    }

    // method not allowed on an existing path -> 405 with Allow
    for (method, path) in [("POST", &app), ("DELETE", &apps), ("PUT", &chats), ("PATCH", &messages), ("POST", &message)]
    {
        let r = server.request(method, path, None).await;
        assert!(r.is_problem(405), "{method} {path}: {r:?}");
        assert!(r.headers.contains_key("allow"), "{method} {path} names the allowed methods");
    }

    // A client can never choose a token or a number.
    let r = server.post(&apps, json!({"name": "mine", "token": "chosen-token", "id": 7, "chats_count": 9})).await;
    assert_eq!(r.status, 201);
    assert_ne!(r.json["token"], "chosen-token");
    assert_eq!(r.json["chats_count"], 0);
    // (chat 2 came from the empty-body create above)
    let r = server.post(&chats, json!({"number": 500, "messages_count": 9})).await;
    assert_eq!((r.status, r.json["number"].as_u64(), r.json["messages_count"].as_u64()), (201, Some(3), Some(0)));
    let r = server.post(&messages, json!({"body": "mine", "number": 500, "chat_number": 2})).await;
    assert_eq!((r.status, r.json["number"].as_u64(), r.json["chat_number"].as_u64()), (201, Some(2), Some(1)));

    // Nothing of the bad requests reached the store: only the good ones above did.
    let after = snapshot(&server, &token).await;
    assert_eq!(after.0["name"], before.0["name"]);
    // the chat created by the empty-body POST, plus the one that tried to choose a number
    assert_eq!(after.1.len(), before.1.len() + 2);
    assert_eq!(after.2.len(), before.2.len() + 1, "chat 1 gained only the message that tried to choose a number");
    assert_eq!(after.2[0], before.2[0], "the first message is untouched");
    assert_eq!(after.3, before.3 + 1, "one application was added: the one that tried to choose a token");
}

#[tokio::test]
async fn the_admin_token_guards_the_application_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &[("CHATSYS_ADMIN_TOKEN", "let-me-in")]);
    server.new_app().await;
    let r = server.get("/applications").await;
    assert!(r.is_problem(401), "{r:?}");
    assert!(r.headers.contains_key("www-authenticate"));
    for wrong in ["Bearer let-me-out", "Bearer ", "let-me-in", "Basic bGV0LW1lLWlu"] {
        let r = Reply::from(
            server.http.get(server.url("/applications")).header("authorization", wrong).send().await.unwrap(),
        )
        .await;
        assert!(r.is_problem(401), "{wrong}: {r:?}");
    }
    let r = Reply::from(
        server.http.get(server.url("/applications")).header("authorization", "Bearer let-me-in").send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json.as_array().map(Vec::len), Some(1));
}
