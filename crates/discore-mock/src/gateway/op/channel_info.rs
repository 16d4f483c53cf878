//! Op 43 Request Channel Info: CHANNEL_INFO for the guild's voice channels.

use crate::gateway::connection::{Connection, Exit};
use crate::{event::Event, payloads};
use discore_protocol::commands::{ChannelInfoField, RequestChannelInfo};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

impl Connection {
    pub(in crate::gateway) fn on_channel_info(&mut self, data: Value) -> Option<Exit> {
        let Ok(request) = RequestChannelInfo::deserialize(&data) else {
            return self.invalid("request channel info");
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        let guild = self.own_guild(&world, request.guild_id.get())?;
        let status = request.fields.contains(&ChannelInfoField::Status);
        let start = request.fields.contains(&ChannelInfoField::VoiceStartTime);
        let data = payloads::channel_info(&world, guild, status, start);
        state.deliver(
            &session_id,
            &Event::plain("CHANNEL_INFO", &data, Some(request.guild_id.get())),
        );
        None
    }
}
