//! Channels and their messages
//! (<https://discord.com/developers/docs/resources/message>): get a channel;
//! list, get, create, edit and delete messages. Creating, editing and
//! deleting dispatch MESSAGE_CREATE, MESSAGE_UPDATE and MESSAGE_DELETE to
//! the sessions that own the guild.

use super::{ApiError, Auth, Reply, SharedData, Unknown, dispatch, json_body, respond, snowflake};
use crate::{
    limits,
    payloads::{self, Author},
    state::{Delivery, State},
    store::Message,
    world::{ChannelKind, iso8601, unix_ms_now},
};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/channels/{channel_id}", web::get().to(get_channel))
        .route(
            "/channels/{channel_id}/messages",
            web::get().to(list_messages),
        )
        .route(
            "/channels/{channel_id}/messages",
            web::post().to(create_message),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            web::get().to(get_message),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            web::patch().to(edit_message),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            web::delete().to(delete_message),
        );
}

/// A text channel of the world: its guild and kind, or Unknown Channel.
fn text_channel(state: &State, channel: &str) -> Result<(u64, usize, ChannelKind), ApiError> {
    let id = snowflake(channel).ok_or_else(|| ApiError::unknown(Unknown::Channel))?;
    let found = state
        .world
        .channel(id)
        .ok_or_else(|| ApiError::unknown(Unknown::Channel))?;
    Ok((id, found.guild, found.kind))
}

async fn get_channel(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
) -> HttpResponse {
    let bucket = format!("GET /channels/{}", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (_, guild, kind) = text_channel(state, &path)?;
        Ok(Reply::Ok(state.world.channel_object(guild, kind, true)))
    })
}

async fn list_messages(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let bucket = format!("GET /channels/{}/messages", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, _, _) = text_channel(state, &path)?;
        let limit = match query.get("limit") {
            None => 50,
            Some(limit) => match limit.parse::<usize>() {
                Ok(limit @ 1..=100) => limit,
                _ => {
                    return Err(ApiError::invalid_form(
                        "limit",
                        "NUMBER_TYPE_MAX",
                        "Must be between 1 and 100.",
                    ));
                }
            },
        };
        let before = query.get("before").and_then(|b| snowflake(b));
        let after = query.get("after").and_then(|a| snowflake(a));
        let page: Vec<Value> = state
            .store
            .channel_messages(channel, before, after, limit)
            .into_iter()
            .map(rest_message)
            .collect();
        Ok(Reply::Ok(Value::Array(page)))
    })
}

async fn get_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (channel, message) = path.into_inner();
    let bucket = format!("GET /channels/{channel}/messages/{{message_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, _, _) = text_channel(state, &channel)?;
        let id = snowflake(&message).ok_or_else(|| ApiError::unknown(Unknown::Message))?;
        state
            .store
            .message(channel, id)
            .map(|m| Reply::Ok(rest_message(m)))
            .ok_or_else(|| ApiError::unknown(Unknown::Message))
    })
}

async fn create_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let bucket = format!("POST /channels/{}/messages", path.as_str());
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, _, _) = text_channel(state, &path)?;
        let body = json_body(&body)?;
        let created = create(state, channel, Author::Bot, &body, None)?;
        Ok(Reply::Ok(created.rest))
    })
}

async fn edit_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (channel, message) = path.into_inner();
    let bucket = format!("PATCH /channels/{channel}/messages/{{message_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, _, _) = text_channel(state, &channel)?;
        let id = snowflake(&message).ok_or_else(|| ApiError::unknown(Unknown::Message))?;
        let body = json_body(&body)?;
        let by_bot = state
            .store
            .message(channel, id)
            .ok_or_else(|| ApiError::unknown(Unknown::Message))?
            .author
            .is_bot();
        if !by_bot {
            return Err(ApiError::forbidden(
                50005,
                "Cannot edit a message authored by another user",
            ));
        }
        edit(state, channel, id, &body).map(Reply::Ok)
    })
}

async fn delete_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (channel, message) = path.into_inner();
    let bucket = format!("DELETE /channels/{channel}/messages/{{message_id}}");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, _, _) = text_channel(state, &channel)?;
        let id = snowflake(&message).ok_or_else(|| ApiError::unknown(Unknown::Message))?;
        delete(state, channel, id)?;
        Ok(Reply::NoContent)
    })
}

/// A stored message as REST returns it, with its reactions.
pub(super) fn rest_message(message: &Message) -> Value {
    let mut value = message.value.clone();
    if !message.reactions.is_empty() {
        let reactions: Vec<Value> = message
            .reactions
            .iter()
            .map(|r| {
                json!({
                    "emoji": r.emoji,
                    "count": r.users.len(),
                    "count_details": { "burst": 0, "normal": r.users.len() },
                    "burst_colors": [],
                    "me_burst": false,
                    "burst_me": false,
                    "me": false,
                    "burst_count": 0,
                })
            })
            .collect();
        value["reactions"] = Value::Array(reactions);
    }
    value
}

/// The gateway form of a stored message: with `guild_id` and the author's
/// `member`, as MESSAGE_CREATE and MESSAGE_UPDATE carry it.
fn gateway_message(state: &State, message: &Message) -> Value {
    let mut value = rest_message(message);
    let world = &state.world;
    let author_id = match message.author {
        Author::Bot => world.bot_id,
        Author::Member(m) => world.user_id(message.guild, m),
    };
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "guild_id".to_owned(),
            json!(world.guild_id(message.guild).to_string()),
        );
        if let Some(mut member) = state.store.member(world, message.guild, author_id) {
            if let Some(member) = member.as_object_mut() {
                member.remove("user");
            }
            map.insert("member".to_owned(), member);
        }
    }
    value
}

/// The fields of a message body a bot may set, checked as Discord checks
/// them: content of at most 2000 characters, and not an empty message.
/// `may_be_empty`: an edit, or a deferred response's "thinking" message.
fn content_fields(
    body: &Map<String, Value>,
    may_be_empty: bool,
) -> Result<Map<String, Value>, ApiError> {
    let mut fields = Map::new();
    match body.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(content)) => {
            if content.chars().count() > limits::MAX_MESSAGE_CONTENT {
                return Err(ApiError::invalid_form(
                    "content",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 2000 or fewer in length.",
                ));
            }
            fields.insert("content".to_owned(), json!(content));
        }
        Some(_) => {
            return Err(ApiError::invalid_form(
                "content",
                "BASE_TYPE_STRING",
                "Could not interpret the value as string.",
            ));
        }
    }
    for key in ["embeds", "components"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                fields.insert(key.to_owned(), Value::Array(items.clone()));
            }
            Some(_) => {
                return Err(ApiError::invalid_form(
                    key,
                    "BASE_TYPE_ARRAY",
                    "Could not interpret the value as a list.",
                ));
            }
        }
    }
    if let Some(flags) = body.get("flags").and_then(Value::as_u64) {
        fields.insert("flags".to_owned(), json!(flags));
    }
    let has = |key: &str| match fields.get(key) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    let poll = body.get("poll").is_some_and(|p| !p.is_null());
    let stickers = body
        .get("sticker_ids")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if !may_be_empty
        && !has("content")
        && !has("embeds")
        && !has("components")
        && !poll
        && !stickers
    {
        return Err(ApiError::bad_request(50006, "Cannot send an empty message"));
    }
    Ok(fields)
}

/// A message just created.
pub(crate) struct Created {
    /// As REST returns it.
    pub(crate) rest: Value,
    /// As MESSAGE_CREATE carries it.
    pub(crate) gateway: Value,
    /// Where MESSAGE_CREATE went.
    pub(crate) deliveries: Vec<Delivery>,
}

/// Creates a message in a text channel, stores it and dispatches
/// MESSAGE_CREATE. `interaction` (its `interaction_metadata`) makes it an
/// interaction response: its type, `webhook_id` and `application_id`.
/// Returns it as REST does.
pub(crate) fn create(
    state: &mut State,
    channel: u64,
    author: Author,
    body: &Map<String, Value>,
    interaction: Option<Value>,
) -> Result<Created, ApiError> {
    let found = state
        .world
        .channel(channel)
        .ok_or_else(|| ApiError::unknown(Unknown::Channel))?;
    if !matches!(found.kind, ChannelKind::Text(_)) {
        return Err(ApiError::bad_request(
            50008,
            "Cannot send messages in a non-text channel",
        ));
    }
    // A deferred response's "thinking" message is empty by design.
    let loading = interaction.is_some()
        && body
            .get("flags")
            .and_then(Value::as_u64)
            .is_some_and(|f| f & super::interactions::LOADING != 0);
    let fields = content_fields(body, loading)?;
    let content = fields
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    state.message_counter += 1;
    let id = payloads::message_id(state.message_counter);
    let world = std::sync::Arc::clone(&state.world);
    let mut value = payloads::message(&world, found.guild, found.kind, author, content, id, false);
    if let Some(map) = value.as_object_mut() {
        for (key, field) in fields {
            map.insert(key, field);
        }
        if let Some(nonce) = body.get("nonce").filter(|n| n.is_string() || n.is_u64()) {
            map.insert("nonce".to_owned(), nonce.clone());
        } else {
            map.remove("nonce");
        }
        if let Some(reference) = body.get("message_reference").and_then(Value::as_object)
            && let Some(referenced) = reference
                .get("message_id")
                .and_then(Value::as_str)
                .and_then(snowflake)
                .and_then(|m| state.store.message(channel, m))
        {
            map.insert("type".to_owned(), json!(19));
            map.insert(
                "message_reference".to_owned(),
                json!({
                    "type": 0,
                    "message_id": referenced.value["id"],
                    "channel_id": channel.to_string(),
                    "guild_id": world.guild_id(found.guild).to_string(),
                }),
            );
            map.insert("referenced_message".to_owned(), rest_message(referenced));
        }
        if let Some(interaction) = interaction {
            map.insert("type".to_owned(), json!(20));
            map.insert("webhook_id".to_owned(), json!(world.bot_id.to_string()));
            map.insert("application_id".to_owned(), json!(world.bot_id.to_string()));
            map.insert("interaction_metadata".to_owned(), interaction);
        }
    }
    let message = Message {
        guild: found.guild,
        channel,
        author,
        value: value.clone(),
        reactions: Vec::new(),
    };
    let ephemeral = value["flags"].as_u64().is_some_and(|f| f & 64 != 0);
    let gateway = gateway_message(state, &message);
    // Ephemeral messages are the invoking user's alone: no event.
    let deliveries = if ephemeral {
        Vec::new()
    } else {
        dispatch(state, "MESSAGE_CREATE", &gateway)
    };
    state.store.insert_message(id, message);
    Ok(Created {
        rest: value,
        gateway,
        deliveries,
    })
}

/// Edits a stored message's content, embeds or components, and dispatches
/// MESSAGE_UPDATE. Returns it as REST does.
pub(crate) fn edit(
    state: &mut State,
    channel: u64,
    id: u64,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let fields = content_fields(body, true)?;
    let message = state
        .store
        .message_mut(channel, id)
        .ok_or_else(|| ApiError::unknown(Unknown::Message))?;
    if let Some(map) = message.value.as_object_mut() {
        for (key, field) in fields {
            map.insert(key, field);
        }
        map.insert("edited_timestamp".to_owned(), json!(iso8601(unix_ms_now())));
    }
    let message = message.clone();
    let event = gateway_message(state, &message);
    dispatch(state, "MESSAGE_UPDATE", &event);
    Ok(rest_message(&message))
}

/// Deletes a stored message and dispatches MESSAGE_DELETE.
pub(crate) fn delete(state: &mut State, channel: u64, id: u64) -> Result<(), ApiError> {
    let message = state
        .store
        .remove_message(channel, id)
        .ok_or_else(|| ApiError::unknown(Unknown::Message))?;
    let event = json!({
        "id": id.to_string(),
        "channel_id": channel.to_string(),
        "guild_id": state.world.guild_id(message.guild).to_string(),
    });
    dispatch(state, "MESSAGE_DELETE", &event);
    Ok(())
}
