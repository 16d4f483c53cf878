//! Application commands, global and per guild
//! (<https://discord.com/developers/docs/interactions/application-commands>):
//! list, create (or overwrite one of the same name and type), get, edit,
//! delete, and the bulk overwrite bots do at start-up (`PUT`). Discord sends
//! no gateway event for these.

use super::{ApiError, Auth, Reply, SharedData, Unknown, json_body, respond, snowflake};
use crate::state::State;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for base in [
        "/applications/{application_id}/commands",
        "/applications/{application_id}/guilds/{guild_id}/commands",
    ] {
        cfg.route(base, web::get().to(list))
            .route(base, web::post().to(create))
            .route(base, web::put().to(overwrite))
            .route(&format!("{base}/{{command_id}}"), web::get().to(get))
            .route(&format!("{base}/{{command_id}}"), web::patch().to(edit))
            .route(&format!("{base}/{{command_id}}"), web::delete().to(delete));
    }
}

/// Global commands at most per application (and per guild).
const MAX_COMMANDS: usize = 100;
/// Command types: CHAT_INPUT, USER, MESSAGE, PRIMARY_ENTRY_POINT.
const CHAT_INPUT: u64 = 1;
const PRIMARY_ENTRY_POINT: u64 = 4;

/// The scope a path names: `None` for global commands, a guild's id
/// otherwise. Unknown Application for another application's commands,
/// Unknown Guild for a guild the bot is not in.
fn scope(state: &State, req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let application = req.match_info().get("application_id").and_then(snowflake);
    if application != Some(state.world.bot_id) {
        return Err(ApiError::unknown(Unknown::Application));
    }
    match req.match_info().get("guild_id") {
        None => Ok(None),
        Some(guild) => snowflake(guild)
            .filter(|g| state.world.guild_index(*g).is_some())
            .map(Some)
            .ok_or_else(|| ApiError::unknown(Unknown::Guild)),
    }
}

fn bucket(req: &HttpRequest) -> String {
    let guild = req.match_info().get("guild_id").unwrap_or("");
    format!("{} /applications/commands/{guild}", req.method())
}

/// A command as Discord returns it, from a request body; `id` and
/// `version` given. Checks what Discord checks: a name of 1 to 32
/// characters (lowercase for slash commands), a description of 1 to 100
/// for slash commands and none for the others.
fn command(
    body: &Map<String, Value>,
    id: u64,
    version: u64,
    application: u64,
    guild: Option<u64>,
) -> Result<Value, ApiError> {
    let kind = match body.get("type") {
        None | Some(Value::Null) => CHAT_INPUT,
        Some(kind) => kind
            .as_u64()
            .filter(|k| (CHAT_INPUT..=PRIMARY_ENTRY_POINT).contains(k))
            .ok_or_else(|| {
                ApiError::invalid_form(
                    "type",
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {1, 2, 3, 4}.",
                )
            })?,
    };
    let name = body.get("name").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid_form("name", "BASE_TYPE_REQUIRED", "This field is required")
    })?;
    let length = name.chars().count();
    let name_ok = (1..=32).contains(&length)
        && (kind != CHAT_INPUT
            || name.chars().all(|c| {
                c == '-' || c == '_' || c == '\'' || c.is_alphanumeric() && !c.is_uppercase()
            }));
    if !name_ok {
        return Err(ApiError::invalid_form(
            "name",
            "APPLICATION_COMMAND_INVALID_NAME",
            "Command name is invalid",
        ));
    }
    let description = body
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let description_ok = if kind == CHAT_INPUT {
        (1..=100).contains(&description.chars().count())
    } else {
        description.is_empty()
    };
    if !description_ok {
        return Err(ApiError::invalid_form(
            "description",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        ));
    }
    let field = |key: &str, default: Value| body.get(key).cloned().unwrap_or(default);
    let mut value = json!({
        "id": id.to_string(),
        "application_id": application.to_string(),
        "version": version.to_string(),
        "type": kind,
        "name": name,
        "name_localizations": field("name_localizations", Value::Null),
        "description": description,
        "description_localizations": field("description_localizations", Value::Null),
        "default_member_permissions": field("default_member_permissions", Value::Null),
        "nsfw": field("nsfw", json!(false)),
        "integration_types": field("integration_types", json!([0])),
        "contexts": field("contexts", Value::Null),
    });
    if let Some(options) = body.get("options").filter(|o| o.is_array()) {
        value["options"] = options.clone();
    }
    if let Some(handler) = body.get("handler") {
        value["handler"] = handler.clone();
    }
    match guild {
        Some(guild) => value["guild_id"] = json!(guild.to_string()),
        None => value["dm_permission"] = field("dm_permission", json!(true)),
    }
    Ok(value)
}

/// Whether two commands are the same one: same name and type.
fn same(a: &Value, name: &str, kind: &Value) -> bool {
    a["name"] == name && a["type"] == *kind
}

async fn list(req: HttpRequest, shared: SharedData) -> HttpResponse {
    respond(&shared, &req, &bucket(&req), Auth::Bot, |state| {
        let scope = scope(state, &req)?;
        Ok(Reply::Ok(json!(state.store.commands(scope))))
    })
}

async fn get(req: HttpRequest, shared: SharedData) -> HttpResponse {
    respond(&shared, &req, &bucket(&req), Auth::Bot, |state| {
        let scope = scope(state, &req)?;
        let id = req.match_info().get("command_id").unwrap_or("");
        state
            .store
            .commands(scope)
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .map(Reply::Ok)
            .ok_or_else(|| ApiError::unknown(Unknown::Command))
    })
}

/// Creates a command, or overwrites the one of the same name and type
/// (200 then, 201 for a new one).
async fn create(req: HttpRequest, shared: SharedData, body: web::Bytes) -> HttpResponse {
    respond(&shared, &req, &bucket(&req), Auth::Bot, |state| {
        let scope = scope(state, &req)?;
        let body = json_body(&body)?;
        let id = state.store.new_id();
        let application = state.world.bot_id;
        let mut new = command(&body, id, id, application, scope)?;
        let commands = state.store.commands_mut(scope);
        let name = new["name"].as_str().unwrap_or_default().to_owned();
        let full = commands.len() >= MAX_COMMANDS;
        match commands.iter_mut().find(|c| same(c, &name, &new["type"])) {
            Some(existing) => {
                new["id"] = existing["id"].clone();
                *existing = new.clone();
                Ok(Reply::Ok(new))
            }
            None if full => Err(ApiError::bad_request(
                30032,
                "Maximum number of application commands reached (100)",
            )),
            None => {
                commands.push(new.clone());
                Ok(Reply::Created(new))
            }
        }
    })
}

/// Replaces every command of the scope; commands whose name and type stay
/// keep their id.
async fn overwrite(req: HttpRequest, shared: SharedData, body: web::Bytes) -> HttpResponse {
    respond(&shared, &req, &bucket(&req), Auth::Bot, |state| {
        let scope = scope(state, &req)?;
        let list: Vec<Value> = match serde_json::from_slice(&body) {
            Ok(Value::Array(list)) => list,
            _ => {
                return Err(ApiError::invalid_form(
                    "_errors",
                    "BASE_TYPE_ARRAY",
                    "Could not interpret the value as a list.",
                ));
            }
        };
        if list.len() > MAX_COMMANDS {
            return Err(ApiError::bad_request(
                30032,
                "Maximum number of application commands reached (100)",
            ));
        }
        let application = state.world.bot_id;
        let mut commands = Vec::with_capacity(list.len());
        for entry in &list {
            let Value::Object(body) = entry else {
                return Err(ApiError::invalid_form(
                    "0",
                    "DICT_TYPE_CONVERT",
                    "Only dictionaries may be used in a DictType",
                ));
            };
            let id = state.store.new_id();
            let mut new = command(body, id, id, application, scope)?;
            let name = new["name"].as_str().unwrap_or_default().to_owned();
            if let Some(existing) = state
                .store
                .commands(scope)
                .iter()
                .find(|c| same(c, &name, &new["type"]))
            {
                new["id"] = existing["id"].clone();
            }
            if commands
                .iter()
                .any(|c: &Value| same(c, &name, &new["type"]))
            {
                return Err(ApiError::invalid_form(
                    "name",
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                ));
            }
            commands.push(new);
        }
        *state.store.commands_mut(scope) = commands.clone();
        Ok(Reply::Ok(Value::Array(commands)))
    })
}

async fn edit(req: HttpRequest, shared: SharedData, body: web::Bytes) -> HttpResponse {
    respond(&shared, &req, &bucket(&req), Auth::Bot, |state| {
        let scope = scope(state, &req)?;
        let id = req.match_info().get("command_id").unwrap_or("").to_owned();
        let patch = json_body(&body)?;
        let version = state.store.new_id();
        let application = state.world.bot_id;
        let existing = state
            .store
            .commands(scope)
            .iter()
            .find(|c| c["id"] == id.as_str())
            .cloned()
            .ok_or_else(|| ApiError::unknown(Unknown::Command))?;
        let mut merged = existing.as_object().cloned().unwrap_or_default();
        for (key, value) in patch {
            merged.insert(key, value);
        }
        let mut edited = command(&merged, 0, version, application, scope)?;
        edited["id"] = existing["id"].clone();
        if let Some(slot) = state
            .store
            .commands_mut(scope)
            .iter_mut()
            .find(|c| c["id"] == id.as_str())
        {
            *slot = edited.clone();
        }
        Ok(Reply::Ok(edited))
    })
}

async fn delete(req: HttpRequest, shared: SharedData) -> HttpResponse {
    respond(&shared, &req, &bucket(&req), Auth::Bot, |state| {
        let scope = scope(state, &req)?;
        let id = req.match_info().get("command_id").unwrap_or("").to_owned();
        let commands = state.store.commands_mut(scope);
        let before = commands.len();
        commands.retain(|c| c["id"] != id.as_str());
        if commands.len() == before {
            return Err(ApiError::unknown(Unknown::Command));
        }
        Ok(Reply::NoContent)
    })
}
