//! The API document at `GET /openapi.json` against the router: every route of the router's table is documented with
//! its method, nothing else is, and every documented operation is really served (not answered by the fallback).

use std::collections::BTreeSet;

use crate::common::*;
use serde_json::Value;

fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

fn routed() -> BTreeSet<(String, String)> {
    twofold::http::routes()
        .into_iter()
        .map(|route| (route.method.to_string(), route.path.to_owned()))
        .collect()
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let app = TestApp::spawn().await;
    let answer = app.get("/openapi.json", None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(answer.body["openapi"], "3.1.0");

    let documented = documented(&answer.body);
    let routed = routed();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented operations no route serves: {unrouted:?}"
    );
    // The contract's table, as a floor: the list above cannot lose one of these unnoticed.
    for (method, path) in [
        ("POST", "/auth/register"),
        ("POST", "/auth/login"),
        ("POST", "/auth/verify-2fa"),
        ("POST", "/auth/2fa/sms/send"),
        ("POST", "/auth/logout"),
        ("GET", "/auth/session"),
        ("GET", "/auth/2fa"),
        ("POST", "/auth/2fa/totp/setup"),
        ("POST", "/auth/2fa/totp/confirm"),
        ("DELETE", "/auth/2fa/totp"),
        ("POST", "/auth/2fa/sms/setup"),
        ("POST", "/auth/2fa/sms/confirm"),
        ("POST", "/auth/2fa/recovery-codes"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ] {
        assert!(
            documented.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not documented"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_served_by_its_route() {
    // The table could list a route the router never got; a request to each documented operation shows it is served:
    // the fallback's `404 not_found` and `405 method_not_allowed` come only from addresses no route serves.
    let app = TestApp::spawn().await;
    let document = app.get("/openapi.json", None).await.body;
    for (method, path) in documented(&document) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let answer = app.send(app.http.request(method.clone(), app.url(&path))).await;
        assert!(
            !["not_found", "method_not_allowed"].contains(&answer.error()),
            "{method} {path} is documented but not served: {answer:?}"
        );
    }
}

#[tokio::test]
async fn the_error_body_lists_every_code_and_operations_name_their_answers() {
    let app = TestApp::spawn().await;
    let document = app.get("/openapi.json", None).await.body;
    let schemas = &document["components"]["schemas"];
    let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|code| code.as_str().expect("code"))
        .collect();
    for code in [
        "bad_request",
        "cross_origin",
        "invalid_credentials",
        "invalid_2fa_code",
        "no_pending_login",
        "unauthenticated",
        "reauthentication_required",
        "too_many_attempts",
        "sms_gateway_unavailable",
        "database_unavailable",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    assert_eq!(
        schemas["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorCode"
    );

    let login = &document["paths"]["/auth/login"]["post"];
    for status in ["200", "400", "401", "403", "415", "429"] {
        assert!(
            login["responses"][status].is_object(),
            "login documents no {status}: {login}"
        );
    }
    assert!(
        login["responses"]["429"]["headers"]["Retry-After"].is_object(),
        "{login}"
    );
    let cookie = &document["components"]["securitySchemes"]["session_cookie"];
    assert_eq!(cookie["type"], "apiKey");
    assert_eq!(cookie["in"], "cookie");
    assert_eq!(cookie["name"], "twofold_session");
    assert_eq!(
        document["paths"]["/auth/session"]["get"]["security"],
        serde_json::json!([{ "session_cookie": [] }])
    );
}
