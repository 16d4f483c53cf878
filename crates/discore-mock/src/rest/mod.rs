//! Discord's REST routes that bots use at login and in everyday code, under
//! `/api/v10` (and `/api/v9`), in Discord's shapes
//! (<https://discord.com/developers/docs/reference>):
//!
//! - every answer is `Content-Type: application/json` (or 204 without a
//!   body) and carries the rate-limit headers of its bucket
//!   (`X-RateLimit-Limit`, `-Remaining`, `-Reset`, `-Reset-After`,
//!   `-Bucket`; on a 429 also `-Scope` and `Retry-After`);
//! - errors take Discord's body: `{"message": …, "code": …}`, with `errors`
//!   for an invalid form body, and `{"message", "retry_after", "global"}`
//!   for a 429;
//! - what a request changes, the world keeps (`store.rs`), and the gateway
//!   events Discord sends for it follow to the sessions that own the guild.
//!
//! One file per resource: `gateway`, `application` (the current user and
//! application), `channels` (channels and messages), `reactions`,
//! `interactions` (callbacks and follow-ups), `guilds` (guilds, members and
//! roles), `commands`.

mod application;
mod channels;
mod commands;
mod gateway;
mod guilds;
mod interactions;
mod ratelimit;
mod reactions;

use crate::{
    event::Event,
    observe::RestRecord,
    state::{Delivery, Shared, State},
};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, http::StatusCode, web};
use ratelimit::RateHeaders;
use serde_json::{Value, json};
use std::{sync::Arc, time::Instant};

type SharedData = web::Data<Arc<Shared>>;

pub(crate) use channels::create as create_message;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    gateway::routes(cfg);
    application::routes(cfg);
    channels::routes(cfg);
    reactions::routes(cfg);
    interactions::routes(cfg);
    guilds::routes(cfg);
    commands::routes(cfg);
}

/// An error in Discord's shape
/// (<https://discord.com/developers/docs/topics/opcodes-and-status-codes#json>).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
    /// For 50035 Invalid Form Body: where and why.
    errors: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: None,
        }
    }

    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 0, "404: Not Found")
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
    }

    /// 404 with one of Discord's "Unknown …" codes.
    pub(crate) fn unknown(what: Unknown) -> Self {
        let (code, message) = match what {
            Unknown::Application => (10002, "Unknown Application"),
            Unknown::Channel => (10003, "Unknown Channel"),
            Unknown::Guild => (10004, "Unknown Guild"),
            Unknown::Member => (10007, "Unknown Member"),
            Unknown::Message => (10008, "Unknown Message"),
            Unknown::Role => (10011, "Unknown Role"),
            Unknown::User => (10013, "Unknown User"),
            Unknown::Emoji => (10014, "Unknown Emoji"),
            Unknown::Webhook => (10015, "Unknown Webhook"),
            Unknown::Interaction => (10062, "Unknown interaction"),
            Unknown::Command => (10063, "Unknown application command"),
        };
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 401 for an interaction token that is no interaction's.
    pub(crate) fn invalid_webhook_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token")
    }

    /// 403 with Discord's code and message.
    pub(crate) fn forbidden(code: u32, message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 400 with Discord's code and message.
    pub(crate) fn bad_request(code: u32, message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 Invalid Form Body: `field` broke `rule` (Discord's error codes,
    /// e.g. `BASE_TYPE_REQUIRED`).
    pub(crate) fn invalid_form(field: &str, rule: &str, message: &str) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
        error.errors = Some(json!({
            field: { "_errors": [{ "code": rule, "message": message }] }
        }));
        error
    }

    fn body(&self) -> Value {
        let mut body = json!({ "message": self.message, "code": self.code });
        if let Some(errors) = &self.errors {
            body["errors"] = errors.clone();
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

/// The objects a 404 names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Unknown {
    Application,
    Channel,
    Guild,
    Member,
    Message,
    Role,
    User,
    Emoji,
    Webhook,
    Interaction,
    Command,
}

/// A successful answer.
pub(crate) enum Reply {
    /// 200 with a JSON body.
    Ok(Value),
    /// 201 with a JSON body (a command that did not exist).
    Created(Value),
    /// 204 without a body.
    NoContent,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Auth {
    /// `Authorization: Bot <token>`.
    Bot,
    /// No authorization: the interaction token in the path is the secret.
    Token,
}

/// Discord's answer to a route it does not have.
pub(crate) fn not_found_response() -> HttpResponse {
    json_response(StatusCode::NOT_FOUND, None, &ApiError::not_found().body())
}

pub(crate) async fn not_found(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let response = not_found_response();
    record(&shared, &req, &response);
    response
}

fn json_response(status: StatusCode, headers: Option<&RateHeaders>, body: &Value) -> HttpResponse {
    let mut builder = HttpResponseBuilder::new(status);
    if let Some(headers) = headers {
        headers.apply(&mut builder);
    }
    builder.json(body)
}

/// Records a request and what it got.
fn record(shared: &Shared, req: &HttpRequest, response: &HttpResponse) {
    let at = shared.elapsed();
    crate::observe::push_bounded(
        &mut shared.lock().observed.rest_requests,
        RestRecord {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            status: response.status().as_u16(),
            at,
        },
    );
}

/// Answers one REST request: authorization, the bucket's rate limit, then
/// `handle` with the state locked; the rate-limit headers on every answer
/// that counted, success or error.
pub(crate) fn respond(
    shared: &Shared,
    req: &HttpRequest,
    bucket: &str,
    auth: Auth,
    handle: impl FnOnce(&mut State) -> Result<Reply, ApiError>,
) -> HttpResponse {
    let response = match ratelimit::admit(shared, req, bucket, auth) {
        Err(response) => response,
        Ok(headers) => {
            let result = handle(&mut shared.lock());
            match result {
                Ok(Reply::Ok(body)) => json_response(StatusCode::OK, headers.as_ref(), &body),
                Ok(Reply::Created(body)) => {
                    json_response(StatusCode::CREATED, headers.as_ref(), &body)
                }
                Ok(Reply::NoContent) => {
                    let mut builder = HttpResponse::NoContent();
                    if let Some(headers) = &headers {
                        headers.apply(&mut builder);
                    }
                    builder.finish()
                }
                Err(error) => json_response(error.status, headers.as_ref(), &error.body()),
            }
        }
    };
    record(shared, req, &response);
    response
}

/// The JSON object of a request body; 400 `{"message": "400: Bad Request"}`
/// for anything else, as Discord answers a body it cannot parse.
pub(crate) fn json_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_form(
            "_errors",
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        )),
        Err(_) => Err(ApiError::bad_request(
            50109,
            "The request body contains invalid JSON.",
        )),
    }
}

/// A snowflake in a path; `None` when it is not one (Discord answers 404
/// for the object then, or 400 for some routes).
pub(crate) fn snowflake(text: &str) -> Option<u64> {
    text.parse().ok()
}

/// Routes a gateway event to the sessions that own its guild, as Discord
/// would, right after the REST change that caused it.
pub(crate) fn dispatch(state: &mut State, name: &str, data: &Value) -> Vec<Delivery> {
    let event = Event::from_value(name, data, state.world.bot_id);
    state.route(&event, None, Instant::now())
}
