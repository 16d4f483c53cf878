//! Reactions on stored messages
//! (<https://discord.com/developers/docs/resources/message#create-reaction>):
//! the bot's own, someone else's, all of one emoji, all of a message; each
//! change dispatches its MESSAGE_REACTION_* event.

use super::{ApiError, Auth, Reply, SharedData, Unknown, dispatch, respond, snowflake};
use crate::{payloads::Author, state::State, store::Reaction};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let base = "/channels/{channel_id}/messages/{message_id}/reactions";
    cfg.route(base, web::delete().to(delete_all))
        .route(&format!("{base}/{{emoji}}"), web::get().to(list_users))
        .route(&format!("{base}/{{emoji}}"), web::delete().to(delete_emoji))
        .route(&format!("{base}/{{emoji}}/@me"), web::put().to(add_own))
        .route(
            &format!("{base}/{{emoji}}/@me"),
            web::delete().to(delete_own),
        )
        .route(
            &format!("{base}/{{emoji}}/{{user_id}}"),
            web::delete().to(delete_user),
        );
}

/// An emoji in a path: a unicode emoji (percent-decoded by the router) or
/// a custom one as `name:id`. Returns the event form `{"id", "name"}`.
fn emoji(text: &str) -> Result<Value, ApiError> {
    if text.is_empty() {
        return Err(ApiError::unknown(Unknown::Emoji));
    }
    match text.split_once(':') {
        Some((name, id)) => match snowflake(id) {
            Some(id) => Ok(json!({ "id": id.to_string(), "name": name })),
            None => Err(ApiError::unknown(Unknown::Emoji)),
        },
        None => Ok(json!({ "id": null, "name": text })),
    }
}

/// The message and its guild, or Unknown Channel/Message.
fn target(state: &State, channel: &str, message: &str) -> Result<(u64, u64, usize), ApiError> {
    let channel = snowflake(channel)
        .filter(|c| state.world.channel(*c).is_some())
        .ok_or_else(|| ApiError::unknown(Unknown::Channel))?;
    let id = snowflake(message).ok_or_else(|| ApiError::unknown(Unknown::Message))?;
    let stored = state
        .store
        .message(channel, id)
        .ok_or_else(|| ApiError::unknown(Unknown::Message))?;
    Ok((channel, id, stored.guild))
}

fn event_base(state: &State, channel: u64, message: u64, guild: usize) -> Value {
    json!({
        "channel_id": channel.to_string(),
        "message_id": message.to_string(),
        "guild_id": state.world.guild_id(guild).to_string(),
    })
}

/// Adds `user`'s reaction; MESSAGE_REACTION_ADD when it is new.
fn add(state: &mut State, channel: u64, id: u64, guild: usize, emoji: Value, user: u64) {
    let world = std::sync::Arc::clone(&state.world);
    let Some(message) = state.store.message_mut(channel, id) else {
        return;
    };
    let author = match message.author {
        Author::Bot => world.bot_id,
        Author::Member(m) => world.user_id(guild, m),
    };
    let reaction = match message.reactions.iter_mut().find(|r| r.emoji == emoji) {
        Some(reaction) => reaction,
        None => {
            message.reactions.push(Reaction {
                emoji: emoji.clone(),
                users: Vec::new(),
            });
            let last = message.reactions.len() - 1;
            &mut message.reactions[last]
        }
    };
    if reaction.users.contains(&user) {
        return;
    }
    reaction.users.push(user);
    let mut event = event_base(state, channel, id, guild);
    event["user_id"] = json!(user.to_string());
    event["type"] = json!(0);
    event["message_author_id"] = json!(author.to_string());
    event["emoji"] = emoji;
    event["burst"] = json!(false);
    event["burst_colors"] = json!([]);
    // The reacting member, with its user, as Discord sends it.
    if let Some(member) = state.store.member(&world, guild, user) {
        event["member"] = member;
    }
    dispatch(state, "MESSAGE_REACTION_ADD", &event);
}

/// Removes `user`'s reaction; MESSAGE_REACTION_REMOVE when there was one.
fn remove(
    state: &mut State,
    channel: u64,
    id: u64,
    guild: usize,
    emoji: &Value,
    user: u64,
) -> Result<(), ApiError> {
    let message = state
        .store
        .message_mut(channel, id)
        .ok_or_else(|| ApiError::unknown(Unknown::Message))?;
    let Some(reaction) = message.reactions.iter_mut().find(|r| &r.emoji == emoji) else {
        // Removing a reaction that is not there succeeds, as on Discord.
        return Ok(());
    };
    let before = reaction.users.len();
    reaction.users.retain(|u| *u != user);
    if reaction.users.len() == before {
        return Ok(());
    }
    message.reactions.retain(|r| !r.users.is_empty());
    let mut event = event_base(state, channel, id, guild);
    event["user_id"] = json!(user.to_string());
    event["type"] = json!(0);
    event["emoji"] = emoji.clone();
    event["burst"] = json!(false);
    dispatch(state, "MESSAGE_REACTION_REMOVE", &event);
    Ok(())
}

async fn add_own(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (channel, message, emoji_text) = path.into_inner();
    let bucket = format!("PUT /channels/{channel}/messages/{{message_id}}/reactions");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, id, guild) = target(state, &channel, &message)?;
        let emoji = emoji(&emoji_text)?;
        let bot = state.world.bot_id;
        add(state, channel, id, guild, emoji, bot);
        Ok(Reply::NoContent)
    })
}

async fn delete_own(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (channel, message, emoji_text) = path.into_inner();
    let bucket = format!("DELETE /channels/{channel}/messages/{{message_id}}/reactions");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, id, guild) = target(state, &channel, &message)?;
        let emoji = emoji(&emoji_text)?;
        let bot = state.world.bot_id;
        remove(state, channel, id, guild, &emoji, bot)?;
        Ok(Reply::NoContent)
    })
}

async fn delete_user(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String, String)>,
) -> HttpResponse {
    let (channel, message, emoji_text, user) = path.into_inner();
    let bucket = format!("DELETE /channels/{channel}/messages/{{message_id}}/reactions");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, id, guild) = target(state, &channel, &message)?;
        let emoji = emoji(&emoji_text)?;
        let user = snowflake(&user).ok_or_else(|| ApiError::unknown(Unknown::User))?;
        remove(state, channel, id, guild, &emoji, user)?;
        Ok(Reply::NoContent)
    })
}

async fn list_users(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let (channel, message, emoji_text) = path.into_inner();
    let bucket = format!("GET /channels/{channel}/messages/{{message_id}}/reactions");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, id, guild) = target(state, &channel, &message)?;
        let emoji = emoji(&emoji_text)?;
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(25)
            .clamp(1, 100);
        let after = query.get("after").and_then(|a| snowflake(a)).unwrap_or(0);
        let world = &state.world;
        let users: Vec<Value> = state
            .store
            .message(channel, id)
            .and_then(|m| m.reactions.iter().find(|r| r.emoji == emoji))
            .map(|r| {
                let mut users: Vec<u64> = r.users.iter().copied().filter(|u| *u > after).collect();
                users.sort_unstable();
                users
                    .into_iter()
                    .take(limit)
                    .filter_map(|u| {
                        state
                            .store
                            .member(world, guild, u)
                            .and_then(|m| m.get("user").cloned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Reply::Ok(Value::Array(users)))
    })
}

async fn delete_emoji(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (channel, message, emoji_text) = path.into_inner();
    let bucket = format!("DELETE /channels/{channel}/messages/{{message_id}}/reactions");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, id, guild) = target(state, &channel, &message)?;
        let emoji = emoji(&emoji_text)?;
        if let Some(stored) = state.store.message_mut(channel, id) {
            stored.reactions.retain(|r| r.emoji != emoji);
        }
        let mut event = event_base(state, channel, id, guild);
        event["emoji"] = emoji;
        dispatch(state, "MESSAGE_REACTION_REMOVE_EMOJI", &event);
        Ok(Reply::NoContent)
    })
}

async fn delete_all(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (channel, message) = path.into_inner();
    let bucket = format!("DELETE /channels/{channel}/messages/{{message_id}}/reactions");
    respond(&shared, &req, &bucket, Auth::Bot, |state| {
        let (channel, id, guild) = target(state, &channel, &message)?;
        if let Some(stored) = state.store.message_mut(channel, id) {
            stored.reactions.clear();
        }
        let event = event_base(state, channel, id, guild);
        dispatch(state, "MESSAGE_REACTION_REMOVE_ALL", &event);
        Ok(Reply::NoContent)
    })
}
