//! Bad input gets the right problem+json and changes nothing: malformed JSON, unknown
//! fields, wrong types, an unknown call id, an action in the wrong state, an oversize
//! body, the wrong content type, no token or a wrong one, semantically invalid input,
//! custom context limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_support;

use api_support::{Rig, TOKEN, answer};
use serde_json::{Value, json};

/// Checks a problem answer: the status, `application/problem+json`, the RFC 9457
/// members, and the field when one is named.
async fn problem(response: reqwest::Response, status: u16, field: Option<&str>) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let (got, body) = answer(response).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:tandem:problem:"),
        "{body}"
    );
    assert!(!body["title"].as_str().unwrap().is_empty(), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");
    match field {
        Some(field) => assert_eq!(body["field"], field, "{body}"),
        None => assert!(body.get("field").is_none(), "{body}"),
    }
    body
}

/// A POST with a chunked body over a raw connection; the whole answer as text.
async fn chunked_post(base: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(4096) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break; // the server answered and closed early
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problem_details_and_changes_nothing() {
    let mut rig = Rig::start("bad_input_gets_problem_details").await;
    // One live call, to see that nothing touches it.
    let id = rig.connected_call(&rig.bob(), "keep").await;
    let _bob = rig.bob_calls.recv().await.unwrap();
    let before = rig.get("/v1/calls").await;
    let events_before = rig.events.all().len();
    let post_raw = |path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = rig.client.post(rig.url(path)).bearer_auth(TOKEN).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json_type = Some("application/json");

    // Malformed JSON: 400 naming the position.
    let body = problem(
        post_raw(
            "/v1/calls",
            json_type,
            b"{\"application\": \"app\",".to_vec(),
        )
        .await
        .unwrap(),
        400,
        None,
    )
    .await;
    assert_eq!(body["type"], "urn:tandem:problem:malformed-json");
    assert!(
        body["detail"].as_str().unwrap().contains("line 1 column"),
        "{body}"
    );

    // An unknown field, top level and nested.
    let unknown =
        json!({ "application": "app", "targets": [{ "sipUri": rig.bob() }], "colour": "red" });
    problem(
        post_raw("/v1/calls", json_type, unknown.to_string().into_bytes())
            .await
            .unwrap(),
        400,
        Some("colour"),
    )
    .await;
    let nested = json!({ "application": "app", "targets": [{ "sipUri": rig.bob(), "port": 1 }] });
    problem(
        post_raw("/v1/calls", json_type, nested.to_string().into_bytes())
            .await
            .unwrap(),
        400,
        Some("targets[0].port"),
    )
    .await;

    // A wrong type; a missing field.
    let wrong = json!({ "application": "app", "targets": "sip:bob@127.0.0.2" });
    problem(
        post_raw("/v1/calls", json_type, wrong.to_string().into_bytes())
            .await
            .unwrap(),
        400,
        Some("targets"),
    )
    .await;
    let wrong = json!({ "forEveryone": "yes" });
    problem(
        post_raw(
            &format!("/v1/calls/{id}:hangup"),
            json_type,
            wrong.to_string().into_bytes(),
        )
        .await
        .unwrap(),
        400,
        Some("forEveryone"),
    )
    .await;
    problem(
        post_raw("/v1/calls:answer", json_type, b"{}".to_vec())
            .await
            .unwrap(),
        400,
        Some("incomingCallContext"),
    )
    .await;

    // Custom context limits: 400 naming the header.
    let limited = json!({
        "application": "app",
        "targets": [{ "sipUri": rig.bob() }],
        "customContext": { "sipHeaders": { "Contact": "<sip:evil@192.0.2.1>" } }
    });
    problem(
        post_raw("/v1/calls", json_type, limited.to_string().into_bytes())
            .await
            .unwrap(),
        400,
        Some("customContext.sipHeaders.Contact"),
    )
    .await;
    let limited = json!({
        "application": "app",
        "targets": [{ "sipUri": rig.bob() }],
        "customContext": { "sipHeaders": { "X-Long": "x".repeat(257) } }
    });
    problem(
        post_raw("/v1/calls", json_type, limited.to_string().into_bytes())
            .await
            .unwrap(),
        400,
        Some("customContext.sipHeaders.X-Long"),
    )
    .await;

    // Semantically invalid: 422 naming the field.
    for (body, field) in [
        (
            json!({ "application": "app", "targets": [{ "sipUri": "mailto:bob@example.com" }] }),
            "targets[0].sipUri",
        ),
        (
            json!({ "application": "nobody", "targets": [{ "sipUri": rig.bob() }] }),
            "application",
        ),
        (
            json!({ "application": "app", "targets": vec![json!({ "sipUri": rig.bob() }); 9] }),
            "targets",
        ),
        (
            json!({ "application": "app", "targets": [{ "sipUri": rig.bob() }, { "sipUri": "mailto:bob@example.com" }] }),
            "targets[1].sipUri",
        ),
        (
            json!({ "application": "app", "targets": [{ "phoneNumber": "+4930123456" }] }),
            "targets[0].phoneNumber",
        ),
        (
            json!({ "application": "app", "targets": [{ "sipUri": rig.bob() }], "operationCallbackUri": "ftp://x" }),
            "operationCallbackUri",
        ),
    ] {
        problem(
            post_raw("/v1/calls", json_type, body.to_string().into_bytes())
                .await
                .unwrap(),
            422,
            Some(field),
        )
        .await;
    }

    // A path the router cannot decode (not UTF-8): problem+json too, not axum's text.
    let (status, body) = rig.get("/v1/calls/%FF").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "urn:tandem:problem:invalid-request", "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty(), "{body}");

    // An unknown call id: 404, for reads and actions.
    let (status, body) = rig.get("/v1/calls/no-such-call").await;
    assert_eq!(
        (status, body["type"].clone()),
        (404, json!("urn:tandem:problem:call-not-found"))
    );
    problem(
        post_raw("/v1/calls/no-such-call:hangup", json_type, b"{}".to_vec())
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
    problem(
        rig.client
            .get(rig.url(&format!("/v1/calls/{id}/participants/nobody")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
    // An unknown incoming call context: 404.
    problem(
        post_raw(
            "/v1/calls:answer",
            json_type,
            json!({ "incomingCallContext": "forged" })
                .to_string()
                .into_bytes(),
        )
        .await
        .unwrap(),
        404,
        Some("incomingCallContext"),
    )
    .await;

    // The wrong state: a transfer while one is in progress is refused... first start
    // one to a target that never answers, then try again.
    let (status, body) = rig
        .post(
            &format!("/v1/calls/{id}:transferToParticipant"),
            json!({ "targetParticipant": { "sipUri": rig.demo_a("ring") } }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let again = json!({ "targetParticipant": { "sipUri": rig.demo_a("echo") } });
    let body = problem(
        post_raw(
            &format!("/v1/calls/{id}:transferToParticipant"),
            json_type,
            again.to_string().into_bytes(),
        )
        .await
        .unwrap(),
        409,
        None,
    )
    .await;
    assert_eq!(body["type"], "urn:tandem:problem:wrong-state");

    // Oversize: by Content-Length, and streamed without one.
    let big = format!(
        "{{\"application\": \"app\", \"targets\": [], \"operationContext\": \"{}\"}}",
        "x".repeat(70 * 1024)
    );
    problem(
        post_raw("/v1/calls", json_type, big.clone().into_bytes())
            .await
            .unwrap(),
        413,
        None,
    )
    .await;
    // Chunked, so no Content-Length tells the size up front.
    let raw = chunked_post(&rig.base, "/v1/calls", big.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{raw}"
    );
    assert!(raw.contains("\"status\":413"), "{raw}");

    // The wrong content type, or none.
    let good = json!({ "application": "app", "targets": [{ "sipUri": rig.bob() }] }).to_string();
    problem(
        post_raw("/v1/calls", Some("text/plain"), good.clone().into_bytes())
            .await
            .unwrap(),
        415,
        None,
    )
    .await;
    problem(
        post_raw("/v1/calls", None, good.clone().into_bytes())
            .await
            .unwrap(),
        415,
        None,
    )
    .await;

    // No token, a wrong one: 401 with a challenge.
    let no_token = rig
        .client
        .post(rig.url("/v1/calls"))
        .header("content-type", "application/json")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        no_token.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"tandem\""
    );
    problem(no_token, 401, None).await;
    let wrong_token = rig
        .client
        .post(rig.url("/v1/calls"))
        .bearer_auth("not-the-token")
        .header("content-type", "application/json")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    problem(wrong_token, 401, None).await;
    problem(
        rig.client.get(rig.url("/v1/calls")).send().await.unwrap(),
        401,
        None,
    )
    .await;
    problem(
        rig.client
            .get(rig.url(&format!("/v1/calls/{id}")))
            .bearer_auth(format!("{TOKEN}x"))
            .send()
            .await
            .unwrap(),
        401,
        None,
    )
    .await;

    // Unknown paths and methods.
    problem(
        rig.client.get(rig.url("/v2/nothing")).send().await.unwrap(),
        404,
        None,
    )
    .await;
    problem(
        rig.client
            .delete(rig.url("/v1/calls"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
        405,
        None,
    )
    .await;
    for (path, allow) in [
        (format!("/v1/calls/{id}"), "GET,HEAD"),
        (format!("/v1/calls/{id}:hangup"), "POST"),
        (format!("/v1/calls/{id}/participants:add"), "POST"),
    ] {
        let response = rig
            .client
            .put(rig.url(&path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers().get("allow").unwrap(), allow, "{path}");
        problem(response, 405, None).await;
    }
    problem(
        post_raw(
            &format!("/v1/calls/{id}:explode"),
            json_type,
            b"{}".to_vec(),
        )
        .await
        .unwrap(),
        404,
        None,
    )
    .await;

    // Nothing changed: the same call, and no event but the transfer's own.
    let after = rig.get("/v1/calls").await;
    assert_eq!(after.0, 200);
    let ids = |v: &Value| -> Vec<Value> {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["callConnectionId"].clone())
            .collect()
    };
    assert_eq!(ids(&after.1), ids(&before.1));
    assert_eq!(ids(&after.1), vec![json!(id)]);
    let new_events: Vec<String> = rig.events.all()[events_before..]
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert!(
        new_events.iter().all(|t| t.starts_with("CallTransfer")),
        "{new_events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_without_a_token_lets_requests_in() {
    let rig = Rig::with("an_api_without_a_token", |config| config.token = None).await;
    let (status, body) = answer(rig.client.get(rig.url("/v1/calls")).send().await.unwrap()).await;
    assert_eq!((status, body), (200, json!({ "value": [] })));
}
