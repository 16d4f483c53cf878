//! `GET /gateway` and `GET /gateway/bot`: the URL to connect to, the
//! recommended shard count and the session start limit
//! (<https://discord.com/developers/docs/events/gateway#get-gateway>).

use super::{Auth, Reply, SharedData, respond};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use std::time::Instant;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/gateway", web::get().to(get_gateway))
        .route("/gateway/bot", web::get().to(get_gateway_bot));
}

async fn get_gateway(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let url = shared.gateway_url();
    respond(&shared, &req, "GET /gateway", Auth::Token, |_| {
        Ok(Reply::Ok(json!({ "url": url })))
    })
}

async fn get_gateway_bot(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let url = shared.gateway_url();
    let config = &shared.config;
    respond(&shared, &req, "GET /gateway/bot", Auth::Bot, |state| {
        let now = Instant::now();
        state.refresh_budget(now);
        let reset_after = state.budget_reset_at.saturating_duration_since(now);
        Ok(Reply::Ok(json!({
            "url": url,
            "shards": state.recommended_shards(),
            "session_start_limit": {
                "total": config.session_start_total,
                "remaining": state.budget_remaining,
                "reset_after": u64::try_from(reset_after.as_millis()).unwrap_or(u64::MAX),
                "max_concurrency": config.max_concurrency,
            },
        })))
    })
}
