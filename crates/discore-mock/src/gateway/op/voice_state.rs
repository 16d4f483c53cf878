//! Op 4 Voice State Update: VOICE_STATE_UPDATE, and VOICE_SERVER_UPDATE
//! when joining a channel.

use crate::gateway::{
    connection::{Connection, Exit},
    inbound::{self, Quirks},
};
use crate::{event::Event, intents::GUILD_VOICE_STATES, payloads, world::ChannelKind};
use serde_json::Value;
use std::sync::Arc;

impl Connection {
    pub(in crate::gateway) fn on_voice_state(
        &mut self,
        data: &Value,
        quirks: &mut Quirks,
    ) -> Option<Exit> {
        let voice = match inbound::voice_state(data, quirks) {
            Ok(voice) => voice,
            Err(invalid) => return self.invalid("voice state update", &invalid.0),
        };
        let channel = voice.channel_id;
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        let guild = self.own_guild(&world, voice.guild_id)?;
        if let Some(channel) = channel {
            let is_voice = world
                .channel(channel)
                .is_some_and(|c| c.guild == guild && c.kind == ChannelKind::Voice);
            if !is_voice {
                return None;
            }
        }
        let guild_id = world.guild_id(guild);
        let voice_state = payloads::voice_state(
            &world,
            guild,
            channel,
            voice.self_mute,
            voice.self_deaf,
            &session_id,
        );
        let event = Event {
            intent: GUILD_VOICE_STATES,
            ..Event::plain("VOICE_STATE_UPDATE", &voice_state, Some(guild_id))
        };
        state.deliver(&session_id, &event);
        if channel.is_some() {
            state.message_counter += 1;
            let token = format!(
                "{:016x}",
                crate::world::mix(world.bot_id, 43, state.message_counter)
            );
            let server = payloads::voice_server(&world, guild, &token);
            state.deliver(
                &session_id,
                &Event::plain("VOICE_SERVER_UPDATE", &server, Some(guild_id)),
            );
        }
        None
    }
}
