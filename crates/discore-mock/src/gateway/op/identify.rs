//! Op 2 Identify: read here, judged by the state (token, intents, shard,
//! identify bucket, daily budget), then READY and the GUILD_CREATEs.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::{
    event::Event,
    limits,
    state::{IdentifyRequest, IdentifyResult},
};
use serde_json::Value;
use std::time::Instant;

impl Connection {
    pub(in crate::gateway) fn on_identify(
        &mut self,
        data: &Value,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        let identify = match inbound::identify(data, quirks) {
            Ok(identify) => identify,
            Err(invalid) => return self.invalid("identify", &invalid.0),
        };
        let large_threshold = identify
            .large_threshold
            .unwrap_or(limits::DEFAULT_LARGE_THRESHOLD);
        if !limits::LARGE_THRESHOLD_RANGE.contains(&large_threshold) {
            return self.invalid(
                "identify",
                &format!("large_threshold {large_threshold} is outside 50..=250"),
            );
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
                shard,
                guilds,
                world,
                written,
                overlays,
                unavailable,
            } => {
                log::info!("{} identified as shard {shard:?}", self.id);
                self.session_id = Some(session_id.clone());
                self.shard = Some(shard);
                self.intents = identify.intents;
                self.session_written = Some(written);
                self.outbox_pending = true;
                // Build GUILD_CREATEs without holding the lock, then queue
                // them in one go.
                let events: Vec<Event> = guilds
                    .iter()
                    .map(|g| {
                        if unavailable.contains(g) {
                            // Discord's Guild Delete: an unavailable guild
                            // is `{id, unavailable: true}`.
                            let id = world.guild_id(*g);
                            let data = serde_json::json!({
                                "id": id.to_string(),
                                "unavailable": true,
                            });
                            return Event {
                                intent: crate::intents::GUILDS,
                                ..Event::plain("GUILD_DELETE", &data, Some(id))
                            };
                        }
                        let mut data = world.guild_create(*g, identify.intents, large_threshold);
                        if let Some(overlay) = overlays.get(g) {
                            overlay.apply(&mut data);
                        }
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
