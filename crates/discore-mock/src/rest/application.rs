//! The current user and the current application: what libraries fetch at
//! login. discord.py's `login()` calls `GET /users/@me` and then
//! `GET /oauth2/applications/@me`; other libraries use
//! `GET /applications/@me`
//! (<https://discord.com/developers/docs/resources/application#get-current-application>).

use super::{ApiError, Auth, Reply, SharedData, Unknown, respond, snowflake};
use crate::{intents, world::World};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/@me", web::get().to(get_current_user))
        .route("/users/@me/guilds", web::get().to(get_current_user_guilds))
        .route("/users/{user_id}", web::get().to(get_user))
        .route("/applications/@me", web::get().to(get_current_application))
        .route(
            "/oauth2/applications/@me",
            web::get().to(get_current_application),
        );
}

async fn get_current_user(req: HttpRequest, shared: SharedData) -> HttpResponse {
    respond(&shared, &req, "GET /users/@me", Auth::Bot, |state| {
        Ok(Reply::Ok(state.world.bot_user()))
    })
}

/// The bot's guilds as partial guilds, oldest first.
async fn get_current_user_guilds(req: HttpRequest, shared: SharedData) -> HttpResponse {
    respond(&shared, &req, "GET /users/@me/guilds", Auth::Bot, |state| {
        let world = &state.world;
        let guilds: Vec<Value> = (0..world.guilds.len())
            .map(|g| {
                json!({
                    "id": world.guild_id(g).to_string(),
                    "name": world.guild_name(g),
                    "icon": null,
                    "banner": null,
                    "owner": false,
                    "permissions": "2248473465835073",
                    "features": ["COMMUNITY", "NEWS", "SOUNDBOARD"],
                })
            })
            .collect();
        Ok(Reply::Ok(Value::Array(guilds)))
    })
}

/// The bot, or a member of one of its guilds.
async fn get_user(req: HttpRequest, shared: SharedData, path: web::Path<String>) -> HttpResponse {
    let id = snowflake(&path);
    respond(&shared, &req, "GET /users/{user_id}", Auth::Bot, |state| {
        let world = &state.world;
        let id = id.ok_or_else(|| ApiError::unknown(Unknown::User))?;
        if id == world.bot_id {
            return Ok(Reply::Ok(world.bot_user()));
        }
        (0..world.guilds.len())
            .find_map(|g| world.member_index(g, id).map(|m| world.user(g, m)))
            .map(Reply::Ok)
            .ok_or_else(|| ApiError::unknown(Unknown::User))
    })
}

async fn get_current_application(req: HttpRequest, shared: SharedData) -> HttpResponse {
    let granted = shared.config.granted_intents.bits();
    let bucket = format!(
        "GET {}",
        req.path()
            .trim_start_matches("/api/v10")
            .trim_start_matches("/api/v9")
    );
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        Ok(Reply::Ok(application(&state.world, granted)))
    })
}

/// The bot's application: its id is the bot's, its owner the first member
/// of the first guild, its flags the privileged intents granted.
pub(crate) fn application(world: &World, granted_intents: u64) -> Value {
    let owner = if world.guilds.is_empty() {
        world.bot_user()
    } else {
        world.user(0, 0)
    };
    json!({
        "id": world.bot_id.to_string(),
        "name": "discore-mock",
        "icon": null,
        "description": "A bot running against discore-mock",
        "summary": "",
        "type": null,
        "hook": true,
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": format!("{:064x}", u128::from(world.bot_id)),
        "flags": intents::application_flags(granted_intents),
        "owner": owner,
        "team": null,
        "bot": world.bot_user(),
        "rpc_origins": [],
        "terms_of_service_url": null,
        "privacy_policy_url": null,
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "event_webhooks_url": null,
        "event_webhooks_status": 1,
        "event_webhooks_types": [],
        "tags": [],
        "install_params": null,
        "integration_types_config": { "0": {}, "1": {} },
        "custom_install_url": null,
        "approximate_guild_count": world.guilds.len(),
        "approximate_user_install_count": 0,
        "approximate_user_authorization_count": 0,
        "is_monetized": false,
        "is_verified": false,
        "is_discoverable": false,
        "storefront_available": false,
    })
}
