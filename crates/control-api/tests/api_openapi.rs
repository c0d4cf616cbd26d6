//! The OpenAPI document: served without a token, valid JSON of OpenAPI 3, and it lists
//! exactly the routes the API serves (`ROUTES`), each of which the router the daemon
//! serves (`control_api::router`: the actions and the event stream) really routes; the
//! event stream's routes and the event schemas are in it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_support;

use api_support::{Rig, TOKEN, answer};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_served() {
    let rig = Rig::start("the_document_lists_every_route_served").await;
    // No token needed.
    let response = rig
        .client
        .get(rig.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let (status, doc) = answer(response).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/v1/openapi.json"]["get"]["security"],
        serde_json::json!([{}])
    );

    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = control_api::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served, "the document and the route table agree");

    // Every schema a body refers to is defined.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referred to but not defined"
        );
    }
    // The event stream and its events are documented.
    for name in ["CloudEvent", "CallEventData", "ResultInformation"] {
        assert!(schemas.contains_key(name), "{name} is not in the document");
    }
    assert_eq!(
        doc["components"]["schemas"]["ResultInformation"]["required"],
        serde_json::json!(["code", "subCode", "message"])
    );
    let sse = &doc["paths"]["/v1/events"]["get"];
    assert_eq!(sse["tags"], serde_json::json!(["events"]));
    assert!(
        sse["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{sse}"
    );
    assert!(doc["paths"]["/v1/events/ws"]["get"]["responses"]["101"].is_object());
    for route in [
        ("get", "/v1/events"),
        ("get", "/v1/events/ws"),
        ("post", "/v1/calls:connect"),
        ("post", "/v1/calls/{callConnectionId}/participants:hold"),
        ("post", "/v1/calls/{callConnectionId}/participants:unhold"),
    ] {
        assert!(control_api::ROUTES.contains(&route), "{route:?}");
    }

    // The served document names the configured applications.
    assert_eq!(
        doc["components"]["schemas"]["CreateCallRequest"]["properties"]["application"]["enum"],
        serde_json::json!(["app", "slow"])
    );
    // Request bodies refuse unknown fields.
    assert_eq!(
        doc["components"]["schemas"]["CreateCallRequest"]["additionalProperties"],
        Value::Bool(false)
    );
    // The custom context limits are documented.
    let limits = doc["components"]["schemas"]["CustomContext"]["description"]
        .as_str()
        .unwrap();
    assert!(limits.contains("X-") && limits.contains("256"), "{limits}");

    // Each route is really routed: with placeholders for the ids, a GET gets 200 or a
    // 404 that names the call, a POST gets past routing (a 4xx of its own, never the
    // router's 404 or 405).
    for (method, path) in control_api::ROUTES {
        let url = rig.url(
            &path
                .replace("{callConnectionId}", "no-such-call")
                .replace("{participantId}", "nobody"),
        );
        let request = match *method {
            "get" => rig.client.get(url),
            "post" => rig
                .client
                .post(url)
                .header("content-type", "application/json")
                .body("{}"),
            other => panic!("{other}"),
        };
        let (status, body) = answer(request.bearer_auth(TOKEN).send().await.unwrap()).await;
        assert_ne!(status, 405, "{method} {path}: {body}");
        let kind = body["type"].as_str().unwrap_or_default();
        assert!(
            !kind.ends_with("no-such-route") && !kind.ends_with("no-such-action"),
            "{method} {path} is not routed: {body}"
        );
        assert!(status < 500, "{method} {path}: {body}");
        // And each is behind the token (but the document).
        if *path != "/v1/openapi.json" {
            let request = match *method {
                "get" => rig.client.get(rig.url(path)),
                _ => rig.client.post(rig.url(path)).json(&serde_json::json!({})),
            };
            let (status, body) = answer(request.send().await.unwrap()).await;
            assert_eq!(status, 401, "{method} {path} without the token: {body}");
        }
    }
    // The actions' router alone does not serve the stream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alone = format!("http://{}", listener.local_addr().unwrap());
    let router = rig.api.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (status, _) = answer(
        rig.client
            .get(format!("{alone}/v1/events?application=app"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}
