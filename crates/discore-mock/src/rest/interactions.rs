//! Interaction responses
//! (<https://discord.com/developers/docs/interactions/receiving-and-responding>):
//! the callback, then the original response and follow-ups through the
//! interaction's webhook (`/webhooks/{application_id}/{token}/...`, which
//! the interaction token authorizes instead of the bot token).
//!
//! A response that shows a message (type 4, and the "thinking" message of
//! type 5) creates it in the channel with MESSAGE_CREATE; editing the
//! original or a follow-up dispatches MESSAGE_UPDATE, deleting one
//! MESSAGE_DELETE.

use super::{ApiError, Auth, Reply, SharedData, Unknown, channels, json_body, respond, snowflake};
use crate::{observe::InteractionCallbackRecord, payloads::Author, state::State};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    let webhook = "/webhooks/{application_id}/{token}";
    cfg.route(
        "/interactions/{interaction_id}/{token}/callback",
        web::post().to(callback),
    )
    .route(webhook, web::post().to(create_followup))
    .route(
        &format!("{webhook}/messages/{{message_id}}"),
        web::get().to(get_message),
    )
    .route(
        &format!("{webhook}/messages/{{message_id}}"),
        web::patch().to(edit_message),
    )
    .route(
        &format!("{webhook}/messages/{{message_id}}"),
        web::delete().to(delete_message),
    );
}

/// Callback types that show a message in the channel.
const CHANNEL_MESSAGE_WITH_SOURCE: u64 = 4;
const DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: u64 = 5;
/// The documented callback types.
const CALLBACK_TYPES: [u64; 9] = [1, 4, 5, 6, 7, 8, 9, 10, 12];
/// Message flag EPHEMERAL: only the invoking user sees it.
const EPHEMERAL: u64 = 1 << 6;
/// Message flag LOADING: the "thinking" message of a deferred response.
pub(super) const LOADING: u64 = 1 << 7;

async fn callback(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let (id, token) = path.into_inner();
    let bucket = format!("POST /interactions/{id}/callback");
    let at = shared.elapsed();
    let with_response = query.get("with_response").is_some_and(|v| v == "true");
    respond(&shared, &req, &bucket, Auth::Token, |state| {
        let interaction_id =
            snowflake(&id).ok_or_else(|| ApiError::unknown(Unknown::Interaction))?;
        let interaction = state
            .store
            .interaction_mut(interaction_id)
            .ok_or_else(|| ApiError::unknown(Unknown::Interaction))?;
        if interaction.token != token {
            return Err(ApiError::invalid_webhook_token());
        }
        if interaction.responded.is_some() {
            return Err(ApiError::bad_request(
                40060,
                "Interaction has already been acknowledged.",
            ));
        }
        let body = json_body(&body)?;
        let kind = body.get("type").and_then(Value::as_u64).ok_or_else(|| {
            ApiError::invalid_form("type", "BASE_TYPE_REQUIRED", "This field is required")
        })?;
        if !CALLBACK_TYPES.contains(&kind) {
            return Err(ApiError::invalid_form(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.",
            ));
        }
        interaction.responded = Some(kind);
        let (guild, channel, user, command) = (
            interaction.guild,
            interaction.channel,
            interaction.user_id,
            interaction.command.clone(),
        );
        let metadata = json!({
            "id": interaction_id.to_string(),
            "type": 2,
            "name": command,
            "user": state.world.user(guild, state.world.member_index(guild, user).unwrap_or(0)),
            "authorizing_integration_owners": { "0": state.world.guild_id(guild).to_string() },
        });
        let message = match kind {
            CHANNEL_MESSAGE_WITH_SOURCE => {
                let data = body
                    .get("data")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                Some(channels::create(state, channel, Author::Bot, &data, Some(metadata))?.rest)
            }
            DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE => {
                // The "thinking" message: empty, flagged LOADING (and
                // ephemeral when the response will be).
                let ephemeral = body
                    .get("data")
                    .and_then(|d| d.get("flags"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    & EPHEMERAL;
                let mut data = Map::new();
                data.insert("flags".to_owned(), json!(LOADING | ephemeral));
                Some(channels::create(state, channel, Author::Bot, &data, Some(metadata))?.rest)
            }
            _ => None,
        };
        let message_id = message
            .as_ref()
            .and_then(|m| m["id"].as_str())
            .and_then(snowflake);
        if let Some(interaction) = state.store.interaction_mut(interaction_id) {
            interaction.original = message_id;
        }
        crate::observe::push_bounded(
            &mut state.observed.interaction_callbacks,
            InteractionCallbackRecord {
                interaction_id,
                interaction_token: token.clone(),
                body: Value::Object(body),
                at,
            },
        );
        if !with_response {
            return Ok(Reply::NoContent);
        }
        let mut resource = json!({ "type": kind });
        if let Some(message) = message {
            resource["message"] = message;
        }
        Ok(Reply::Ok(json!({
            "interaction": {
                "id": interaction_id.to_string(),
                "type": 2,
                "activity_instance_id": null,
                "response_message_id": message_id.map(|m| m.to_string()),
                "response_message_loading": kind == DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE,
                "response_message_ephemeral": false,
            },
            "resource": resource,
        })))
    })
}

/// The interaction whose webhook this is; 404 Unknown Webhook for another
/// application, 401 for a token that is no interaction's.
fn interaction_of(
    state: &mut State,
    application: &str,
    token: &str,
) -> Result<(u64, Option<u64>, Option<u64>), ApiError> {
    if snowflake(application) != Some(state.world.bot_id) {
        return Err(ApiError::unknown(Unknown::Webhook));
    }
    let interaction = state
        .store
        .interaction_by_token(token)
        .ok_or_else(ApiError::invalid_webhook_token)?;
    Ok((
        interaction.channel,
        interaction.responded,
        interaction.original,
    ))
}

/// `@original` or a message id of this interaction's channel.
fn message_id(id: &str, original: Option<u64>) -> Result<u64, ApiError> {
    let id = if id == "@original" {
        original
    } else {
        snowflake(id)
    };
    id.ok_or_else(|| ApiError::unknown(Unknown::Message))
}

async fn create_followup(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (application, token) = path.into_inner();
    let bucket = format!("POST /webhooks/{application}/{token}");
    respond(&shared, &req, &bucket, Auth::Token, |state| {
        let (channel, responded, _) = interaction_of(state, &application, &token)?;
        if responded.is_none() {
            // The webhook exists once the interaction was answered.
            return Err(ApiError::unknown(Unknown::Webhook));
        }
        let body = json_body(&body)?;
        channels::create(state, channel, Author::Bot, &body, None)
            .map(|created| Reply::Ok(created.rest))
    })
}

async fn get_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (application, token, id) = path.into_inner();
    let bucket = format!("GET /webhooks/{application}/{token}/messages");
    respond(&shared, &req, &bucket, Auth::Token, |state| {
        let (channel, _, original) = interaction_of(state, &application, &token)?;
        let id = message_id(&id, original)?;
        state
            .store
            .message(channel, id)
            .map(|m| Reply::Ok(channels::rest_message(m)))
            .ok_or_else(|| ApiError::unknown(Unknown::Message))
    })
}

async fn edit_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (application, token, id) = path.into_inner();
    let bucket = format!("PATCH /webhooks/{application}/{token}/messages");
    respond(&shared, &req, &bucket, Auth::Token, |state| {
        let (channel, _, original) = interaction_of(state, &application, &token)?;
        let id = message_id(&id, original)?;
        let mut body = json_body(&body)?;
        // Editing the "thinking" message makes it the response.
        let loading = state
            .store
            .message(channel, id)
            .and_then(|m| m.value["flags"].as_u64())
            .is_some_and(|f| f & LOADING != 0);
        if loading && !body.contains_key("flags") {
            let flags = state
                .store
                .message(channel, id)
                .and_then(|m| m.value["flags"].as_u64())
                .unwrap_or(0)
                & !LOADING;
            body.insert("flags".to_owned(), json!(flags));
        }
        channels::edit(state, channel, id, &body).map(Reply::Ok)
    })
}

async fn delete_message(
    req: HttpRequest,
    shared: SharedData,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (application, token, id) = path.into_inner();
    let bucket = format!("DELETE /webhooks/{application}/{token}/messages");
    respond(&shared, &req, &bucket, Auth::Token, |state| {
        let (channel, _, original) = interaction_of(state, &application, &token)?;
        let id = message_id(&id, original)?;
        channels::delete(state, channel, id)?;
        Ok(Reply::NoContent)
    })
}
