//! The REST surface bots use at login and every day, in Discord's shapes:
//! what each request answers, what it changes in the world, and the gateway
//! event that follows it to the session owning the guild.

mod common;

use common::{ALL_USEFUL, TIMEOUT, TOKEN, config, connect_json, start};
use discore_mock::{MockServer, RestRateLimit};
use serde::de::DeserializeSeed;
use serde_json::{Value, json};
use std::time::Duration;
use twilight_model::gateway::event::DispatchEventWithTypeDeserializer;

struct Answer {
    status: u16,
    headers: awc::http::header::HeaderMap,
    body: Value,
}

async fn call(
    mock: &MockServer,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: bool,
) -> Answer {
    let client = awc::Client::builder().timeout(TIMEOUT).finish();
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = client.request(method, format!("{}{path}", mock.rest_url()));
    if auth {
        request = request.insert_header(("Authorization", format!("Bot {TOKEN}")));
    }
    let mut response = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    }
    .expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.body().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn bot(mock: &MockServer, method: &str, path: &str, body: Option<Value>) -> Answer {
    call(mock, method, path, body, true).await
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks an event against twilight-model, as a Rust bot would read it.
fn parses(payload: &Value) {
    let name = payload["t"].as_str().expect("a dispatch");
    let data = payload["d"].to_string();
    let mut deserializer = serde_json::Deserializer::from_str(&data);
    if let Err(e) = DispatchEventWithTypeDeserializer::new(name).deserialize(&mut deserializer) {
        panic!("twilight-model rejects {name}: {e}\n{data}");
    }
}

/// The current user and application, on both paths libraries use (discord.py
/// logs in with `/oauth2/applications/@me`), the bot's guilds and users.
#[actix_rt::test]
async fn login_routes() {
    let mock = start(config().guilds(2)).await;
    for path in ["/applications/@me", "/oauth2/applications/@me"] {
        let app = bot(&mock, "GET", path, None).await;
        assert_eq!(app.status, 200, "{path}");
        assert_eq!(app.body["id"], mock.bot_id().to_string());
        for field in [
            "name",
            "description",
            "verify_key",
            "bot_public",
            "bot_require_code_grant",
            "owner",
            "flags",
        ] {
            assert!(app.body.get(field).is_some(), "{path} has no {field}");
        }
        // GATEWAY_PRESENCE, GATEWAY_GUILD_MEMBERS, GATEWAY_MESSAGE_CONTENT.
        assert_eq!(app.body["flags"], (1 << 12) | (1 << 14) | (1 << 18));
        assert!(serde_json::from_value::<twilight_model::oauth::Application>(app.body).is_ok());
    }
    let me = bot(&mock, "GET", "/users/@me", None).await;
    assert!(serde_json::from_value::<twilight_model::user::CurrentUser>(me.body).is_ok());
    let guilds = bot(&mock, "GET", "/users/@me/guilds", None).await;
    assert_eq!(guilds.body.as_array().map(Vec::len), Some(2));
    let member = mock.member_ids(mock.guild_ids()[0])[1];
    let user = bot(&mock, "GET", &format!("/users/{member}"), None).await;
    assert_eq!(user.body["id"], member.to_string());
    let unknown = bot(&mock, "GET", "/users/1", None).await;
    assert_eq!(
        (unknown.status, unknown.body["code"].clone()),
        (404, json!(10013))
    );
    mock.stop().await;
}

/// Every answer is `application/json` (or 204 without a body) and carries
/// the bucket's rate-limit headers; errors take Discord's body: 401, 403,
/// 404 (route and object), 429.
#[actix_rt::test]
async fn headers_and_error_bodies() {
    let mock = start(config().guilds(1).rest_rate_limit(Some(RestRateLimit {
        limit: 4,
        window: Duration::from_secs(30),
    })))
    .await;
    let channel = mock.text_channel_ids(mock.guild_ids()[0])[0];
    let path = format!("/channels/{channel}/messages");

    let created = bot(&mock, "POST", &path, Some(json!({"content": "hi"}))).await;
    assert_eq!(created.status, 200);
    assert_eq!(header(&created, "content-type"), Some("application/json"));
    assert_eq!(header(&created, "x-ratelimit-limit"), Some("4"));
    assert_eq!(header(&created, "x-ratelimit-remaining"), Some("3"));
    for name in [
        "x-ratelimit-reset",
        "x-ratelimit-reset-after",
        "x-ratelimit-bucket",
    ] {
        assert!(header(&created, name).is_some(), "{name}");
    }

    let empty = bot(&mock, "POST", &path, Some(json!({"content": ""}))).await;
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.body,
        json!({"message": "Cannot send an empty message", "code": 50006})
    );
    assert_eq!(header(&empty, "x-ratelimit-remaining"), Some("2"));
    let long = bot(
        &mock,
        "POST",
        &path,
        Some(json!({"content": "x".repeat(2001)})),
    )
    .await;
    assert_eq!(
        (long.status, long.body["code"].clone()),
        (400, json!(50035))
    );
    assert!(long.body["errors"]["content"]["_errors"][0]["code"].is_string());

    // Another route, another bucket; errors that count carry the headers.
    let unknown = bot(&mock, "GET", &format!("{path}/1"), None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.body,
        json!({"message": "Unknown Message", "code": 10008})
    );
    assert_eq!(header(&unknown, "x-ratelimit-remaining"), Some("3"));
    // The fourth request of the window, then the fifth: 429.
    let fourth = bot(&mock, "POST", &path, Some(json!({"content": "again"}))).await;
    assert_eq!(header(&fourth, "x-ratelimit-remaining"), Some("0"));
    let limited = bot(&mock, "POST", &path, Some(json!({"content": "hi"}))).await;
    assert_eq!(limited.status, 429);
    assert_eq!(header(&limited, "content-type"), Some("application/json"));
    assert_eq!(limited.body["message"], "You are being rate limited.");
    assert_eq!(limited.body["global"], false);
    assert!(
        limited.body["retry_after"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
    );
    assert_eq!(header(&limited, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&limited, "x-ratelimit-scope"), Some("user"));
    assert!(header(&limited, "retry-after").is_some());

    let unauthorized = call(&mock, "GET", "/users/@me", None, false).await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized.body,
        json!({"message": "401: Unauthorized", "code": 0})
    );
    let no_route = bot(&mock, "GET", "/no/such/route", None).await;
    assert_eq!(no_route.status, 404);
    assert_eq!(header(&no_route, "content-type"), Some("application/json"));
    assert_eq!(
        no_route.body,
        json!({"message": "404: Not Found", "code": 0})
    );

    // A message by a member is not the bot's to edit: 403.
    let (message, _) = mock.post_message(channel, "a member's").expect("posted");
    let path = format!(
        "/channels/{channel}/messages/{}",
        message["id"].as_str().unwrap_or_default()
    );
    let forbidden = bot(&mock, "PATCH", &path, Some(json!({"content": "mine now"}))).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.body,
        json!({"message": "Cannot edit a message authored by another user", "code": 50005})
    );
    // A member list needs the GUILD_MEMBERS intent granted.
    let mock = start(config().granted_intents(discore_mock::Intents::empty())).await;
    let guild = mock.guild_ids()[0];
    let denied = bot(
        &mock,
        "GET",
        &format!("/guilds/{guild}/members?limit=10"),
        None,
    )
    .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body,
        json!({"message": "Missing Access", "code": 50001})
    );
    mock.stop().await;
}

/// Create, get, edit, react, unreact, delete: each answers in Discord's
/// shape, changes what GET returns and is followed by its event, in order.
#[actix_rt::test]
async fn a_message_through_its_life() {
    let mock = start(config().guilds(1)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(ALL_USEFUL, None).await;
    client.until_event("GUILD_CREATE").await;
    let channel = mock.text_channel_ids(mock.guild_ids()[0])[0];
    let messages = format!("/channels/{channel}/messages");

    let created = bot(
        &mock,
        "POST",
        &messages,
        Some(json!({"content": "first", "nonce": "n1"})),
    )
    .await;
    assert_eq!(created.status, 200);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["author"]["id"], mock.bot_id().to_string());
    assert!(
        created.body.get("guild_id").is_none(),
        "REST's message has no guild_id"
    );
    let event = client.until_event("MESSAGE_CREATE").await;
    parses(&event);
    assert_eq!(event["d"]["id"], id);
    assert_eq!(event["d"]["guild_id"], mock.guild_ids()[0].to_string());
    assert!(event["d"]["member"].is_object());

    let message = format!("{messages}/{id}");
    let edited = bot(&mock, "PATCH", &message, Some(json!({"content": "edited"}))).await;
    assert_eq!(edited.body["content"], "edited");
    assert!(edited.body["edited_timestamp"].is_string());
    let event = client.until_event("MESSAGE_UPDATE").await;
    parses(&event);
    assert_eq!(event["d"]["content"], "edited");
    assert_eq!(
        bot(&mock, "GET", &message, None).await.body["content"],
        "edited"
    );

    let reaction = format!("{message}/reactions/%F0%9F%91%8D/@me");
    assert_eq!(bot(&mock, "PUT", &reaction, None).await.status, 204);
    let event = client.until_event("MESSAGE_REACTION_ADD").await;
    parses(&event);
    assert_eq!(event["d"]["emoji"]["name"], "👍");
    assert_eq!(event["d"]["user_id"], mock.bot_id().to_string());
    let got = bot(&mock, "GET", &message, None).await;
    assert_eq!(got.body["reactions"][0]["count"], 1);
    let users = bot(
        &mock,
        "GET",
        &format!("{message}/reactions/%F0%9F%91%8D"),
        None,
    )
    .await;
    assert_eq!(users.body[0]["id"], mock.bot_id().to_string());
    assert_eq!(bot(&mock, "DELETE", &reaction, None).await.status, 204);
    parses(&client.until_event("MESSAGE_REACTION_REMOVE").await);
    let custom = format!("{message}/reactions/blob:123456789012345678/@me");
    assert_eq!(bot(&mock, "PUT", &custom, None).await.status, 204);
    let event = client.until_event("MESSAGE_REACTION_ADD").await;
    assert_eq!(
        event["d"]["emoji"],
        json!({"id": "123456789012345678", "name": "blob"})
    );
    assert_eq!(
        bot(&mock, "DELETE", &format!("{message}/reactions"), None)
            .await
            .status,
        204
    );
    parses(&client.until_event("MESSAGE_REACTION_REMOVE_ALL").await);

    let listed = bot(&mock, "GET", &format!("{messages}?limit=10"), None).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(bot(&mock, "DELETE", &message, None).await.status, 204);
    let event = client.until_event("MESSAGE_DELETE").await;
    parses(&event);
    assert_eq!(event["d"]["id"], id);
    assert_eq!(bot(&mock, "GET", &message, None).await.status, 404);
    assert!(mock.observed().violations.is_empty());
    mock.stop().await;
}

/// Roles created, given, taken and deleted; nicknames; each followed by its
/// event, and a new session's GUILD_CREATE shows the world as changed.
#[actix_rt::test]
async fn members_and_roles() {
    let mock = start(config().guilds(1)).await;
    let guild = mock.guild_ids()[0];
    let member = mock.member_ids(guild)[1];
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(ALL_USEFUL, None).await;
    client.until_event("GUILD_CREATE").await;

    let role = bot(
        &mock,
        "POST",
        &format!("/guilds/{guild}/roles"),
        Some(json!({"name": "Testers", "color": 3447003, "hoist": true})),
    )
    .await;
    assert_eq!(role.status, 200);
    let role_id = role.body["id"].as_str().expect("id").to_owned();
    assert_eq!(role.body["name"], "Testers");
    let event = client.until_event("GUILD_ROLE_CREATE").await;
    parses(&event);
    assert_eq!(event["d"]["role"]["id"], role_id);

    let give = format!("/guilds/{guild}/members/{member}/roles/{role_id}");
    assert_eq!(bot(&mock, "PUT", &give, None).await.status, 204);
    let event = client.until_event("GUILD_MEMBER_UPDATE").await;
    parses(&event);
    assert!(
        event["d"]["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&json!(role_id)))
    );
    let got = bot(
        &mock,
        "GET",
        &format!("/guilds/{guild}/members/{member}"),
        None,
    )
    .await;
    assert!(
        got.body["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&json!(role_id)))
    );

    let nick = bot(
        &mock,
        "PATCH",
        &format!("/guilds/{guild}/members/{member}"),
        Some(json!({"nick": "renamed"})),
    )
    .await;
    assert_eq!(nick.body["nick"], "renamed");
    assert_eq!(
        client.until_event("GUILD_MEMBER_UPDATE").await["d"]["nick"],
        "renamed"
    );
    let own = bot(
        &mock,
        "PATCH",
        &format!("/guilds/{guild}/members/@me"),
        Some(json!({"nick": "mock bot"})),
    )
    .await;
    assert_eq!(own.body["nick"], "mock bot");
    client.until_event("GUILD_MEMBER_UPDATE").await;

    let renamed = bot(
        &mock,
        "PATCH",
        &format!("/guilds/{guild}/roles/{role_id}"),
        Some(json!({"name": "QA"})),
    )
    .await;
    assert_eq!(renamed.body["name"], "QA");
    parses(&client.until_event("GUILD_ROLE_UPDATE").await);
    let unknown = bot(
        &mock,
        "PUT",
        &format!("/guilds/{guild}/members/{member}/roles/1"),
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.body["code"].clone()),
        (404, json!(10011))
    );
    let everyone = bot(
        &mock,
        "DELETE",
        &format!("/guilds/{guild}/roles/{guild}"),
        None,
    )
    .await;
    assert_eq!(everyone.status, 403);

    // A new session sees the role and the nickname.
    let mut fresh = connect_json(&mock.gateway_url()).await;
    fresh.ready(ALL_USEFUL, None).await;
    let create = fresh.until_event("GUILD_CREATE").await;
    assert!(
        create["d"]["roles"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["id"] == role_id))
    );
    let entry = create["d"]["members"]
        .as_array()
        .and_then(|m| {
            m.iter()
                .find(|m| m["user"]["id"] == member.to_string().as_str())
        })
        .cloned()
        .expect("the member is listed");
    assert_eq!(entry["nick"], "renamed");

    assert_eq!(
        bot(
            &mock,
            "DELETE",
            &format!("/guilds/{guild}/roles/{role_id}"),
            None
        )
        .await
        .status,
        204
    );
    let event = client.until_event("GUILD_ROLE_DELETE").await;
    parses(&event);
    assert_eq!(event["d"]["role_id"], role_id);
    let got = bot(
        &mock,
        "GET",
        &format!("/guilds/{guild}/members/{member}"),
        None,
    )
    .await;
    assert!(
        got.body["roles"]
            .as_array()
            .is_some_and(|r| !r.contains(&json!(role_id)))
    );
    let roles = bot(&mock, "GET", &format!("/guilds/{guild}/roles"), None).await;
    assert_eq!(roles.body.as_array().map(Vec::len), Some(4));
    let members = bot(
        &mock,
        "GET",
        &format!("/guilds/{guild}/members?limit=1000"),
        None,
    )
    .await;
    assert_eq!(
        members.body.as_array().map(Vec::len),
        Some(9),
        "8 members and the bot"
    );
    mock.stop().await;
}

/// Global and guild commands: the bulk overwrite bots do at start-up keeps
/// the ids of commands that stay; create, edit, delete; invalid names are
/// refused in Discord's shape.
#[actix_rt::test]
async fn commands_overwritten_in_bulk() {
    let mock = start(config().guilds(1)).await;
    let app = mock.bot_id();
    let guild = mock.guild_ids()[0];
    for base in [
        format!("/applications/{app}/commands"),
        format!("/applications/{app}/guilds/{guild}/commands"),
    ] {
        let set = json!([
            {"name": "ping", "description": "Replies with pong"},
            {"name": "echo", "description": "Says it back", "options": [{"type": 3, "name": "text", "description": "what", "required": true}]},
            {"name": "Inspect", "type": 2},
        ]);
        let put = bot(&mock, "PUT", &base, Some(set.clone())).await;
        assert_eq!(put.status, 200, "{}", put.body);
        let first: Vec<Value> = put.body.as_array().cloned().expect("a list");
        assert_eq!(first.len(), 3);
        for command in &first {
            assert!(
                serde_json::from_value::<twilight_model::application::command::Command>(
                    command.clone()
                )
                .is_ok()
            );
        }
        let again = bot(&mock, "PUT", &base, Some(set)).await;
        assert_eq!(
            again
                .body
                .as_array()
                .map(|c| c.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()),
            Some(first.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()),
            "ids stay across overwrites"
        );
        let created = bot(
            &mock,
            "POST",
            &base,
            Some(json!({"name": "later", "description": "added"})),
        )
        .await;
        assert_eq!(created.status, 201);
        let id = created.body["id"].as_str().expect("id").to_owned();
        let same = bot(
            &mock,
            "POST",
            &base,
            Some(json!({"name": "later", "description": "changed"})),
        )
        .await;
        assert_eq!((same.status, same.body["id"].clone()), (200, json!(id)));
        let edited = bot(
            &mock,
            "PATCH",
            &format!("{base}/{id}"),
            Some(json!({"description": "edited"})),
        )
        .await;
        assert_eq!(edited.body["description"], "edited");
        assert_eq!(
            bot(&mock, "GET", &base, None)
                .await
                .body
                .as_array()
                .map(Vec::len),
            Some(4)
        );
        assert_eq!(
            bot(&mock, "DELETE", &format!("{base}/{id}"), None)
                .await
                .status,
            204
        );
        assert_eq!(
            bot(&mock, "GET", &format!("{base}/{id}"), None)
                .await
                .status,
            404
        );
        let bad = bot(
            &mock,
            "POST",
            &base,
            Some(json!({"name": "Has Spaces", "description": "x"})),
        )
        .await;
        assert_eq!((bad.status, bad.body["code"].clone()), (400, json!(50035)));
        assert!(bad.body["errors"]["name"]["_errors"].is_array());
    }
    let other = bot(&mock, "GET", "/applications/1/commands", None).await;
    assert_eq!(other.status, 404);
    mock.stop().await;
}

/// An interaction answered with a message, edited through `@original`,
/// followed up; a deferred one whose "thinking" message becomes the answer.
#[actix_rt::test]
async fn interaction_responses_and_followups() {
    let mock = start(config().guilds(1)).await;
    let mut client = connect_json(&mock.gateway_url()).await;
    client.ready(ALL_USEFUL, None).await;
    client.until_event("GUILD_CREATE").await;
    let channel = mock.text_channel_ids(mock.guild_ids()[0])[0];
    let app = mock.bot_id();

    let created = mock
        .create_interaction(channel, "ping", &json!([]))
        .expect("interaction");
    client.until_event("INTERACTION_CREATE").await;
    let callback = format!(
        "/interactions/{}/{}/callback?with_response=true",
        created.id, created.token
    );
    let answer = call(
        &mock,
        "POST",
        &callback,
        Some(json!({"type": 4, "data": {"content": "pong"}})),
        false,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["resource"]["message"]["content"], "pong");
    let event = client.until_event("MESSAGE_CREATE").await;
    parses(&event);
    assert_eq!(event["d"]["content"], "pong");
    assert_eq!(
        event["d"]["interaction_metadata"]["id"],
        created.id.to_string()
    );
    assert_eq!(event["d"]["webhook_id"], app.to_string());

    let webhook = format!("/webhooks/{app}/{}", created.token);
    let original = call(
        &mock,
        "GET",
        &format!("{webhook}/messages/@original"),
        None,
        false,
    )
    .await;
    assert_eq!(original.body["content"], "pong");
    let edited = call(
        &mock,
        "PATCH",
        &format!("{webhook}/messages/@original"),
        Some(json!({"content": "pong!"})),
        false,
    )
    .await;
    assert_eq!(edited.body["content"], "pong!");
    assert_eq!(
        client.until_event("MESSAGE_UPDATE").await["d"]["content"],
        "pong!"
    );
    let followup = call(
        &mock,
        "POST",
        &webhook,
        Some(json!({"content": "and more"})),
        false,
    )
    .await;
    assert_eq!(followup.status, 200);
    assert_eq!(
        client.until_event("MESSAGE_CREATE").await["d"]["content"],
        "and more"
    );
    let id = followup.body["id"].as_str().expect("id");
    assert_eq!(
        call(
            &mock,
            "DELETE",
            &format!("{webhook}/messages/{id}"),
            None,
            false
        )
        .await
        .status,
        204
    );
    client.until_event("MESSAGE_DELETE").await;
    let wrong = call(
        &mock,
        "GET",
        &format!("/webhooks/{app}/not-a-token/messages/@original"),
        None,
        false,
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.body["code"].clone()),
        (401, json!(50027))
    );

    let deferred = mock
        .create_interaction(channel, "slow", &json!([]))
        .expect("interaction");
    client.until_event("INTERACTION_CREATE").await;
    let callback = format!("/interactions/{}/{}/callback", deferred.id, deferred.token);
    assert_eq!(
        call(&mock, "POST", &callback, Some(json!({"type": 5})), false)
            .await
            .status,
        204
    );
    let thinking = client.until_event("MESSAGE_CREATE").await;
    assert_eq!(thinking["d"]["flags"], 128, "LOADING");
    let webhook = format!("/webhooks/{app}/{}", deferred.token);
    let done = call(
        &mock,
        "PATCH",
        &format!("{webhook}/messages/@original"),
        Some(json!({"content": "done"})),
        false,
    )
    .await;
    assert_eq!(done.body["content"], "done");
    let update = client.until_event("MESSAGE_UPDATE").await;
    assert_eq!(
        (update["d"]["content"].clone(), update["d"]["flags"].clone()),
        (json!("done"), json!(0))
    );
    assert_eq!(mock.observed().interaction_callbacks.len(), 2);
    mock.stop().await;
}
