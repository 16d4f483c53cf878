//! The calls of a bot, one songbird `Call` per guild, and the voice events
//! that drive them.

use crate::{route::VoiceRoute, sharder::DiscoreSharder};
use discore_gateway::{Dispatch, DispatchEvent};
use songbird::{
    Call, Config, ConnectionInfo,
    error::{JoinError, JoinResult},
    id::{ChannelId, GuildId, UserId},
};
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex as StdMutex, PoisonError},
};
use tokio::sync::Mutex;
use twilight_model::id::{
    Id,
    marker::{ChannelMarker, GuildMarker, UserMarker},
};

/// A guild's call, shared between the bot and the event feeder.
pub type CallHandle = Arc<Mutex<Call>>;

/// Every voice call of a bot on discore: what songbird's `Songbird` manager
/// is for serenity and twilight.
///
/// songbird 0.6 builds its manager only for those two libraries (its
/// twilight support is for twilight-model 0.16/0.17, discore uses 0.18), so
/// this type keeps the guild → [`Call`] map itself and gives each call a
/// [`ShardHandle`](crate::ShardHandle) that routes Update Voice State
/// through discore. Feed it the voice events with [`process`](Self::process)
/// (or a [`VoiceEvents`](crate::VoiceEvents) actor, which does it in order
/// on its own task).
pub struct VoiceCalls {
    sharder: DiscoreSharder,
    user: Id<UserMarker>,
    config: Config,
    calls: StdMutex<HashMap<Id<GuildMarker>, CallHandle>>,
}

impl fmt::Debug for VoiceCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoiceCalls")
            .field("sharder", &self.sharder)
            .field("user", &self.user)
            .field("calls", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl VoiceCalls {
    /// Calls for the bot user `user` (READY's `user.id`, or
    /// `GET /users/@me`), sending through `route`.
    pub fn new(route: impl Into<VoiceRoute>, user: Id<UserMarker>) -> Self {
        Self {
            sharder: DiscoreSharder::new(route),
            user,
            config: Config::default(),
            calls: StdMutex::new(HashMap::new()),
        }
    }

    /// The configuration of calls created from now on (songbird's default:
    /// a 10 s gateway timeout for joins).
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The sharder the calls send through.
    pub fn sharder(&self) -> &DiscoreSharder {
        &self.sharder
    }

    /// The bot user the calls belong to.
    pub fn user(&self) -> Id<UserMarker> {
        self.user
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id<GuildMarker>, CallHandle>> {
        // The map is only read and written in one step: a panic elsewhere
        // cannot leave it half-changed.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The call of `guild`, if there is one.
    pub fn get(&self, guild: Id<GuildMarker>) -> Option<CallHandle> {
        self.lock().get(&guild).cloned()
    }

    /// The call of `guild`, created (not joined) if there is none.
    pub fn get_or_insert(&self, guild: Id<GuildMarker>) -> CallHandle {
        self.lock()
            .entry(guild)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Call::from_config(
                    GuildId(guild.into_nonzero()),
                    self.sharder.handle().into_songbird(),
                    UserId(self.user.into_nonzero()),
                    self.config.clone(),
                )))
            })
            .clone()
    }

    /// The guilds that have a call.
    pub fn guilds(&self) -> Vec<Id<GuildMarker>> {
        self.lock().keys().copied().collect()
    }

    /// Joins `channel` of `guild` on the gateway and waits for Discord's
    /// answer (VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE, which must reach
    /// [`process`](Self::process) on another task meanwhile): the
    /// [`ConnectionInfo`] a voice driver connects with.
    ///
    /// # Errors
    ///
    /// songbird's [`JoinError`]: `NoSender` when no shard took the command,
    /// `TimedOut` when the answer did not come within the configured
    /// gateway timeout.
    pub async fn join_gateway(
        &self,
        guild: Id<GuildMarker>,
        channel: Id<ChannelMarker>,
    ) -> JoinResult<(ConnectionInfo, CallHandle)> {
        let call = self.get_or_insert(guild);
        // Send under the lock, then release it before waiting, so the
        // events can update the call.
        let pending = call
            .lock()
            .await
            .join_gateway(ChannelId(channel.into_nonzero()))
            .await?;
        let info = pending.await.map_err(|_| JoinError::Dropped)?;
        Ok((info, call))
    }

    /// Leaves the voice channel of `guild` (Update Voice State with no
    /// channel); the call and its settings stay.
    ///
    /// # Errors
    ///
    /// `NoCall` when the guild has no call; `NoSender` when no shard took
    /// the command.
    pub async fn leave(&self, guild: Id<GuildMarker>) -> JoinResult<()> {
        let call = self.get(guild).ok_or(JoinError::NoCall)?;
        let mut call = call.lock().await;
        call.leave().await
    }

    /// Leaves the voice channel of `guild` and forgets its call.
    ///
    /// # Errors
    ///
    /// As [`leave`](Self::leave); the call is kept when leaving failed.
    pub async fn remove(&self, guild: Id<GuildMarker>) -> JoinResult<()> {
        self.leave(guild).await?;
        self.lock().remove(&guild);
        Ok(())
    }

    /// Applies a voice event to its guild's call: the bot's own
    /// VOICE_STATE_UPDATE (session, channel; no channel means it was
    /// disconnected) and VOICE_SERVER_UPDATE (endpoint, token). Other
    /// events, other users' voice states and guilds without a call are
    /// ignored. Returns whether a call was updated.
    ///
    /// Call it on a task of its own: a join holds the call's lock while it
    /// sends, and waits for these events after releasing it.
    pub async fn process(&self, event: &Dispatch) -> bool {
        match event.typed() {
            Some(event) => self.process_event(event).await,
            None => false,
        }
    }

    /// [`process`](Self::process) for a typed event.
    pub async fn process_event(&self, event: &DispatchEvent) -> bool {
        match event {
            DispatchEvent::VoiceStateUpdate(update) => {
                let state = &update.0;
                if state.user_id != self.user {
                    return false;
                }
                let Some(call) = state.guild_id.and_then(|guild| self.get(guild)) else {
                    return false;
                };
                call.lock().await.update_state(
                    state.session_id.clone(),
                    state.channel_id.map(|c| ChannelId(c.into_nonzero())),
                );
                true
            }
            DispatchEvent::VoiceServerUpdate(update) => {
                let Some(call) = self.get(update.guild_id) else {
                    return false;
                };
                match &update.endpoint {
                    Some(endpoint) => {
                        call.lock()
                            .await
                            .update_server(endpoint.clone(), update.token.clone());
                        true
                    }
                    // No endpoint: Discord is moving the voice server; a
                    // new VOICE_SERVER_UPDATE follows.
                    None => false,
                }
            }
            _ => false,
        }
    }
}
