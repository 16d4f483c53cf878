//! Voice with songbird through discore's shards: the gateway half.
//!
//! ```sh
//! cargo run -p discore-ecosystem --example voice
//! DISCORD_TOKEN=... GUILD_ID=... VOICE_CHANNEL_ID=... \
//!     cargo run -p discore-ecosystem --example voice
//! ```
//!
//! The bot joins a voice channel (Update Voice State on the guild's shard),
//! receives VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE into songbird's
//! call, prints the connection info a voice driver would connect with (the
//! voice token is a credential and is not printed), then leaves and exits.
//! The media connection itself (voice WebSocket, RTP over UDP) needs
//! songbird's `driver` feature and Discord's voice servers; the emulator
//! hands out an endpoint that does not resolve.

use anyhow::Context as _;
use discore::Intents;
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::setup::Environment;
use discore_mock::MockConfig;
use discore_songbird::{VoiceCalls, VoiceEvents};
use std::sync::Arc;
use twilight_model::id::Id;

#[actix::main]
async fn main() -> anyhow::Result<()> {
    discore_ecosystem::setup::init_logging();
    let env = Environment::from_env(MockConfig::new().guilds(4).max_guilds_per_shard(2)).await?;
    let (guild, channel) = match env.mock() {
        Some(mock) => {
            let guild = mock.guild_ids()[1];
            (
                guild,
                mock.voice_channel_id(guild).context("a voice channel")?,
            )
        }
        None => (
            std::env::var("GUILD_ID")?.parse::<u64>()?,
            std::env::var("VOICE_CHANNEL_ID")?.parse::<u64>()?,
        ),
    };
    let (guild, channel) = (
        Id::new_checked(guild).context("GUILD_ID is 0")?,
        Id::new_checked(channel).context("VOICE_CHANNEL_ID is 0")?,
    );

    // The bot's user id, which songbird needs to pick its own voice states.
    let http = env.http()?;
    let user = http.current_user().await?.model().await?.id;

    let config = env.manager_config(Intents::GUILDS | Intents::GUILD_VOICE_STATES)?;
    let manager = ShardManager::launch(config).await?;
    let calls = Arc::new(VoiceCalls::new(manager.clone(), user));
    let _feeder = VoiceEvents::start(Arc::clone(&calls));
    log::info!("fleet ready: {}", manager.send(WaitUntilReady).await??);

    let (info, call) = calls.join_gateway(guild, channel).await?;
    log::info!(
        "joined channel {} of guild {}: voice server {}, session {} (token not shown)",
        info.channel_id,
        info.guild_id,
        info.endpoint,
        info.session_id
    );
    log::info!(
        "songbird's call is in {:?}",
        call.lock().await.current_channel()
    );
    calls.leave(guild).await?;
    log::info!("left; call in {:?}", call.lock().await.current_channel());

    manager.send(ShutdownFleet(StopMode::End)).await??;
    env.stop().await;
    Ok(())
}
