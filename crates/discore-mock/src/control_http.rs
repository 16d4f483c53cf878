//! The emulator's own HTTP endpoints (`/_mock/...`): observations, faults,
//! events and the world, for users who do not drive it from Rust (a bot in
//! another language, a test in another process).

use crate::{
    control::{Fault, Target},
    event::Event,
    payloads::Author,
    state::{Control, Shared},
    traffic::{Traffic, TrafficConfig},
    world::ChannelKind,
};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

type SharedData = web::Data<Arc<Shared>>;

pub(crate) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/observed", web::get().to(observed))
        .route("/violations", web::get().to(violations))
        .route("/world", web::get().to(world))
        .route("/fault", web::post().to(fault))
        .route(
            "/reconnect_instead_of_hello",
            web::post().to(reconnect_instead_of_hello),
        )
        .route("/refuse_identifies", web::post().to(refuse_identifies))
        .route("/outage", web::post().to(outage))
        .route("/hold_resumes", web::post().to(hold_resumes))
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

/// `{"count": N}`: the next N Identifies get op 9 (see
/// `MockServer::refuse_identifies`).
async fn refuse_identifies(shared: SharedData, body: web::Bytes) -> HttpResponse {
    match parse::<CountBody>(&body) {
        Ok(body) => {
            shared.lock().identifies_to_refuse = body.count;
            HttpResponse::NoContent().finish()
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct HoldBody {
    hold: bool,
}

/// `{"hold": true}` holds every Resume unanswered, `{"hold": false}`
/// answers the held ones (see `MockServer::hold_resumes`).
async fn hold_resumes(shared: SharedData, body: web::Bytes) -> HttpResponse {
    match parse::<HoldBody>(&body) {
        Ok(body) => {
            let mut state = shared.lock();
            state.resumes_held = body.hold;
            if !body.hold {
                let all = state.resolve(&Target::All);
                state.send_control(&all, || Control::ReleaseResume);
            }
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
