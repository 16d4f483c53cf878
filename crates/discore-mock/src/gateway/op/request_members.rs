//! Op 8 Request Guild Members: GUILD_MEMBERS_CHUNKs, the all-members rate
//! limit (RATE_LIMITED) and its intent.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks, UserId},
};
use crate::{
    event::Event,
    intents::{GUILD_MEMBERS, GUILD_PRESENCES},
    limits,
    observe::ViolationKind,
    payloads,
    world::Status,
};
use serde_json::{Value, json};
use std::{sync::Arc, time::Instant};

impl Connection {
    pub(in crate::gateway) fn on_request_members(
        &mut self,
        data: &Value,
        now: Instant,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        let request = match inbound::request_members(data, quirks) {
            Ok(request) => request,
            Err(invalid) => return self.invalid("request guild members", &invalid.0),
        };
        let all = request.wants_all();
        if all && self.intents & GUILD_MEMBERS == 0 {
            self.violation(
                ViolationKind::MembersIntentRequired,
                "all members requested without GUILD_MEMBERS",
            );
            return Some(Exit::Close(
                4001,
                "GUILD_MEMBERS intent required".to_owned(),
            ));
        }
        let session_id = self.session_id.clone()?;
        let nonce = request.nonce.filter(|n| n.len() <= limits::MAX_NONCE_BYTES);
        let world = Arc::clone(&self.shared.lock().world);
        let guild = self.own_guild(&world, request.guild_id)?;
        if all {
            let limited = self
                .shared
                .lock()
                .all_members_allowed(request.guild_id, now);
            if let Err(retry_after) = limited {
                self.violation(
                    ViolationKind::RequestGuildMembersRateLimited,
                    format!(
                        "all members of guild {} requested again within the window",
                        request.guild_id
                    ),
                );
                let data = payloads::rate_limited(request.guild_id, retry_after, nonce.as_deref());
                self.shared.lock().deliver(
                    &session_id,
                    &Event::plain("RATE_LIMITED", &data, Some(request.guild_id)),
                );
                return None;
            }
        }
        let presences = request.presences && self.intents & GUILD_PRESENCES != 0;
        // (member index or None for the bot)
        let mut found: Vec<Option<u32>> = Vec::new();
        let mut not_found: Vec<Value> = Vec::new();
        let members = world.members_per_guild();
        if let Some(query) = request.query {
            let cap = if all {
                usize::MAX
            } else {
                usize::try_from(request.limit.unwrap_or(0))
                    .unwrap_or(usize::MAX)
                    .clamp(1, limits::MAX_QUERY_MEMBERS)
            };
            let query = query.to_lowercase();
            if "discore-mock".starts_with(&query) {
                found.push(None);
            }
            for m in 0..members {
                if found.len() >= cap {
                    break;
                }
                if world.username(m).starts_with(&query) {
                    found.push(Some(m));
                }
            }
        } else if let Some(ids) = request.user_ids {
            for id in ids.into_iter().take(limits::MAX_QUERY_MEMBERS) {
                let parsed = match &id {
                    UserId::Number(n) => Some(*n),
                    UserId::Text(s) => s.parse::<u64>().ok(),
                };
                match parsed {
                    Some(n) if n == world.bot_id => found.push(None),
                    Some(n) => match world.member_index(guild, n) {
                        Some(m) => found.push(Some(m)),
                        // The documented quirk: ids that are not bigint-sized
                        // come back as JSON numbers.
                        None if n < (1 << 53) => not_found.push(json!(n)),
                        None => not_found.push(json!(n.to_string())),
                    },
                    None => not_found.push(match id {
                        UserId::Number(n) => json!(n),
                        UserId::Text(s) => json!(s),
                    }),
                }
            }
        }
        let guild_id = world.guild_id(guild);
        let chunks: Vec<&[Option<u32>]> = if found.is_empty() {
            vec![&[]]
        } else {
            found.chunks(limits::MEMBERS_PER_CHUNK).collect()
        };
        let count = chunks.len();
        let events: Vec<Event> = chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| {
                let members: Vec<Value> = chunk
                    .iter()
                    .map(|m| match m {
                        Some(m) => world.member(guild, *m, true),
                        None => world.bot_member(guild, true),
                    })
                    .collect();
                let mut data = json!({
                    "guild_id": guild_id.to_string(),
                    "members": members,
                    "chunk_index": index,
                    "chunk_count": count,
                    "not_found": if index == 0 { Value::Array(not_found.clone()) } else { json!([]) },
                });
                if let Some(map) = data.as_object_mut() {
                    if presences {
                        let list: Vec<Value> = chunk
                            .iter()
                            .flatten()
                            .filter(|m| world.status(guild, **m) != Status::Offline)
                            .map(|m| world.presence(guild, *m))
                            .collect();
                        map.insert("presences".to_owned(), Value::Array(list));
                    }
                    if let Some(nonce) = &nonce {
                        map.insert("nonce".to_owned(), json!(nonce));
                    }
                }
                Event::plain("GUILD_MEMBERS_CHUNK", &data, Some(guild_id))
            })
            .collect();
        let mut state = self.shared.lock();
        for event in &events {
            state.deliver(&session_id, event);
        }
        None
    }
}
