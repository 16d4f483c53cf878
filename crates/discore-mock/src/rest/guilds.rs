//! Guilds, their members and roles
//! (<https://discord.com/developers/docs/resources/guild>): get a guild and
//! its channels; get, list and modify members (nickname, roles) and add or
//! remove one role; list, create, modify and delete roles. Changes dispatch
//! GUILD_MEMBER_UPDATE and GUILD_ROLE_CREATE/UPDATE/DELETE.

use super::{ApiError, Auth, Reply, SharedData, Unknown, dispatch, json_body, respond, snowflake};
use crate::{intents, state::State, world::ChannelKind};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/guilds/{guild_id}", web::get().to(get_guild))
        .route("/guilds/{guild_id}/channels", web::get().to(get_channels))
        .route("/guilds/{guild_id}/members", web::get().to(list_members))
        .route(
            "/guilds/{guild_id}/members/@me",
            web::patch().to(modify_own_member),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}",
            web::get().to(get_member),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}",
            web::patch().to(modify_member),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            web::put().to(add_member_role),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            web::delete().to(remove_member_role),
        )
        .route("/guilds/{guild_id}/roles", web::get().to(list_roles))
        .route("/guilds/{guild_id}/roles", web::post().to(create_role))
        .route(
            "/guilds/{guild_id}/roles/{role_id}",
            web::get().to(get_role),
        )
        .route(
            "/guilds/{guild_id}/roles/{role_id}",
            web::patch().to(modify_role),
        )
        .route(
            "/guilds/{guild_id}/roles/{role_id}",
            web::delete().to(delete_role),
        );
}

/// The guild's index, or Unknown Guild.
fn guild(state: &State, id: &str) -> Result<usize, ApiError> {
    snowflake(id)
        .and_then(|id| state.world.guild_index(id))
        .ok_or_else(|| ApiError::unknown(Unknown::Guild))
}

/// The user id of a member path segment (`@me` is the bot).
fn user(state: &State, id: &str) -> Result<u64, ApiError> {
    if id == "@me" {
        return Ok(state.world.bot_id);
    }
    snowflake(id).ok_or_else(|| ApiError::unknown(Unknown::User))
}

async fn get_guild(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let bucket = format!("GET /guilds/{}", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &path)?;
        let mut value = state.world.guild_create(g, 0, 250);
        if let Some(map) = value.as_object_mut() {
            // REST's guild has none of GUILD_CREATE's gateway-only fields.
            for key in [
                "joined_at",
                "large",
                "unavailable",
                "member_count",
                "voice_states",
                "members",
                "channels",
                "threads",
                "presences",
                "stage_instances",
                "guild_scheduled_events",
                "soundboard_sounds",
                "embedded_activities",
                "activity_instances",
                "application_command_counts",
                "lazy",
                "version",
            ] {
                map.remove(key);
            }
            map.insert(
                "roles".to_owned(),
                json!(state.store.roles(&state.world, g)),
            );
            if query.get("with_counts").is_some_and(|v| v == "true") {
                let members = u64::from(state.world.members_per_guild()) + 1;
                map.insert("approximate_member_count".to_owned(), json!(members));
                map.insert("approximate_presence_count".to_owned(), json!(members / 2));
            }
        }
        Ok(Reply::Ok(value))
    })
}

async fn get_channels(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
) -> HttpResponse {
    let bucket = format!("GET /guilds/{}/channels", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &path)?;
        let world = &state.world;
        let mut channels = vec![world.channel_object(g, ChannelKind::Category, true)];
        for k in 0..world.channels_per_guild() {
            channels.push(world.channel_object(g, ChannelKind::Text(k), true));
        }
        channels.push(world.channel_object(g, ChannelKind::Voice, true));
        Ok(Reply::Ok(Value::Array(channels)))
    })
}

async fn get_member(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (guild_id, user_id) = path.into_inner();
    let bucket = format!("GET /guilds/{guild_id}/members/{{user_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &guild_id)?;
        let user = user(state, &user_id)?;
        state
            .store
            .member(&state.world, g, user)
            .map(Reply::Ok)
            .ok_or_else(|| ApiError::unknown(Unknown::Member))
    })
}

/// Members by user id, `after` one, at most `limit` (1..=1000); needs the
/// GUILD_MEMBERS privileged intent granted to the application.
async fn list_members(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let granted = shared.config.granted_intents.bits();
    let bucket = format!("GET /guilds/{}/members", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &path)?;
        if granted & intents::GUILD_MEMBERS == 0 {
            return Err(ApiError::forbidden(50001, "Missing Access"));
        }
        let limit = match query.get("limit") {
            None => 1,
            Some(limit) => match limit.parse::<usize>() {
                Ok(limit @ 1..=1000) => limit,
                _ => {
                    return Err(ApiError::invalid_form(
                        "limit",
                        "NUMBER_TYPE_MAX",
                        "Must be between 1 and 1000.",
                    ));
                }
            },
        };
        let after = query.get("after").and_then(|a| snowflake(a)).unwrap_or(0);
        let world = &state.world;
        let mut ids: Vec<u64> = (0..world.members_per_guild())
            .map(|m| world.user_id(g, m))
            .chain([world.bot_id])
            .filter(|id| *id > after)
            .collect();
        ids.sort_unstable();
        let members: Vec<Value> = ids
            .into_iter()
            .take(limit)
            .filter_map(|id| state.store.member(world, g, id))
            .collect();
        Ok(Reply::Ok(Value::Array(members)))
    })
}

/// Dispatches GUILD_MEMBER_UPDATE for a member as it is now.
fn member_updated(state: &mut State, g: usize, user: u64) -> Option<Value> {
    let member = state.store.member(&state.world, g, user)?;
    let mut event = member.clone();
    event["guild_id"] = json!(state.world.guild_id(g).to_string());
    dispatch(state, "GUILD_MEMBER_UPDATE", &event);
    Some(member)
}

/// Applies `nick` and `roles` of a Modify Guild Member body.
fn modify(
    state: &mut State,
    g: usize,
    user: u64,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    state
        .store
        .member(&state.world, g, user)
        .ok_or_else(|| ApiError::unknown(Unknown::Member))?;
    let nick = match body.get("nick") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(n)) if n.is_empty() => Some(None),
        Some(Value::String(n)) if n.chars().count() <= 32 => Some(Some(n.clone())),
        Some(_) => {
            return Err(ApiError::invalid_form(
                "nick",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 32 or fewer in length.",
            ));
        }
    };
    let roles = match body.get("roles") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) => {
            let known = state.store.roles(&state.world, g);
            let mut roles = Vec::new();
            for id in ids {
                let id = id
                    .as_str()
                    .filter(|id| known.iter().any(|r| r["id"] == **id))
                    .ok_or_else(|| ApiError::unknown(Unknown::Role))?;
                roles.push(id.to_owned());
            }
            Some(roles)
        }
        Some(_) => {
            return Err(ApiError::invalid_form(
                "roles",
                "BASE_TYPE_ARRAY",
                "Could not interpret the value as a list.",
            ));
        }
    };
    let patch = state.store.member_patch_mut(g, user);
    if nick.is_some() {
        patch.nick = nick;
    }
    if roles.is_some() {
        patch.roles = roles;
    }
    member_updated(state, g, user).ok_or_else(|| ApiError::unknown(Unknown::Member))
}

async fn modify_member(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (guild_id, user_id) = path.into_inner();
    let bucket = format!("PATCH /guilds/{guild_id}/members/{{user_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &guild_id)?;
        let user = user(state, &user_id)?;
        let body = json_body(&body)?;
        modify(state, g, user, &body).map(Reply::Ok)
    })
}

/// The bot's own nickname (Modify Current Member).
async fn modify_own_member(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let bucket = format!("PATCH /guilds/{}/members/@me", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &path)?;
        let body = json_body(&body)?;
        let nick_only: Map<String, Value> =
            body.into_iter().filter(|(key, _)| key == "nick").collect();
        let bot = state.world.bot_id;
        modify(state, g, bot, &nick_only).map(Reply::Ok)
    })
}

/// Adds (`add`) or removes one role of a member.
fn member_role(
    state: &mut State,
    guild_id: &str,
    user_id: &str,
    role_id: &str,
    add: bool,
) -> Result<Reply, ApiError> {
    let g = guild(state, guild_id)?;
    let user = user(state, user_id)?;
    let member = state
        .store
        .member(&state.world, g, user)
        .ok_or_else(|| ApiError::unknown(Unknown::Member))?;
    let role = snowflake(role_id)
        .map(|r| r.to_string())
        .filter(|r| {
            state
                .store
                .roles(&state.world, g)
                .iter()
                .any(|known| known["id"] == *r)
        })
        .ok_or_else(|| ApiError::unknown(Unknown::Role))?;
    let mut roles: Vec<String> = member["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let had = roles.contains(&role);
    if add == had {
        return Ok(Reply::NoContent);
    }
    if add {
        roles.push(role);
    } else {
        roles.retain(|r| *r != role);
    }
    state.store.member_patch_mut(g, user).roles = Some(roles);
    member_updated(state, g, user);
    Ok(Reply::NoContent)
}

async fn add_member_role(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (guild_id, user_id, role_id) = path.into_inner();
    let bucket = format!("PUT /guilds/{guild_id}/members/{{user_id}}/roles/{{role_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        member_role(state, &guild_id, &user_id, &role_id, true)
    })
}

async fn remove_member_role(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (guild_id, user_id, role_id) = path.into_inner();
    let bucket = format!("DELETE /guilds/{guild_id}/members/{{user_id}}/roles/{{role_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        member_role(state, &guild_id, &user_id, &role_id, false)
    })
}

async fn list_roles(req: HttpRequest, shared: SharedData, path: web::Path<String>) -> HttpResponse {
    let bucket = format!("GET /guilds/{}/roles", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &path)?;
        Ok(Reply::Ok(json!(state.store.roles(&state.world, g))))
    })
}

async fn get_role(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (guild_id, role_id) = path.into_inner();
    let bucket = format!("GET /guilds/{guild_id}/roles/{{role_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &guild_id)?;
        state
            .store
            .roles(&state.world, g)
            .into_iter()
            .find(|r| r["id"] == role_id.as_str())
            .map(Reply::Ok)
            .ok_or_else(|| ApiError::unknown(Unknown::Role))
    })
}

/// The role fields a bot may set, checked.
fn role_fields(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut fields = Map::new();
    for (key, value) in body {
        let ok = match key.as_str() {
            "name" => value.as_str().is_some_and(|n| n.chars().count() <= 100),
            "permissions" => value.as_str().is_some_and(|p| p.parse::<u64>().is_ok()),
            "color" => value.is_u64(),
            "hoist" | "mentionable" => value.is_boolean(),
            "icon" | "unicode_emoji" => value.is_null() || value.is_string(),
            "colors" => value.is_object(),
            _ => continue,
        };
        if !ok {
            return Err(ApiError::invalid_form(
                key,
                "BASE_TYPE_BAD_VALUE",
                "Invalid value.",
            ));
        }
        fields.insert(key.clone(), value.clone());
    }
    Ok(fields)
}

async fn create_role(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let bucket = format!("POST /guilds/{}/roles", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &path)?;
        let body = if body.is_empty() {
            Map::new()
        } else {
            json_body(&body)?
        };
        let fields = role_fields(&body)?;
        let id = state.store.new_id();
        let world = std::sync::Arc::clone(&state.world);
        let roles = state.store.roles_mut(&world, g);
        let mut role = json!({
            "id": id.to_string(),
            "name": "new role",
            "color": 0,
            "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
            "hoist": false,
            "icon": null,
            "unicode_emoji": null,
            "position": 1,
            "permissions": "0",
            "managed": false,
            "mentionable": false,
            "flags": 0,
        });
        for (key, value) in fields {
            role[key] = value;
        }
        roles.push(role.clone());
        let event = json!({ "guild_id": world.guild_id(g).to_string(), "role": role });
        dispatch(state, "GUILD_ROLE_CREATE", &event);
        Ok(Reply::Ok(role))
    })
}

async fn modify_role(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (guild_id, role_id) = path.into_inner();
    let bucket = format!("PATCH /guilds/{guild_id}/roles/{{role_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &guild_id)?;
        let body = json_body(&body)?;
        let fields = role_fields(&body)?;
        let world = std::sync::Arc::clone(&state.world);
        let role = state
            .store
            .roles_mut(&world, g)
            .iter_mut()
            .find(|r| r["id"] == role_id.as_str())
            .ok_or_else(|| ApiError::unknown(Unknown::Role))?;
        if role["managed"] == true && fields.contains_key("permissions") {
            return Err(ApiError::forbidden(50013, "Missing Permissions"));
        }
        for (key, value) in fields {
            role[key] = value;
        }
        let role = role.clone();
        let event = json!({ "guild_id": world.guild_id(g).to_string(), "role": role });
        dispatch(state, "GUILD_ROLE_UPDATE", &event);
        Ok(Reply::Ok(role))
    })
}

async fn delete_role(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (guild_id, role_id) = path.into_inner();
    let bucket = format!("DELETE /guilds/{guild_id}/roles/{{role_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let g = guild(state, &guild_id)?;
        let world = std::sync::Arc::clone(&state.world);
        let roles = state.store.roles_mut(&world, g);
        let index = roles
            .iter()
            .position(|r| r["id"] == role_id.as_str())
            .ok_or_else(|| ApiError::unknown(Unknown::Role))?;
        // @everyone (its id is the guild's) and managed roles stay.
        if role_id == world.guild_id(g).to_string() || roles[index]["managed"] == true {
            return Err(ApiError::forbidden(50013, "Missing Permissions"));
        }
        roles.remove(index);
        state.store.forget_role(g, &role_id);
        let event = json!({ "guild_id": world.guild_id(g).to_string(), "role_id": role_id });
        dispatch(state, "GUILD_ROLE_DELETE", &event);
        Ok(Reply::NoContent)
    })
}
