//! The OpenAPI document covers API.md: every endpoint, every method, and the statuses each
//! can answer, with problem documents for errors.

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(chatsys_api::openapi()).unwrap()
}

#[test]
fn every_endpoint_of_the_contract_is_documented_with_its_statuses() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let expected: &[(&str, &str, &[&str])] = &[
        ("/applications", "post", &["201", "400", "409", "413", "415", "422", "503"]),
        ("/applications", "get", &["200", "400", "401", "503"]),
        ("/applications/{token}", "get", &["200", "404", "503"]),
        ("/applications/{token}", "put", &["200", "400", "404", "413", "415", "422", "503"]),
        ("/applications/{token}", "patch", &["200", "400", "404", "413", "415", "422", "503"]),
        ("/applications/{token}/chats", "post", &["201", "400", "404", "409", "413", "415", "422", "503"]),
        ("/applications/{token}/chats", "get", &["200", "400", "404", "503"]),
        ("/applications/{token}/chats/{chat}", "get", &["200", "400", "404", "503"]),
        (
            "/applications/{token}/chats/{chat}/messages",
            "post",
            &["201", "400", "404", "409", "413", "415", "422", "503"],
        ),
        ("/applications/{token}/chats/{chat}/messages", "get", &["200", "400", "404", "503"]),
        ("/applications/{token}/chats/{chat}/messages/{message}", "get", &["200", "400", "404", "503"]),
        (
            "/applications/{token}/chats/{chat}/messages/{message}",
            "put",
            &["200", "400", "404", "413", "415", "422", "503"],
        ),
        (
            "/applications/{token}/chats/{chat}/messages/{message}",
            "patch",
            &["200", "400", "404", "413", "415", "422", "503"],
        ),
        ("/applications/{token}/chats/{chat}/messages/search", "get", &["200", "400", "404", "503"]),
        ("/applications/{token}/chats/{chat}/events", "get", &["200", "400", "404", "503"]),
        ("/healthz", "get", &["200"]),
        ("/readyz", "get", &["200", "503"]),
        ("/metrics", "get", &["200"]),
    ];
    for (path, method, statuses) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        for status in *statuses {
            assert!(operation["responses"][status].is_object(), "{method} {path} does not document {status}");
        }
    }
}

#[test]
fn errors_are_problem_documents_and_lists_name_their_link_header() {
    let doc = document();
    let responses = &doc["components"]["responses"];
    for name in
        ["BadRequest", "NotFound", "Unprocessable", "Unavailable", "TooLarge", "NotJson", "InFlight", "Unauthorized"]
    {
        assert!(
            responses[name]["content"]["application/problem+json"]["schema"].is_object(),
            "{name} is not a problem document: {}",
            responses[name]
        );
    }
    assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
    let list = &doc["paths"]["/applications/{token}/chats/{chat}/messages"]["get"]["responses"]["200"];
    assert!(list["headers"]["Link"].is_object(), "{list}");
    let events = &doc["paths"]["/applications/{token}/chats/{chat}/events"]["get"]["responses"]["200"];
    assert!(events["content"]["text/event-stream"].is_object(), "{events}");
    let create = &doc["paths"]["/applications"]["post"];
    assert!(create["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "Idempotency-Key"), "{create}");
}
