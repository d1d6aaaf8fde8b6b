//! The API document: OpenAPI 3.1, served at `GET /openapi.json`, made from the code. Each handler describes its own
//! operation (`#[utoipa::path]` next to it); this module gathers them, adds the session cookie's security scheme, and
//! gives every operation the answers that come from the layers around it rather than from its handler: which layers
//! those are is read from the route table the router is built from ([`super::routes`]).

use axum::Json;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::error::ErrorCode;
use super::{api, service, RouteKind};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Twofold",
        description = "A two-factor authentication server. JSON in, JSON out; every error is \
            `{\"error\": <code>, \"message\": <text for a person>}`. Unknown fields are ignored. Requests that change \
            something refuse an `Origin` naming another site (`403 cross_origin`)."
    ),
    paths(
        api::register,
        api::login,
        api::verify_second_factor,
        api::send_sms,
        api::step_up,
        api::logout,
        api::session,
        api::second_factor_status,
        api::totp_setup,
        api::totp_confirm,
        api::totp_remove,
        api::sms_setup,
        api::sms_confirm,
        api::sms_remove,
        api::regenerate_recovery_codes,
        api::change_password,
        api::sessions,
        api::end_session,
        api::end_other_sessions,
        service::healthz,
        service::readyz,
        service::metrics,
        openapi_json,
    ),
    components(schemas(ErrorCode)),
    modifiers(&SessionCookie),
    tags(
        (name = "sign-in", description = "Password, second step, sign-out"),
        (name = "session", description = "Who is signed in"),
        (name = "second factors", description = "Authenticator app, phone, recovery codes"),
        (name = "account", description = "The password, and where one is signed in"),
        (name = "service", description = "For the machines around Twofold"),
    )
)]
struct ApiDoc;

struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::SESSION_COOKIE,
                "Set by `POST /auth/login` and `POST /auth/verify-2fa`: a pending session (after the password, \
                 before the second factor) or a full one. HttpOnly, SameSite=Lax.",
            ))),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    for route in super::routes() {
        let Some(item) = document.paths.paths.get_mut(route.path) else {
            continue;
        };
        if let Some(operation) = operation_mut(item, &route.method) {
            add_layer_answers(operation, route.kind);
        }
    }
    document
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &axum::http::Method) -> Option<&'a mut Operation> {
    use axum::http::Method;
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        _ => None,
    }
}

/// The answers of the layers in front of a handler (see `http::router`). An answer the handler already documents
/// (a `400` with its own codes, say) is left as it is: its description names the shared code too.
fn add_layer_answers(operation: &mut Operation, kind: RouteKind) {
    let mut shared = vec![
        ("408", "`request_timeout`: the request took too long to arrive"),
        ("413", "`payload_too_large`: the body is over 16 KiB"),
    ];
    if operation.request_body.is_some() {
        shared.push((
            "400",
            "`bad_request`: the body is not a JSON object, misses a field or has one of the wrong type",
        ));
        shared.push((
            "415",
            "`unsupported_media_type`: the body is not sent as `application/json`",
        ));
    } else {
        shared.push(("400", "`bad_request`: the body could not be read"));
    }
    if kind == RouteKind::Write {
        shared.push(("403", "`cross_origin`: `Origin` names another site"));
    }
    if kind != RouteKind::Service {
        shared.push(("503", "`database_unavailable`: try again in a moment"));
        shared.push(("500", "`internal`: a failure inside the server, logged there"));
    }
    for (status, description) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(error_answer(description)));
    }
}

fn error_answer(description: &str) -> Response {
    Response::builder()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
        )
        .build()
}

#[utoipa::path(get, path = "/openapi.json", tag = "service",
    description = "This document.",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
