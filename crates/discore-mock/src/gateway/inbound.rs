//! The payloads clients send, as the emulator reads them: its own reading of
//! Discord's documentation ("Gateway Events", "Send Events":
//! <https://discord.com/developers/docs/events/gateway-events#send-events>),
//! shared with no client.
//!
//! Strict about what Discord refuses, lenient about what it takes from real
//! libraries. A payload that is not a JSON object cannot be decoded
//! ([`Undecodable`], closed 4002). A field a rule needs that is missing or of
//! the wrong type makes the payload invalid for its opcode ([`Invalid`],
//! closed 4001). Everything else Discord is known to accept though its
//! documentation describes another shape (an unknown field, the deprecated
//! `$os` property names, serenity's `since` as a `SystemTime` object,
//! discord.py's `game` in place of `activities`) is read as Discord reads it
//! and noted as a quirk: observed, never closed.

use serde_json::{Map, Value};

/// A payload that is not a gateway envelope: closed with 4002 Decode error.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Undecodable {
    /// The bytes are not UTF-8 text.
    NotUtf8,
    /// The text is not JSON.
    NotJson,
    /// The JSON is not an object.
    NotAnObject,
}

impl Undecodable {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::NotUtf8 => "payload is not UTF-8",
            Self::NotJson => "payload is not JSON",
            Self::NotAnObject => "payload is not a JSON object",
        }
    }
}

/// A payload whose data does not fit its opcode: closed with 4001.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(super) struct Invalid(pub(super) String);

fn invalid<T>(detail: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(detail.into()))
}

/// Shapes Discord accepts that its documentation does not describe; each is
/// recorded once per payload.
#[derive(Debug, Default)]
pub(super) struct Quirks(pub(super) Vec<String>);

impl Quirks {
    fn note(&mut self, detail: impl Into<String>) {
        self.0.push(detail.into());
    }

    /// Notes every key of `map` that is not in `known`.
    fn unknown_fields(&mut self, what: &str, map: &Map<String, Value>, known: &[&str]) {
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            self.note(format!("unknown field `{key}` in {what}"));
        }
    }
}

/// The envelope of a client payload: its opcode (when it has one) and `d`.
#[derive(Debug)]
pub(super) struct Envelope {
    /// `op`, when it is a non-negative integer.
    pub(super) op: Option<u64>,
    /// `d`; `null` when absent.
    pub(super) data: Value,
}

/// Reads the envelope `{"op": …, "d": …}`. Clients send only `op` and `d`;
/// `s` and `t` (sent as `null` by some libraries) and other fields are
/// noted, not refused.
pub(super) fn envelope(raw: &[u8], quirks: &mut Quirks) -> Result<Envelope, Undecodable> {
    let text = std::str::from_utf8(raw).map_err(|_| Undecodable::NotUtf8)?;
    let value: Value = serde_json::from_str(text).map_err(|_| Undecodable::NotJson)?;
    let Value::Object(mut map) = value else {
        return Err(Undecodable::NotAnObject);
    };
    let op = map.get("op").and_then(Value::as_u64);
    let data = map.remove("d").unwrap_or(Value::Null);
    for key in map.keys() {
        match key.as_str() {
            "op" => {}
            "s" | "t" if map.get(key).is_some_and(Value::is_null) => {}
            _ => quirks.note(format!("unknown field `{key}` in the envelope")),
        }
    }
    Ok(Envelope { op, data })
}

// ----- field readers -----

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, Invalid> {
    match value {
        Value::Object(map) => Ok(map),
        _ => invalid(format!("{what} is not an object")),
    }
}

fn string<'a>(map: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, Invalid> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => invalid(format!("`{key}` of {what} is not a string")),
        None => invalid(format!("{what} has no `{key}`")),
    }
}

fn unsigned(map: &Map<String, Value>, key: &str, what: &str) -> Result<u64, Invalid> {
    match map.get(key) {
        Some(value) => value.as_u64().map_or_else(
            || invalid(format!("`{key}` of {what} is not an integer")),
            Ok,
        ),
        None => invalid(format!("{what} has no `{key}`")),
    }
}

/// A snowflake: a string of digits as Discord sends them, or (noted) a JSON
/// number.
fn snowflake(value: &Value, field: &str, quirks: &mut Quirks) -> Result<u64, Invalid> {
    match value {
        Value::String(s) => s
            .parse()
            .map_or_else(|_| invalid(format!("`{field}` is not a snowflake")), Ok),
        Value::Number(n) => match n.as_u64() {
            Some(id) => {
                quirks.note(format!("`{field}` is a number, not a string"));
                Ok(id)
            }
            None => invalid(format!("`{field}` is not a snowflake")),
        },
        _ => invalid(format!("`{field}` is not a snowflake")),
    }
}

fn required_snowflake(
    map: &Map<String, Value>,
    key: &str,
    what: &str,
    quirks: &mut Quirks,
) -> Result<u64, Invalid> {
    match map.get(key) {
        Some(value) => snowflake(value, key, quirks),
        None => invalid(format!("{what} has no `{key}`")),
    }
}

fn boolean(map: &Map<String, Value>, key: &str, what: &str) -> Result<bool, Invalid> {
    match map.get(key) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => invalid(format!("`{key}` of {what} is not a boolean")),
        None => invalid(format!("{what} has no `{key}`")),
    }
}

// ----- op 1 -----

/// Heartbeat's `d`: the last sequence number, or `null`.
pub(super) fn heartbeat(data: &Value) -> Result<Option<u64>, Invalid> {
    match data {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map_or_else(
            || invalid("heartbeat `d` is not a sequence number"),
            |s| Ok(Some(s)),
        ),
        _ => invalid("heartbeat `d` is not a sequence number or null"),
    }
}

// ----- op 2 -----

/// Identify, as read.
#[derive(Debug)]
pub(super) struct Identify {
    pub(super) token: String,
    pub(super) intents: u64,
    pub(super) large_threshold: Option<u64>,
    pub(super) shard: Option<[u64; 2]>,
}

const IDENTIFY_FIELDS: [&str; 7] = [
    "token",
    "properties",
    "compress",
    "large_threshold",
    "shard",
    "presence",
    "intents",
];

pub(super) fn identify(data: &Value, quirks: &mut Quirks) -> Result<Identify, Invalid> {
    let map = object(data, "identify")?;
    let token = string(map, "token", "identify")?.to_owned();
    let intents = unsigned(map, "intents", "identify")?;
    match map.get("properties") {
        Some(properties) => connection_properties(properties, quirks)?,
        None => return invalid("identify has no `properties`"),
    }
    match map.get("compress") {
        None | Some(Value::Bool(_) | Value::Null) => {}
        Some(_) => quirks.note("`compress` of identify is not a boolean"),
    }
    let large_threshold = match map.get("large_threshold") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .map_or_else(|| invalid("`large_threshold` is not an integer"), Ok)?,
        ),
    };
    let shard = match map.get("shard") {
        None | Some(Value::Null) => None,
        Some(Value::Array(pair)) => match pair.as_slice() {
            [id, total] => match (id.as_u64(), total.as_u64()) {
                (Some(id), Some(total)) => Some([id, total]),
                _ => return invalid("`shard` is not two integers"),
            },
            _ => return invalid("`shard` is not two integers"),
        },
        Some(_) => return invalid("`shard` is not an array"),
    };
    match map.get("presence") {
        None | Some(Value::Null) => {}
        Some(presence) => self::presence(presence, quirks)?,
    }
    quirks.unknown_fields("identify", map, &IDENTIFY_FIELDS);
    Ok(Identify {
        token,
        intents,
        large_threshold,
        shard,
    })
}

/// Identify's `properties`: `os`, `browser`, `device`, strings. The
/// deprecated `$os`, `$browser`, `$device` still map to them.
fn connection_properties(value: &Value, quirks: &mut Quirks) -> Result<(), Invalid> {
    let map = object(value, "identify `properties`")?;
    for key in ["os", "browser", "device"] {
        let deprecated = format!("${key}");
        let value = match (map.get(key), map.get(deprecated.as_str())) {
            (Some(value), _) => value,
            (None, Some(value)) => {
                quirks.note(format!("deprecated property name `{deprecated}`"));
                value
            }
            (None, None) => {
                quirks.note(format!("identify `properties` has no `{key}`"));
                continue;
            }
        };
        if !value.is_string() {
            return invalid(format!("`properties.{key}` is not a string"));
        }
    }
    let known = ["os", "browser", "device", "$os", "$browser", "$device"];
    quirks.unknown_fields("identify `properties`", map, &known);
    Ok(())
}

// ----- op 3, and Identify's `presence` -----

const STATUSES: [&str; 5] = ["online", "dnd", "idle", "invisible", "offline"];
const PRESENCE_FIELDS: [&str; 4] = ["since", "activities", "status", "afk"];

/// An Update Presence: `status` must be one Discord knows; the rest is read
/// as Discord reads what libraries send.
pub(super) fn presence(data: &Value, quirks: &mut Quirks) -> Result<(), Invalid> {
    let map = object(data, "presence")?;
    match map.get("since") {
        None => quirks.note("presence has no `since`"),
        Some(Value::Null) => {}
        Some(Value::Number(n)) if n.is_u64() => {}
        // serenity 0.12 serializes a `SystemTime`:
        // `{"secs_since_epoch": …, "nanos_since_epoch": …}`.
        Some(Value::Object(_)) => {
            quirks.note("presence `since` is an object, not unix milliseconds")
        }
        Some(_) => quirks.note("presence `since` is not unix milliseconds or null"),
    }
    match map.get("status") {
        Some(Value::String(status)) if STATUSES.contains(&status.as_str()) => {}
        Some(Value::String(status)) => {
            return invalid(format!("unknown presence status `{status}`"));
        }
        None | Some(Value::Null) => quirks.note("presence has no `status`"),
        Some(_) => return invalid("presence `status` is not a string"),
    }
    match map.get("activities") {
        Some(Value::Array(activities)) => {
            for activity in activities {
                self::activity(activity, quirks)?;
            }
        }
        None | Some(Value::Null) => {
            quirks.note("presence has no `activities`");
            // discord.py sends the activity as `game`, the field's old name.
            if let Some(game) = map.get("game").filter(|g| !g.is_null()) {
                self::activity(game, quirks)?;
            }
        }
        Some(_) => return invalid("presence `activities` is not an array"),
    }
    match map.get("afk") {
        Some(Value::Bool(_)) => {}
        None | Some(Value::Null) => quirks.note("presence has no `afk`"),
        Some(_) => return invalid("presence `afk` is not a boolean"),
    }
    quirks.unknown_fields("presence", map, &PRESENCE_FIELDS);
    Ok(())
}

/// An activity a bot sets: an object; `type` an integer when given, one of
/// the documented 0..=5, and bots may set only `name`, `state`, `type` and
/// `url`.
fn activity(value: &Value, quirks: &mut Quirks) -> Result<(), Invalid> {
    let map = object(value, "activity")?;
    match map.get("type") {
        None | Some(Value::Null) => quirks.note("activity has no `type`"),
        Some(kind) => match kind.as_u64() {
            Some(0..=5) => {}
            Some(other) => quirks.note(format!("undocumented activity type {other}")),
            None => return invalid("activity `type` is not an integer"),
        },
    }
    if !map.get("name").is_some_and(Value::is_string)
        && !map.get("state").is_some_and(Value::is_string)
    {
        return invalid("activity has neither `name` nor `state`");
    }
    quirks.unknown_fields("activity", map, &["name", "type", "url", "state"]);
    Ok(())
}

// ----- op 4 -----

/// Update Voice State.
#[derive(Debug)]
pub(super) struct VoiceState {
    pub(super) guild_id: u64,
    /// `None` leaves voice.
    pub(super) channel_id: Option<u64>,
    pub(super) self_mute: bool,
    pub(super) self_deaf: bool,
}

pub(super) fn voice_state(data: &Value, quirks: &mut Quirks) -> Result<VoiceState, Invalid> {
    let what = "voice state update";
    let map = object(data, what)?;
    let guild_id = required_snowflake(map, "guild_id", what, quirks)?;
    let channel_id = match map.get("channel_id") {
        Some(Value::Null) => None,
        None => return invalid("voice state update has no `channel_id`"),
        Some(value) => Some(snowflake(value, "channel_id", quirks)?),
    };
    let self_mute = boolean(map, "self_mute", what)?;
    let self_deaf = boolean(map, "self_deaf", what)?;
    quirks.unknown_fields(
        what,
        map,
        &["guild_id", "channel_id", "self_mute", "self_deaf"],
    );
    Ok(VoiceState {
        guild_id,
        channel_id,
        self_mute,
        self_deaf,
    })
}

// ----- op 6 -----

/// Resume.
#[derive(Debug)]
pub(super) struct Resume {
    pub(super) token: String,
    pub(super) session_id: String,
    pub(super) seq: u64,
}

pub(super) fn resume(data: &Value, quirks: &mut Quirks) -> Result<Resume, Invalid> {
    let map = object(data, "resume")?;
    let token = string(map, "token", "resume")?.to_owned();
    let session_id = string(map, "session_id", "resume")?.to_owned();
    let seq = match map.get("seq") {
        Some(Value::Null) => {
            // A client that never saw a dispatch; it resumes from the start.
            quirks.note("resume `seq` is null");
            0
        }
        _ => unsigned(map, "seq", "resume")?,
    };
    quirks.unknown_fields("resume", map, &["token", "session_id", "seq"]);
    Ok(Resume {
        token,
        session_id,
        seq,
    })
}

// ----- op 8 -----

/// A user id of `user_ids`, as sent: the documented quirk echoes ids that
/// are not snowflake-sized back as numbers.
#[derive(Clone, Debug)]
pub(super) enum UserId {
    Number(u64),
    Text(String),
}

/// Request Guild Members.
#[derive(Debug)]
pub(super) struct RequestMembers {
    pub(super) guild_id: u64,
    pub(super) query: Option<String>,
    pub(super) limit: Option<u64>,
    pub(super) presences: bool,
    pub(super) user_ids: Option<Vec<UserId>>,
    pub(super) nonce: Option<String>,
}

impl RequestMembers {
    /// `query: ""` with `limit: 0`: every member.
    pub(super) fn wants_all(&self) -> bool {
        self.query.as_deref() == Some("") && self.limit == Some(0)
    }
}

pub(super) fn request_members(
    data: &Value,
    quirks: &mut Quirks,
) -> Result<RequestMembers, Invalid> {
    let what = "request guild members";
    let map = object(data, what)?;
    let guild_id = required_snowflake(map, "guild_id", what, quirks)?;
    let query = match map.get("query") {
        None | Some(Value::Null) => None,
        Some(Value::String(q)) => Some(q.clone()),
        Some(_) => return invalid("`query` is not a string"),
    };
    let limit = match map.get("limit") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .map_or_else(|| invalid("`limit` is not an integer"), Ok)?,
        ),
    };
    let presences = match map.get("presences") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return invalid("`presences` is not a boolean"),
    };
    let user_id = |value: &Value| match value {
        Value::String(s) => Ok(UserId::Text(s.clone())),
        Value::Number(n) => n.as_u64().map(UserId::Number).ok_or(()),
        _ => Err(()),
    };
    let user_ids = match map.get("user_ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) => Some(
            ids.iter()
                .map(user_id)
                .collect::<Result<Vec<_>, ()>>()
                .map_or_else(
                    |()| invalid("`user_ids` holds a value that is not an id"),
                    Ok,
                )?,
        ),
        Some(one) => Some(vec![
            user_id(one).map_or_else(|()| invalid("`user_ids` is not an id"), Ok)?,
        ]),
    };
    let nonce = match map.get("nonce") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => {
            // An invalid nonce is ignored, as documented.
            quirks.note("`nonce` is not a string");
            None
        }
    };
    if query.is_some() == user_ids.is_some() {
        return invalid("request guild members needs exactly one of `query` and `user_ids`");
    }
    if query.is_some() && limit.is_none() {
        return invalid("request guild members with `query` needs `limit`");
    }
    quirks.unknown_fields(
        what,
        map,
        &[
            "guild_id",
            "query",
            "limit",
            "presences",
            "user_ids",
            "nonce",
        ],
    );
    Ok(RequestMembers {
        guild_id,
        query,
        limit,
        presences,
        user_ids,
        nonce,
    })
}

// ----- op 31 -----

/// Request Soundboard Sounds: the guilds asked for.
pub(super) fn request_soundboard_sounds(
    data: &Value,
    quirks: &mut Quirks,
) -> Result<Vec<u64>, Invalid> {
    let what = "request soundboard sounds";
    let map = object(data, what)?;
    let ids = match map.get("guild_ids") {
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| snowflake(id, "guild_ids", quirks))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return invalid("`guild_ids` is not an array"),
        None => return invalid("request soundboard sounds has no `guild_ids`"),
    };
    quirks.unknown_fields(what, map, &["guild_ids"]);
    Ok(ids)
}

// ----- op 43 -----

/// Request Channel Info.
#[derive(Debug)]
pub(super) struct RequestChannelInfo {
    pub(super) guild_id: u64,
    pub(super) status: bool,
    pub(super) voice_start_time: bool,
}

pub(super) fn request_channel_info(
    data: &Value,
    quirks: &mut Quirks,
) -> Result<RequestChannelInfo, Invalid> {
    let what = "request channel info";
    let map = object(data, what)?;
    let guild_id = required_snowflake(map, "guild_id", what, quirks)?;
    let Some(Value::Array(fields)) = map.get("fields") else {
        return invalid("request channel info has no `fields` array");
    };
    let mut request = RequestChannelInfo {
        guild_id,
        status: false,
        voice_start_time: false,
    };
    for field in fields {
        match field.as_str() {
            Some("status") => request.status = true,
            Some("voice_start_time") => request.voice_start_time = true,
            Some(other) => quirks.note(format!("unknown channel info field `{other}`")),
            None => return invalid("`fields` holds a value that is not a string"),
        }
    }
    quirks.unknown_fields(what, map, &["guild_id", "fields"]);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T>(
        f: impl Fn(&Value, &mut Quirks) -> Result<T, Invalid>,
        value: Value,
    ) -> (Result<T, Invalid>, Vec<String>) {
        let mut quirks = Quirks::default();
        let result = f(&value, &mut quirks);
        (result, quirks.0)
    }

    #[test]
    fn envelopes() {
        let mut quirks = Quirks::default();
        let e = envelope(br#"{"op":1,"d":null}"#, &mut quirks).expect("envelope");
        assert_eq!((e.op, e.data), (Some(1), Value::Null));
        let e = envelope(br#"{"op":1,"d":5,"s":null,"t":null}"#, &mut quirks).expect("envelope");
        assert_eq!((e.op, e.data), (Some(1), json!(5)));
        assert!(quirks.0.is_empty());
        let e = envelope(br#"{"op":"1","x":2}"#, &mut quirks).expect("envelope");
        assert_eq!(e.op, None);
        assert_eq!(quirks.0, ["unknown field `x` in the envelope"]);
        assert_eq!(
            envelope(b"{\"op\":", &mut quirks).err(),
            Some(Undecodable::NotJson)
        );
        assert_eq!(
            envelope(b"[1]", &mut quirks).err(),
            Some(Undecodable::NotAnObject)
        );
        assert_eq!(
            envelope(b"\xff", &mut quirks).err(),
            Some(Undecodable::NotUtf8)
        );
    }

    /// serenity 0.12's Identify, byte for byte as it serializes one:
    /// `since` is a `SystemTime`, the token has the REST prefix, the
    /// properties are the current names.
    #[test]
    fn serenity_identify_is_accepted() {
        let raw = br#"{"op":2,"d":{"compress":true,"token":"Bot mock-token","large_threshold":250,"shard":[0,1],"intents":53608447,"properties":{"browser":"serenity","device":"serenity","os":"linux"},"presence":{"afk":false,"status":"online","since":{"secs_since_epoch":1733300000,"nanos_since_epoch":123456789},"activities":[{"name":"with the emulator","type":0,"state":null,"url":null}]}}}"#;
        let mut quirks = Quirks::default();
        let envelope = envelope(raw, &mut quirks).expect("envelope");
        let identify = identify(&envelope.data, &mut quirks).expect("accepted");
        assert_eq!(identify.token, "Bot mock-token");
        assert_eq!(identify.shard, Some([0, 1]));
        assert_eq!(identify.large_threshold, Some(250));
        assert_eq!(
            quirks.0,
            ["presence `since` is an object, not unix milliseconds"]
        );
    }

    /// discord.py 2's presence: the activity as `game`, `status` null when
    /// only an activity is set, `since` 0.
    #[test]
    fn discord_py_presence_is_accepted() {
        let (result, quirks) = read(
            presence,
            json!({"status": null, "game": {"name": "chess", "type": 0}, "since": 0, "afk": false}),
        );
        assert!(result.is_ok());
        assert_eq!(
            quirks,
            [
                "presence has no `status`",
                "presence has no `activities`",
                "unknown field `game` in presence"
            ]
        );
    }

    #[test]
    fn deprecated_property_names_are_noted() {
        let (result, quirks) = read(
            identify,
            json!({"token": "t", "intents": 1, "properties": {"$os": "linux", "$browser": "b", "$device": "d"}}),
        );
        assert!(result.is_ok());
        assert_eq!(quirks.len(), 3);
        assert!(quirks[0].contains("$os"));
    }

    #[test]
    fn what_discord_refuses() {
        for bad in [
            json!({"intents": 1, "properties": {}}),
            json!({"token": "t", "properties": {}}),
            json!({"token": "t", "intents": 1}),
            json!({"token": "t", "intents": 1, "properties": {}, "shard": [0]}),
            json!({"token": "t", "intents": 1, "properties": {}, "presence": {"status": "sleeping"}}),
            json!("identify"),
        ] {
            assert!(read(identify, bad.clone()).0.is_err(), "{bad}");
        }
        assert!(
            read(resume, json!({"token": "t", "session_id": "s", "seq": "7"}))
                .0
                .is_err()
        );
        assert!(heartbeat(&json!("seven")).is_err());
        assert!(heartbeat(&json!(-1)).is_err());
        assert_eq!(heartbeat(&json!(7)), Ok(Some(7)));
        assert!(read(request_members, json!({"guild_id": "1"})).0.is_err());
        assert!(
            read(request_members, json!({"guild_id": "1", "query": ""}))
                .0
                .is_err()
        );
        assert!(read(voice_state, json!({"channel_id": null})).0.is_err());
        assert!(read(voice_state, json!({"guild_id": "1"})).0.is_err());
        let leave =
            json!({"guild_id": "1", "channel_id": null, "self_mute": false, "self_deaf": false});
        assert!(read(voice_state, leave).0.is_ok());
    }

    #[test]
    fn request_members_forms() {
        let (request, quirks) = read(
            request_members,
            json!({"guild_id": "41771983423143937", "query": "", "limit": 0, "presences": false, "nonce": ""}),
        );
        let request = request.expect("serenity's all-members form");
        assert!(request.wants_all());
        assert!(quirks.is_empty());
        let (request, _) = read(request_members, json!({"guild_id": 1, "user_ids": "123"}));
        let request = request.expect("one id");
        assert!(matches!(
            request.user_ids.as_deref(),
            Some([UserId::Text(_)])
        ));
    }
}
