//! Op 2 Identify: validated here, judged by the state (token, intents,
//! shard, identify bucket, daily budget), then READY and GUILD_CREATEs.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{IdentifyData, validate_presence},
};
use crate::{
    event::Event,
    state::{IdentifyRequest, IdentifyResult},
};
use discore_protocol::limits;
use serde::Deserialize;
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_identify(&mut self, data: Value) -> Option<Exit> {
        let Ok(identify) = IdentifyData::deserialize(&data) else {
            return self.invalid("identify");
        };
        let large_threshold = identify.large_threshold.unwrap_or(50);
        if !limits::LARGE_THRESHOLD_RANGE.contains(&large_threshold)
            || identify
                .presence
                .as_ref()
                .is_some_and(|p| !validate_presence(p))
            || identify.properties.os.len() > 4096
        {
            return self.invalid("identify");
        }
        let request = IdentifyRequest {
            token_ok: self.token_ok(&identify.token),
            intents: identify.intents,
            shard: identify.shard,
        };
        let now = Instant::now();
        let at = self.shared.elapsed();
        let resume_url = self.shared.resume_url();
        let result =
            self.shared
                .lock()
                .identify(self.id, &request, self.version, now, at, &resume_url);
        match result {
            IdentifyResult::Close(code, reason) => Some(Exit::Close(code, reason.to_owned())),
            IdentifyResult::InvalidSession => self.send_invalid_session(false),
            IdentifyResult::Ready {
                session_id,
                guilds,
                world,
            } => {
                let shard = identify
                    .shard
                    .map_or([0, 1], |s| [s[0] as u32, s[1] as u32]);
                log::info!("{} identified as shard {shard:?}", self.id);
                self.session_id = Some(session_id.clone());
                self.shard = Some(shard);
                self.intents = identify.intents;
                self.outbox_pending = true;
                // Build GUILD_CREATEs without holding the lock, then queue
                // them in one go.
                let events: Vec<Event> = guilds
                    .iter()
                    .map(|g| {
                        let data = world.guild_create(*g, identify.intents, large_threshold);
                        Event {
                            intent: crate::intents::GUILDS,
                            ..Event::plain("GUILD_CREATE", &data, Some(world.guild_id(*g)))
                        }
                    })
                    .collect();
                let mut state = self.shared.lock();
                for event in &events {
                    state.deliver(&session_id, event);
                }
                None
            }
        }
    }
}
