//! The REST routes around the gateway (`/api/v10/...`) and the HTTP control
//! endpoints (`/_mock/...`) for users who do not drive the emulator from
//! Rust.

use crate::{
    control::{Fault, Target},
    event::Event,
    observe::{InteractionCallbackRecord, RestRecord},
    payloads::Author,
    state::{Control, RestBucket, Shared},
    traffic::{Traffic, TrafficConfig},
    world::ChannelKind,
};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, http::StatusCode, web};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

type SharedData = web::Data<Arc<Shared>>;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/gateway", web::get().to(get_gateway))
        .route("/gateway/bot", web::get().to(get_gateway_bot))
        .route("/users/@me", web::get().to(get_current_user))
        .route(
            "/channels/{channel_id}/messages",
            web::post().to(create_message),
        )
        .route(
            "/interactions/{interaction_id}/{token}/callback",
            web::post().to(interaction_callback),
        );
}

/// Records the request and returns the response.
fn finish(shared: &Shared, req: &HttpRequest, response: HttpResponse) -> HttpResponse {
    let at = shared.elapsed();
    let mut state = shared.lock();
    crate::observe::push_bounded(
        &mut state.observed.rest_requests,
        RestRecord {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            status: response.status().as_u16(),
            at,
        },
    );
    response
}

fn error(status: StatusCode, message: &str, code: u32) -> HttpResponse {
    HttpResponseBuilder::new(status).json(json!({ "message": message, "code": code }))
}

/// Discord's answer to a route it does not have.
pub(crate) fn not_found_response() -> HttpResponse {
    error(StatusCode::NOT_FOUND, "404: Not Found", 0)
}

pub(crate) async fn not_found(req: HttpRequest, shared: SharedData) -> HttpResponse {
    finish(&shared, &req, not_found_response())
}

/// Rate-limit headers for one response of a bucket.
struct RateHeaders {
    limit: u32,
    remaining: u32,
    reset_after: Duration,
    bucket: String,
}

impl RateHeaders {
    fn apply(&self, builder: &mut HttpResponseBuilder) {
        let reset_at = crate::world::unix_ms_now() as f64 / 1000.0 + self.reset_after.as_secs_f64();
        builder
            .insert_header(("x-ratelimit-limit", self.limit.to_string()))
            .insert_header(("x-ratelimit-remaining", self.remaining.to_string()))
            .insert_header(("x-ratelimit-reset", format!("{reset_at:.3}")))
            .insert_header((
                "x-ratelimit-reset-after",
                format!("{:.3}", self.reset_after.as_secs_f64()),
            ))
            .insert_header(("x-ratelimit-bucket", self.bucket.clone()));
    }
}

/// Checks `Authorization: Bot <token>` (when `auth`) and the route bucket's
/// rate limit. `Err` is the 401 or 429 to send.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn admit(
    shared: &Shared,
    req: &HttpRequest,
    bucket: &str,
    auth: bool,
) -> Result<Option<RateHeaders>, HttpResponse> {
    if auth {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let authorized = match (&shared.config.token, given) {
            (Ok(token), Some(given)) => token.matches_authorization(given),
            _ => false,
        };
        if !authorized {
            return Err(error(StatusCode::UNAUTHORIZED, "401: Unauthorized", 0));
        }
    }
    let Some(limit) = shared.config.rest_rate_limit else {
        return Ok(None);
    };
    let now = Instant::now();
    let hash = format!(
        "{:016x}{:016x}",
        fnv(bucket),
        fnv(&bucket.to_lowercase()).rotate_left(17)
    );
    let mut state = shared.lock();
    let entry = state
        .rest_buckets
        .entry(bucket.to_owned())
        .or_insert(RestBucket {
            window_start: now,
            used: 0,
        });
    if now.saturating_duration_since(entry.window_start) >= limit.window {
        *entry = RestBucket {
            window_start: now,
            used: 0,
        };
    }
    let reset_after = limit
        .window
        .saturating_sub(now.saturating_duration_since(entry.window_start));
    if entry.used >= limit.limit {
        let headers = RateHeaders {
            limit: limit.limit,
            remaining: 0,
            reset_after,
            bucket: hash,
        };
        let mut builder = HttpResponse::TooManyRequests();
        headers.apply(&mut builder);
        builder
            .insert_header((
                "retry-after",
                reset_after.as_secs_f64().ceil().max(1.0).to_string(),
            ))
            .insert_header(("x-ratelimit-scope", "user"));
        return Err(builder.json(json!({
            "message": "You are being rate limited.",
            "retry_after": (reset_after.as_secs_f64() * 1000.0).ceil() / 1000.0,
            "global": false,
        })));
    }
    entry.used += 1;
    Ok(Some(RateHeaders {
        limit: limit.limit,
        remaining: limit.limit - entry.used,
        reset_after,
        bucket: hash,
    }))
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn ok_json(headers: Option<RateHeaders>, status: StatusCode, body: &Value) -> HttpResponse {
    let mut builder = HttpResponseBuilder::new(status);
    if let Some(headers) = headers {
        headers.apply(&mut builder);
    }
    builder.json(body)
}

async fn get_gateway(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let response = match admit(&shared, &req, "GET /gateway", false) {
        Ok(headers) => ok_json(
            headers,
            StatusCode::OK,
            &json!({ "url": shared.gateway_url() }),
        ),
        Err(response) => response,
    };
    finish(&shared, &req, response)
}

async fn get_gateway_bot(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let response = match admit(&shared, &req, "GET /gateway/bot", true) {
        Ok(headers) => {
            let body = {
                let mut state = shared.lock();
                let now = Instant::now();
                state.refresh_budget(now);
                let reset_after = state.budget_reset_at.saturating_duration_since(now);
                json!({
                    "url": shared.gateway_url(),
                    "shards": state.recommended_shards(),
                    "session_start_limit": {
                        "total": shared.config.session_start_total,
                        "remaining": state.budget_remaining,
                        "reset_after": u64::try_from(reset_after.as_millis()).unwrap_or(u64::MAX),
                        "max_concurrency": shared.config.max_concurrency,
                    },
                })
            };
            ok_json(headers, StatusCode::OK, &body)
        }
        Err(response) => response,
    };
    finish(&shared, &req, response)
}

async fn get_current_user(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let response = match admit(&shared, &req, "GET /users/@me", true) {
        Ok(headers) => {
            let user = shared.lock().world.bot_user();
            ok_json(headers, StatusCode::OK, &user)
        }
        Err(response) => response,
    };
    finish(&shared, &req, response)
}

async fn create_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let channel = path.into_inner();
    let bucket = format!("POST /channels/{channel}/messages");
    let response = match admit(&shared, &req, &bucket, true) {
        Err(response) => response,
        Ok(headers) => create_message_inner(&shared, &channel, &body, headers),
    };
    finish(&shared, &req, response)
}

fn create_message_inner(
    shared: &Shared,
    channel: &str,
    body: &[u8],
    headers: Option<RateHeaders>,
) -> HttpResponse {
    let Ok(channel_id) = channel.parse::<u64>() else {
        return error(StatusCode::NOT_FOUND, "Unknown Channel", 10003);
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "400: Bad Request", 0);
    };
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let has_embeds = body
        .get("embeds")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    if content.is_empty() && !has_embeds {
        return error(
            StatusCode::BAD_REQUEST,
            "Cannot send an empty message",
            50006,
        );
    }
    if content.chars().count() > crate::limits::MAX_MESSAGE_CONTENT {
        return error(StatusCode::BAD_REQUEST, "Invalid Form Body", 50035);
    }
    match shared.create_message(channel_id, content, Author::Bot) {
        Ok((mut message, _)) => {
            // REST returns the message without the gateway-only fields.
            if let Some(map) = message.as_object_mut() {
                map.remove("member");
                map.remove("channel_type");
            }
            ok_json(headers, StatusCode::OK, &message)
        }
        Err(crate::MockError::NotTextChannel(_)) => error(
            StatusCode::BAD_REQUEST,
            "Cannot send messages in a non-text channel",
            50008,
        ),
        Err(_) => error(StatusCode::NOT_FOUND, "Unknown Channel", 10003),
    }
}

async fn interaction_callback(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, token) = path.into_inner();
    let bucket = format!("POST /interactions/{id}/callback");
    let response = match admit(&shared, &req, &bucket, false) {
        Err(response) => response,
        Ok(headers) => {
            let parsed = serde_json::from_slice::<Value>(&body)
                .ok()
                .filter(|b| b.get("type").and_then(Value::as_u64).is_some());
            let at = shared.elapsed();
            let mut state = shared.lock();
            let interaction_id = id.parse::<u64>().ok();
            match (
                interaction_id.and_then(|i| state.interactions.get_mut(&i)),
                parsed,
            ) {
                (None, _) => error(StatusCode::NOT_FOUND, "Unknown interaction", 10062),
                (Some(entry), _) if entry.token != token => {
                    error(StatusCode::UNAUTHORIZED, "Invalid Webhook Token", 50027)
                }
                (Some(entry), _) if entry.responded => error(
                    StatusCode::BAD_REQUEST,
                    "Interaction has already been acknowledged.",
                    40060,
                ),
                (Some(_), None) => error(StatusCode::BAD_REQUEST, "Invalid Form Body", 50035),
                (Some(entry), Some(body)) => {
                    entry.responded = true;
                    crate::observe::push_bounded(
                        &mut state.observed.interaction_callbacks,
                        InteractionCallbackRecord {
                            interaction_id: interaction_id.unwrap_or_default(),
                            interaction_token: token,
                            body,
                            at,
                        },
                    );
                    let mut builder = HttpResponse::NoContent();
                    if let Some(headers) = headers {
                        headers.apply(&mut builder);
                    }
                    builder.finish()
                }
            }
        }
    };
    finish(&shared, &req, response)
}

// ----- control endpoints -----

pub(crate) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/observed", web::get().to(observed))
        .route("/violations", web::get().to(violations))
        .route("/world", web::get().to(world))
        .route("/fault", web::post().to(fault))
        .route(
            "/reconnect_instead_of_hello",
            web::post().to(reconnect_instead_of_hello),
        )
        .route("/outage", web::post().to(outage))
        .route("/dispatch", web::post().to(dispatch))
        .route("/messages", web::post().to(post_message))
        .route("/interactions", web::post().to(create_interaction))
        .route("/guilds", web::post().to(add_guilds))
        .route("/traffic", web::post().to(start_traffic))
        .route("/traffic", web::delete().to(stop_traffic))
        .route("/flood", web::post().to(flood));
}

fn bad_request(message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "message": message.to_string() }))
}

#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(body).map_err(bad_request)
}

async fn observed(shared: SharedData) -> HttpResponse {
    let mut state = shared.lock();
    state.purge(Instant::now());
    state.refresh_written();
    HttpResponse::Ok().json(&state.observed)
}

async fn violations(shared: SharedData) -> HttpResponse {
    HttpResponse::Ok().json(&shared.lock().observed.violations)
}

async fn world(shared: SharedData) -> HttpResponse {
    let state = shared.lock();
    let world = &state.world;
    let guilds: Vec<Value> = (0..world.guilds.len())
        .map(|g| {
            let texts: Vec<String> = (0..world.channels_per_guild())
                .map(|k| world.channel_id(g, ChannelKind::Text(k)).to_string())
                .collect();
            json!({
                "id": world.guild_id(g).to_string(),
                "name": world.guild_name(g),
                "text_channels": texts,
                "voice_channel": world.channel_id(g, ChannelKind::Voice).to_string(),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "bot_id": world.bot_id.to_string(),
        "recommended_shards": state.recommended_shards(),
        "guilds": guilds,
    }))
}

#[derive(Deserialize)]
struct FaultBody {
    target: Target,
    fault: Fault,
}

async fn fault(shared: SharedData, body: web::Bytes) -> HttpResponse {
    let body: FaultBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let state = shared.lock();
    let ids = state.resolve(&body.target);
    let reached = state.send_control(&ids, || Control::Fault(body.fault.clone()));
    HttpResponse::Ok().json(json!({ "connections": reached }))
}

#[derive(Deserialize)]
struct CountBody {
    count: u32,
}

async fn reconnect_instead_of_hello(shared: SharedData, body: web::Bytes) -> HttpResponse {
    match parse::<CountBody>(&body) {
        Ok(body) => {
            shared.lock().reconnect_instead_of_hello = body.count;
            HttpResponse::NoContent().finish()
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct OutageBody {
    millis: u64,
}

async fn outage(shared: SharedData, body: web::Bytes) -> HttpResponse {
    match parse::<OutageBody>(&body) {
        Ok(body) => {
            shared.lock().outage_until = Some(Instant::now() + Duration::from_millis(body.millis));
            HttpResponse::NoContent().finish()
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct DispatchBody {
    #[serde(default)]
    target: Option<Target>,
    event: String,
    data: Value,
}

async fn dispatch(shared: SharedData, body: web::Bytes) -> HttpResponse {
    let body: DispatchBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let event = Event::from_value(&body.event, &body.data, state.world.bot_id);
    let deliveries = state.route(&event, body.target.as_ref(), Instant::now());
    HttpResponse::Ok().json(json!({ "deliveries": deliveries }))
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(with = "crate::control::snowflake")]
    channel_id: u64,
    content: String,
}

async fn post_message(shared: SharedData, body: web::Bytes) -> HttpResponse {
    let body: MessageBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match shared.create_message(body.channel_id, &body.content, Author::Member(0)) {
        Ok((message, deliveries)) => {
            HttpResponse::Ok().json(json!({ "message": message, "deliveries": deliveries }))
        }
        Err(e) => bad_request(e),
    }
}

#[derive(Deserialize)]
struct InteractionBody {
    #[serde(with = "crate::control::snowflake")]
    channel_id: u64,
    command: String,
    #[serde(default)]
    options: Option<Value>,
}

async fn create_interaction(shared: SharedData, body: web::Bytes) -> HttpResponse {
    let body: InteractionBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let options = body.options.unwrap_or_else(|| json!([]));
    match shared.create_interaction(body.channel_id, &body.command, &options) {
        Ok(created) => HttpResponse::Ok().json(created),
        Err(e) => bad_request(e),
    }
}

#[derive(Deserialize)]
struct GuildsBody {
    count: u64,
}

async fn add_guilds(shared: SharedData, body: web::Bytes) -> HttpResponse {
    let body: GuildsBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let added: Vec<String> = state
        .add_guilds(body.count)
        .iter()
        .map(u64::to_string)
        .collect();
    HttpResponse::Ok().json(json!({ "added": added, "shards": state.recommended_shards() }))
}

async fn start_traffic(
    shared: SharedData,
    traffic: web::Data<Traffic>,
    body: web::Bytes,
) -> HttpResponse {
    let config: TrafficConfig = if body.is_empty() {
        TrafficConfig::default()
    } else {
        match parse(&body) {
            Ok(config) => config,
            Err(response) => return response,
        }
    };
    traffic.start(shared.get_ref(), config);
    HttpResponse::NoContent().finish()
}

async fn stop_traffic(traffic: web::Data<Traffic>) -> HttpResponse {
    traffic.stop();
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct FloodBody {
    target: Target,
    count: u64,
}

async fn flood(shared: SharedData, body: web::Bytes) -> HttpResponse {
    let body: FloodBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let receivers: Vec<oneshot::Receiver<u64>> = {
        let state = shared.lock();
        state
            .resolve(&body.target)
            .iter()
            .filter_map(|id| state.connections.get(id))
            .filter_map(|handle| {
                let (done, receiver) = oneshot::channel();
                handle
                    .control
                    .send(Control::Flood {
                        count: body.count,
                        done,
                    })
                    .is_ok()
                    .then_some(receiver)
            })
            .collect()
    };
    let connections = receivers.len();
    let mut sent = 0;
    for receiver in receivers {
        sent += receiver.await.unwrap_or(0);
    }
    HttpResponse::Ok().json(json!({ "connections": connections, "sent": sent }))
}
