//! songbird's shard traits on discore's routing.

use crate::route::VoiceRoute;
use async_trait::async_trait;
use songbird::{
    error::{JoinError, JoinResult},
    id::{ChannelId, GuildId},
    shards::{GenericSharder, VoiceUpdate},
};
use std::sync::Arc;
use twilight_model::id::Id;

/// songbird's [`GenericSharder`] for a discore fleet or shard.
///
/// songbird asks for a shard by the id it computed from the guild and the
/// shard count it was told; discore routes every voice command by its guild
/// instead, with the fleet's current total, so each handle it returns is
/// the same route and stays right across a re-sharding.
#[derive(Clone, Debug)]
pub struct DiscoreSharder {
    route: VoiceRoute,
}

impl DiscoreSharder {
    /// A sharder sending through `route`.
    pub fn new(route: impl Into<VoiceRoute>) -> Self {
        Self {
            route: route.into(),
        }
    }

    /// The handle songbird's `Call`s send through.
    pub fn handle(&self) -> ShardHandle {
        ShardHandle {
            route: self.route.clone(),
        }
    }

    /// The route of this sharder.
    pub fn route(&self) -> &VoiceRoute {
        &self.route
    }
}

impl GenericSharder for DiscoreSharder {
    fn get_shard(&self, _shard_id: u64) -> Option<Arc<dyn VoiceUpdate + Send + Sync>> {
        Some(Arc::new(self.handle()))
    }
}

/// songbird's [`VoiceUpdate`]: sends Update Voice State (op 4) through a
/// [`VoiceRoute`].
#[derive(Clone, Debug)]
pub struct ShardHandle {
    route: VoiceRoute,
}

impl ShardHandle {
    /// The handle as songbird's shard type, for `Call::new`.
    pub fn into_songbird(self) -> songbird::shards::Shard {
        songbird::shards::Shard::Generic(Arc::new(self))
    }
}

#[async_trait]
impl VoiceUpdate for ShardHandle {
    async fn update_voice_state(
        &self,
        guild_id: GuildId,
        channel_id: Option<ChannelId>,
        self_deaf: bool,
        self_mute: bool,
    ) -> JoinResult<()> {
        let guild = Id::from(guild_id.0);
        let channel = channel_id.map(|c| Id::from(c.0));
        self.route
            .update_voice_state(guild, channel, self_deaf, self_mute)
            .await
            .map_err(|error| {
                // songbird's error has no room for the reason: log it here.
                log::warn!("guild {guild}: {}", discore_protocol::ErrorChain(&error));
                match error {
                    crate::VoiceRouteError::Stopped(_) => JoinError::Dropped,
                    _ => JoinError::NoSender,
                }
            })
    }
}
