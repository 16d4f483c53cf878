//! discore's one-pass event parse gives exactly twilight-model's result.
//!
//! `Dispatch::from_data` builds twilight-model's `MessageCreate`,
//! `MemberAdd` and `ThreadMemberUpdate` in one pass instead of through
//! serde's flatten buffer, and reads the envelope with its own byte scan.
//! Here every payload of a corpus of rich events (embeds, attachments,
//! `referenced_message`, components, threads, polls, message snapshots,
//! stickers, interaction metadata, and fields no model knows at every
//! level, in Discord's member order and in reverse) is parsed both ways,
//! from the same frame, and the typed events must be equal.

use discore_gateway::{Dispatch, DispatchEvent, EventType};
use discore_protocol::Envelope;
use serde::de::DeserializeSeed as _;
use serde_json::{Map, Value, json};
use twilight_model::gateway::event::{GatewayEvent, GatewayEventDeserializer};

fn user(id: u64) -> Value {
    json!({
        "id": id.to_string(), "username": format!("user{id}"), "discriminator": "0",
        "global_name": "Someone", "avatar": "a_0123456789abcdef0123456789abcdef",
        "avatar_decoration_data": {"asset": "0123456789abcdef0123456789abcdef", "sku_id": "11"}, "bot": false,
        "public_flags": 64, "banner": null, "accent_color": 255,
        "primary_guild": {"identity_guild_id": "5", "identity_enabled": true, "tag": "TAG", "badge": "fedcba9876543210fedcba9876543210"}
    })
}

fn member() -> Value {
    json!({
        "roles": ["501", "502"], "joined_at": "2021-03-04T05:06:07.891000+00:00",
        "premium_since": null, "deaf": false, "mute": false, "flags": 2,
        "nick": "nick \u{e9}", "avatar": null, "communication_disabled_until": null,
        "pending": false
    })
}

fn embed() -> Value {
    json!({
        "type": "rich", "title": "An embed", "description": "with **every** part",
        "url": "https://example.com/a", "timestamp": "2024-05-06T07:08:09.000000+00:00",
        "color": 16_711_680,
        "footer": {"text": "footer", "icon_url": "https://example.com/i.png", "proxy_icon_url": "https://p.example.com/i.png"},
        "image": {"url": "https://example.com/img.png", "proxy_url": "https://p.example.com/img.png", "height": 100, "width": 200},
        "thumbnail": {"url": "https://example.com/t.png", "height": 10, "width": 20},
        "video": {"url": "https://example.com/v.mp4", "height": 720, "width": 1280},
        "provider": {"name": "Provider", "url": "https://example.com"},
        "author": {"name": "Author", "url": "https://example.com/au", "icon_url": "https://example.com/au.png"},
        "fields": [{"name": "f1", "value": "v1", "inline": true}, {"name": "f2", "value": "v2"}]
    })
}

fn attachment(id: u64) -> Value {
    json!({
        "id": id.to_string(), "filename": "voice-message.ogg", "size": 12345,
        "url": "https://cdn.example.com/a.ogg", "proxy_url": "https://media.example.com/a.ogg",
        "content_type": "audio/ogg", "duration_secs": 3.25, "waveform": "AAAA", "flags": 4,
        "description": "alt text", "title": "Title", "ephemeral": false,
        "height": null, "width": null, "placeholder": "abc", "placeholder_version": 1
    })
}

fn components() -> Value {
    json!([
        {"type": 1, "id": 1, "components": [
            {"type": 2, "id": 2, "style": 1, "label": "Click", "custom_id": "click", "emoji": {"name": "\u{1f600}"}},
            {"type": 2, "style": 5, "label": "Link", "url": "https://example.com", "disabled": true},
            {"type": 2, "style": 6, "sku_id": "77"}
        ]},
        {"type": 1, "components": [
            {"type": 3, "custom_id": "pick", "placeholder": "Pick", "min_values": 1, "max_values": 2,
             "options": [
                {"label": "A", "value": "a", "description": "first", "default": true,
                 "emoji": {"id": "88", "name": "custom", "animated": true}},
                {"label": "B", "value": "b"}
             ]}
        ]},
        {"type": 1, "components": [
            {"type": 8, "custom_id": "chan", "channel_types": [0, 5],
             "default_values": [{"id": "20", "type": "channel"}]}
        ]}
    ])
}

fn poll() -> Value {
    json!({
        "question": {"text": "Which?"},
        "answers": [
            {"answer_id": 1, "poll_media": {"text": "One", "emoji": {"id": "9", "name": "nine", "animated": false}}},
            {"answer_id": 2, "poll_media": {"text": "Two", "emoji": {"name": "\u{2764}"}}}
        ],
        "expiry": "2025-01-01T00:00:00.000000+00:00", "allow_multiselect": true, "layout_type": 1,
        "results": {"is_finalized": false, "answer_counts": [{"id": 1, "count": 3, "me_voted": true}]}
    })
}

fn thread() -> Value {
    json!({
        "id": "600", "type": 11, "guild_id": "10", "parent_id": "20", "owner_id": "30",
        "name": "a thread", "last_message_id": "601", "message_count": 3, "member_count": 2,
        "rate_limit_per_user": 0, "flags": 0, "total_message_sent": 3,
        "thread_metadata": {"archived": false, "auto_archive_duration": 1440,
            "archive_timestamp": "2024-01-01T00:00:00.000000+00:00", "locked": false,
            "invitable": true, "create_timestamp": "2024-01-01T00:00:00.000000+00:00"},
        "applied_tags": ["700"]
    })
}

fn interaction_metadata() -> Value {
    json!({
        "id": "800", "type": 2, "user": user(31),
        "authorizing_integration_owners": {"0": "10", "1": "31"},
        "original_response_message_id": "801", "target_user": user(32),
        "triggering_interaction_metadata": {
            "id": "802", "type": 3, "user": user(31),
            "authorizing_integration_owners": {"0": "10"}, "interacted_message_id": "803"
        }
    })
}

/// A plain member message: the smallest MESSAGE_CREATE.
fn base_message(id: u64) -> Map<String, Value> {
    let value = json!({
        "id": id.to_string(), "channel_id": "20", "guild_id": "10", "author": user(30),
        "member": member(), "content": "hello \"there\" \u{e9} \\ \n <@31>",
        "timestamp": "2024-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false,
        "mentions": [{"id": "31", "username": "m", "discriminator": "0", "avatar": null,
                      "member": member(), "public_flags": 0}],
        "mention_roles": ["501"], "attachments": [], "embeds": [], "pinned": false,
        "type": 0, "flags": 0, "nonce": "1234567890", "channel_type": 0
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// Every rich part a message can carry, one at a time and all together.
fn messages() -> Vec<Value> {
    let mut referenced = base_message(900);
    referenced.remove("member");
    referenced.remove("channel_type");
    let parts: Vec<(&str, Value)> = vec![
        (
            "embeds",
            json!([embed(), {"type": "image", "url": "https://example.com/x.png"}]),
        ),
        ("attachments", json!([attachment(1000), attachment(1001)])),
        ("referenced_message", Value::Object(referenced)),
        (
            "message_reference",
            json!({"type": 0, "message_id": "900", "channel_id": "20", "guild_id": "10", "fail_if_not_exists": false}),
        ),
        ("components", components()),
        ("thread", thread()),
        ("poll", poll()),
        (
            "message_snapshots",
            json!([{"message": {
            "type": 0, "content": "forwarded", "embeds": [embed()], "attachments": [attachment(1002)],
            "timestamp": "2023-01-01T00:00:00.000000+00:00", "edited_timestamp": null, "flags": 16384,
            "mentions": [], "mention_roles": [], "sticker_items": [{"id": "1100", "name": "s", "format_type": 1}],
            "components": []}}]),
        ),
        (
            "sticker_items",
            json!([{"id": "1101", "name": "sticker", "format_type": 2}, {"id": "1102", "name": "gif", "format_type": 4}]),
        ),
        ("interaction_metadata", interaction_metadata()),
        (
            "interaction",
            json!({"id": "804", "type": 2, "name": "cmd sub", "user": user(31), "member": member()}),
        ),
        (
            "reactions",
            json!([{"count": 2, "count_details": {"burst": 1, "normal": 1}, "me": true, "me_burst": false,
            "emoji": {"id": null, "name": "\u{1f44d}"}, "burst_colors": ["#ff0000"]}]),
        ),
        (
            "mention_channels",
            json!([{"id": "21", "guild_id": "10", "type": 0, "name": "general"}]),
        ),
        ("activity", json!({"type": 1, "party_id": "spotify:1"})),
        (
            "application",
            json!({"id": "1200", "name": "app", "description": "d", "icon": null, "cover_image": null}),
        ),
        ("application_id", json!("1200")),
        ("webhook_id", json!("1300")),
        (
            "role_subscription_data",
            json!({"role_subscription_listing_id": "1400", "tier_name": "gold",
            "total_months_subscribed": 3, "is_renewal": true}),
        ),
        (
            "call",
            json!({"participants": ["30", "31"], "ended_timestamp": null}),
        ),
        ("position", json!(5)),
    ];
    let mut out = vec![Value::Object(base_message(1))];
    let mut all = base_message(2);
    for (id, (key, value)) in (3..).zip(parts) {
        let mut one = base_message(id);
        one.insert(key.to_owned(), value.clone());
        out.push(Value::Object(one));
        all.insert(key.to_owned(), value);
    }
    out.push(Value::Object(all.clone()));
    // channel_type absent, null, and of a thread.
    for channel_type in [None, Some(Value::Null), Some(json!(11))] {
        let mut variant = all.clone();
        match channel_type {
            None => {
                variant.remove("channel_type");
            }
            Some(value) => {
                variant.insert("channel_type".to_owned(), value);
            }
        }
        out.push(Value::Object(variant));
    }
    // A nonce as a number, a message from a webhook without a member.
    let mut webhook = base_message(3000);
    webhook.remove("member");
    webhook.insert("nonce".to_owned(), json!(42));
    webhook.insert("webhook_id".to_owned(), json!("1300"));
    out.push(Value::Object(webhook));
    out
}

/// Other events: the other two flattened wrappers and some that go
/// through twilight-model's own deserializer.
fn other_events() -> Vec<(&'static str, Value)> {
    let mut update = base_message(4000);
    update.insert(
        "edited_timestamp".to_owned(),
        json!("2024-01-02T00:00:00.000000+00:00"),
    );
    update.insert("embeds".to_owned(), json!([embed()]));
    let mut member_add = match member() {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    };
    member_add.insert("user".to_owned(), user(33));
    member_add.insert("guild_id".to_owned(), json!("10"));
    vec![
        ("MESSAGE_UPDATE", Value::Object(update)),
        ("GUILD_MEMBER_ADD", Value::Object(member_add)),
        (
            "THREAD_MEMBER_UPDATE",
            json!({"id": "600", "user_id": "30", "guild_id": "10",
            "join_timestamp": "2024-01-01T00:00:00.000000+00:00", "flags": 1,
            "member": {"user": user(30), "roles": [], "joined_at": "2021-03-04T05:06:07.891000+00:00",
            "deaf": false, "mute": false, "flags": 0}, "presence": null}),
        ),
        ("THREAD_CREATE", thread()),
        (
            "TYPING_START",
            json!({"channel_id": "20", "guild_id": "10", "user_id": "30",
            "timestamp": 1_700_000_000, "member": {"user": user(30), "roles": [], "joined_at": "2021-03-04T05:06:07.891000+00:00",
            "deaf": false, "mute": false, "flags": 0}}),
        ),
        (
            "MESSAGE_POLL_VOTE_ADD",
            json!({"user_id": "30", "channel_id": "20", "message_id": "1",
            "guild_id": "10", "answer_id": 1}),
        ),
        (
            "MESSAGE_REACTION_ADD",
            json!({"user_id": "30", "channel_id": "20", "message_id": "1",
            "guild_id": "10", "emoji": {"id": null, "name": "\u{1f44d}"}, "burst": false, "type": 0,
            "member": {"user": user(30), "roles": [], "joined_at": "2021-03-04T05:06:07.891000+00:00",
            "deaf": false, "mute": false, "flags": 0}}),
        ),
    ]
}

/// Adds a member no model knows to every object, at every level.
fn with_unknown_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .map(|(key, value)| (key.clone(), with_unknown_fields(value)))
                .collect();
            out.insert(
                "zz_not_in_any_model".to_owned(),
                json!({"nested": [1, 2.5, -0.0, 1e300, null, true, "\u{2603}", {"deep": {}}]}),
            );
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(with_unknown_fields).collect()),
        other => other.clone(),
    }
}

/// JSON text with every object's members in reverse order (serde_json
/// writes them sorted).
fn reversed(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .rev()
                .map(|(key, value)| format!("{}:{}", Value::String(key.clone()), reversed(value)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(reversed).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// The frames of one event: Discord's member order, `d` before the
/// others, extra envelope members, and reversed data.
fn frames(name: &str, data: &Value) -> Vec<String> {
    let text = data.to_string();
    let reversed = reversed(data);
    vec![
        format!(r#"{{"t":"{name}","s":42,"op":0,"d":{text}}}"#),
        format!(r#"{{"d":{text},"op":0,"s":42,"t":"{name}"}}"#),
        format!(r#"{{"t":"{name}","s":42,"op":0,"d":{reversed},"zz":{{"d":1}}}}"#),
    ]
}

/// twilight-model's own parse of a whole frame.
fn twilight(frame: &str) -> Result<DispatchEvent, String> {
    let deserializer = GatewayEventDeserializer::from_json(frame).ok_or("no envelope")?;
    let mut json = serde_json::Deserializer::from_str(frame);
    match deserializer
        .deserialize(&mut json)
        .map_err(|e| e.to_string())?
    {
        GatewayEvent::Dispatch(42, event) => Ok(event),
        other => Err(format!("not the dispatch: {other:?}")),
    }
}

/// discore's: the envelope scan, then the one-pass typed parse of `d`.
fn discore(frame: &str) -> Result<DispatchEvent, String> {
    let envelope = Envelope::peek(frame).map_err(|e| e.to_string())?;
    assert_eq!(envelope.sequence, Some(42));
    let name = envelope.event_name.as_deref().ok_or("no name")?;
    let kind = EventType::try_from(name).ok();
    match Dispatch::from_data(name, kind, envelope.data).map_err(|e| e.to_string())? {
        Dispatch::Known { event, .. } => Ok(event),
        Dispatch::Raw(raw) => Err(format!("raw: {:?}", raw.reason)),
    }
}

fn assert_same(name: &str, data: &Value) {
    for data in [data.clone(), with_unknown_fields(data)] {
        for frame in frames(name, &data) {
            let theirs = twilight(&frame);
            let ours = discore(&frame);
            assert!(
                theirs.is_ok(),
                "the corpus must parse with twilight-model: {theirs:?}\n{frame}"
            );
            assert_eq!(ours, theirs, "{frame}");
        }
    }
}

#[test]
fn rich_messages_parse_exactly_as_twilight_model_parses_them() {
    let messages = messages();
    assert!(messages.len() > 20);
    for message in &messages {
        assert_same("MESSAGE_CREATE", message);
    }
    // The message with every part did carry every part into the model.
    let all = messages
        .iter()
        .find(|m| m["id"] == "2")
        .expect("the message with every part");
    let frame = &frames("MESSAGE_CREATE", &with_unknown_fields(all))[0];
    let Ok(DispatchEvent::MessageCreate(message)) = discore(frame) else {
        panic!("a MESSAGE_CREATE");
    };
    assert_eq!((message.embeds.len(), message.attachments.len()), (2, 2));
    assert_eq!(
        (message.components.len(), message.sticker_items.len()),
        (3, 2)
    );
    assert_eq!(message.message_snapshots.len(), 1);
    assert!(message.referenced_message.is_some() && message.reference.is_some());
    assert!(message.thread.is_some() && message.poll.is_some());
    assert!(message.interaction_metadata.is_some() && message.role_subscription_data.is_some());
    assert_eq!(message.channel_type.map(u8::from), Some(0));
}

#[test]
fn other_events_parse_exactly_as_twilight_model_parses_them() {
    for (name, data) in other_events() {
        assert_same(name, &data);
    }
}

/// Data twilight-model refuses is refused by both, never read differently.
#[test]
fn data_twilight_model_refuses_is_refused_alike() {
    let mut wrong = base_message(5000);
    wrong.insert("channel_type".to_owned(), json!("text"));
    let mut missing = base_message(5001);
    missing.remove("author");
    for data in [
        Value::Object(wrong),
        Value::Object(missing),
        json!([]),
        json!(null),
    ] {
        for frame in frames("MESSAGE_CREATE", &data) {
            assert!(twilight(&frame).is_err(), "{frame}");
            assert!(discore(&frame).is_err(), "{frame}");
        }
    }
}
