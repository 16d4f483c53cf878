//! songbird drives voice through the fleet: joining and leaving send Update
//! Voice State (op 4) on the shard of the guild and on no other, and the
//! emulator's VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE reach songbird's
//! call (the join resolves with their session, endpoint and token; a
//! disconnect by someone else ends the call).

use crate::common::{PATIENCE, Recorder, ask, eventually};
use actix::Actor as _;
use discore::protocol::shard_for_guild;
use discore::{DispatchEvent, Intents, Shard, ShardConfig, ShardId, Token};
use discore::{ShardManager, ShutdownFleet, StopMode, WaitUntilReady};
use discore_ecosystem::setup::Environment;
use discore_mock::{MockConfig, MockServer};
use discore_songbird::{GetApplied, VoiceCalls, VoiceEvents};
use serde_json::Value;
use std::sync::Arc;
use twilight_model::id::Id;

/// The op 4 payloads (`d`) the connections of shard `[id, total]` received.
fn voice_commands(mock: &MockServer, shard: [u32; 2]) -> Vec<Value> {
    mock.observed()
        .connections
        .iter()
        .filter(|c| c.shard == Some(shard))
        .flat_map(|c| c.received.iter())
        .filter(|p| p.op == Some(4))
        .map(|p| {
            let payload: Value = serde_json::from_str(&p.json).expect("recorded JSON");
            payload["d"].clone()
        })
        .collect()
}

fn id_string(id: u64) -> Value {
    Value::String(id.to_string())
}

#[actix_rt::test]
async fn songbird_joins_and_leaves_through_the_guilds_shard() {
    let env = Environment::emulator(MockConfig::new().guilds(4).max_guilds_per_shard(2))
        .await
        .expect("the emulator starts");
    let mock = env.mock().expect("on the emulator").clone();
    let recorder = Recorder::default();
    let record = recorder.clone().start();
    let config = env
        .manager_config(Intents::GUILDS | Intents::GUILD_VOICE_STATES)
        .expect("config")
        .subscribe(record.recipient(), VoiceEvents::filter());
    let manager = ShardManager::launch(config)
        .await
        .expect("the fleet starts");
    let calls = Arc::new(VoiceCalls::new(manager.clone(), Id::new(mock.bot_id())));
    let feeder = VoiceEvents::start(Arc::clone(&calls));
    actix_rt::time::timeout(PATIENCE, manager.send(WaitUntilReady))
        .await
        .expect("ready in time")
        .expect("manager running")
        .expect("ready");

    // A guild of shard 1 of 2.
    let guild = *mock
        .guild_ids()
        .iter()
        .find(|&&g| shard_for_guild(g, 2) == 1)
        .expect("a guild on shard 1");
    let channel = mock.voice_channel_id(guild).expect("a voice channel");

    // Join: op 4 on shard 1, and both answers reach the call.
    let (info, call) = actix_rt::time::timeout(
        PATIENCE,
        calls.join_gateway(Id::new(guild), Id::new(channel)),
    )
    .await
    .expect("joined in time")
    .expect("joined");
    assert_eq!(info.guild_id.0.get(), guild);
    assert_eq!(info.channel_id.0.get(), channel);
    assert_eq!(info.user_id.0.get(), mock.bot_id());
    assert_eq!(info.endpoint, "voice.discore-mock.invalid:443");
    assert!(!info.token.is_empty());
    let session = mock
        .observed()
        .sessions
        .iter()
        .find(|s| s.shard == [1, 2] && s.alive)
        .map(|s| s.id.clone())
        .expect("shard 1's session");
    assert_eq!(
        info.session_id, session,
        "the voice session is the gateway session"
    );
    assert_eq!(
        call.lock().await.current_channel().map(|c| c.0.get()),
        Some(channel)
    );
    assert_eq!(
        ask(&feeder, GetApplied).await,
        2,
        "state and server applied"
    );

    let joined = voice_commands(&mock, [1, 2]);
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(joined[0]["guild_id"], id_string(guild));
    assert_eq!(joined[0]["channel_id"], id_string(channel));
    assert_eq!(joined[0]["self_mute"], false);
    assert_eq!(joined[0]["self_deaf"], false);

    // Leave: op 4 without a channel on the same shard; the emulator's
    // VOICE_STATE_UPDATE (no channel) reaches the call too.
    calls.leave(Id::new(guild)).await.expect("left");
    let left = eventually("the leave reaches the emulator", || async {
        let sent = voice_commands(&mock, [1, 2]);
        (sent.len() == 2)
            .then_some(sent)
            .ok_or("waiting".to_owned())
    })
    .await;
    assert_eq!(left[1]["guild_id"], id_string(guild));
    assert_eq!(left[1]["channel_id"], Value::Null);
    eventually("the leave's voice state is applied", || async {
        let applied = ask(&feeder, GetApplied).await;
        (applied == 3)
            .then_some(())
            .ok_or(format!("{applied} applied"))
    })
    .await;
    assert!(call.lock().await.current_channel().is_none());
    assert!(
        voice_commands(&mock, [0, 2]).is_empty(),
        "shard 0 sent no voice command"
    );

    // The voice events the fleet delivered came from shard 1: state,
    // server, state.
    let expected = [
        (1, "VOICE_STATE_UPDATE".to_owned()),
        (1, "VOICE_SERVER_UPDATE".to_owned()),
        (1, "VOICE_STATE_UPDATE".to_owned()),
    ];
    eventually("the recorder has the three events", || async {
        let names: Vec<(u32, String)> = recorder
            .seen()
            .iter()
            .map(|(shard, _, event)| (*shard, event.name().to_owned()))
            .collect();
        (names == expected)
            .then_some(())
            .ok_or(format!("{names:?}"))
    })
    .await;

    // Joined again, then disconnected by someone else (a moderator): the
    // VOICE_STATE_UPDATE without a channel ends the call.
    calls
        .join_gateway(Id::new(guild), Id::new(channel))
        .await
        .expect("joined again");
    let mut kicked = recorder
        .seen()
        .iter()
        .rev()
        .find_map(|(_, _, event)| match event.typed() {
            Some(DispatchEvent::VoiceStateUpdate(state)) => serde_json::to_value(&state.0).ok(),
            _ => None,
        })
        .expect("the bot's voice state");
    kicked["channel_id"] = Value::Null;
    assert!(
        !mock
            .dispatch_to_guild(guild, "VOICE_STATE_UPDATE", &kicked)
            .is_empty()
    );
    eventually("the disconnect ends the call", || async {
        match call.lock().await.current_channel() {
            None => Ok(()),
            Some(channel) => Err(format!("still in {channel}")),
        }
    })
    .await;
    assert!(mock.observed().violations.is_empty());

    manager
        .send(ShutdownFleet(StopMode::End))
        .await
        .expect("manager running")
        .expect("shut down");
    env.stop().await;
}

#[actix_rt::test]
async fn songbird_joins_through_a_single_shard() {
    let env = Environment::emulator(MockConfig::new().guilds(1))
        .await
        .expect("the emulator starts");
    let mock = env.mock().expect("on the emulator").clone();
    let intents = Intents::GUILDS | Intents::GUILD_VOICE_STATES;
    let shard = Shard::new(
        Token::new(discore_ecosystem::setup::EMULATOR_TOKEN).expect("token"),
        ShardId::new(0, 1),
        ShardConfig::new(intents).gateway_url(mock.gateway_url()),
    )
    .start()
    .await
    .expect("the shard starts");
    let calls = Arc::new(VoiceCalls::new(shard.clone(), Id::new(mock.bot_id())));
    let feeder = VoiceEvents::start(Arc::clone(&calls));
    let guild = mock.guild_ids()[0];
    let channel = mock.voice_channel_id(guild).expect("a voice channel");

    let (info, _) = actix_rt::time::timeout(
        PATIENCE,
        calls.join_gateway(Id::new(guild), Id::new(channel)),
    )
    .await
    .expect("joined in time")
    .expect("joined");
    assert_eq!(info.channel_id.0.get(), channel);
    assert_eq!(ask(&feeder, GetApplied).await, 2);
    let sent = voice_commands(&mock, [0, 1]);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["channel_id"], id_string(channel));
    env.stop().await;
}
