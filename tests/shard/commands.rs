use crate::harness::*;
use actix::Actor;
use discore::model::{
    gateway::{
        Intents,
        payload::outgoing::{
            RequestGuildMembers, update_presence::UpdatePresencePayload,
            update_voice_state::UpdateVoiceStateInfo,
        },
        presence::{ActivityType, MinimalActivity, Status},
    },
    id::Id,
};
use discore::protocol::commands::RequestSoundboardSounds;
use discore::{Command, CommandError, DispatchEvent, SendCommand, ShardConfig};
use discore_mock::{MockServer, Target, ViolationKind};
use std::time::Duration;

fn presence(name: &str) -> UpdatePresencePayload {
    let activity = MinimalActivity {
        kind: ActivityType::Playing,
        name: name.to_owned(),
        url: None,
    };
    UpdatePresencePayload::new(vec![activity.into()], false, None, Status::Online)
        .expect("valid presence")
}

fn sent_ops(mock: &MockServer) -> Vec<u8> {
    mock.observed()
        .connections
        .iter()
        .flat_map(|c| c.received.iter().filter_map(|p| p.op))
        .filter(|op| *op != 1)
        .collect()
}

/// Commands sent before the session is ready wait, then go out in order
/// after Identify.
#[actix_rt::test]
async fn commands_wait_for_the_session() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    // Started without waiting: the commands go in before READY.
    let addr = <discore::Shard as Actor>::start(shard(shard_config(&mock), &recorded));
    addr.send(SendCommand(Command::UpdatePresence(presence("early"))))
        .await
        .expect("delivered")
        .expect("queued");
    let guild = Id::new(mock.guild_ids()[0]);
    addr.send(SendCommand(Command::UpdateVoiceState(
        UpdateVoiceStateInfo::new(guild, None, false, false),
    )))
    .await
    .expect("delivered")
    .expect("queued");
    mock.wait_until(PATIENCE, |seen| {
        seen.connections
            .iter()
            .any(|c| c.received_ops().contains(&Some(4)))
    })
    .await
    .expect("the commands arrive");
    assert_eq!(
        sent_ops(&mock),
        [2, 3, 4],
        "identify first, then the commands in order"
    );
    assert!(
        mock.observed()
            .violations_of(ViolationKind::PayloadBeforeIdentify)
            .next()
            .is_none()
    );
}

/// A burst of 1,000 commands is paced under the send limit (scaled down
/// here) and never closed with 4008; the answers come back in order.
#[actix_rt::test]
async fn a_burst_of_a_thousand_commands_is_paced() {
    let window = Duration::from_millis(250);
    let mock = MockServer::start(mock_config().send_limit(120, window))
        .await
        .expect("emulator");
    let recorded = Recorded::start();
    // The client's window is a little longer than the emulator's: frames
    // arrive with jitter, and a window must never hold 121.
    let config = shard_config(&mock).send_rate_limit(120, window + Duration::from_millis(60));
    let addr = shard(config, &recorded).start().await.expect("starts");
    let guild = Id::new(mock.guild_ids()[0]);
    let member = Id::new(mock.member_ids(mock.guild_ids()[0])[0]);
    for i in 0..1000 {
        let request = RequestGuildMembers::builder(guild)
            .nonce(format!("{i}"))
            .user_id(member);
        addr.send(SendCommand(Command::from(request)))
            .await
            .expect("delivered")
            .expect("queued");
    }
    recorded.wait_for_event("GUILD_MEMBERS_CHUNK", 1000).await;
    let nonces: Vec<u32> = recorded
        .events()
        .iter()
        .filter_map(|e| match e.typed() {
            Some(DispatchEvent::MemberChunk(chunk)) => chunk.nonce.as_deref()?.parse().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(
        nonces,
        (0..1000).collect::<Vec<_>>(),
        "answered once each, in order"
    );
    let seen = mock.observed();
    assert_eq!(seen.connections.len(), 1, "never disconnected");
    assert!(seen.violations.is_empty(), "{:#?}", seen.violations);
}

/// A full queue and an oversized payload are clear errors to the caller.
#[actix_rt::test]
async fn full_queue_and_oversized_payload_are_refused() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    let config: ShardConfig = shard_config(&mock).command_queue_capacity(3);
    let addr = shard(config, &recorded).start().await.expect("starts");
    // Presence updates beyond 5 per 20 s wait in the queue and fill it.
    let mut results = Vec::new();
    for i in 0..10 {
        let result = addr
            .send(SendCommand(Command::UpdatePresence(presence(&format!(
                "p{i}"
            )))))
            .await
            .expect("delivered");
        results.push(result);
    }
    assert!(results[..8].iter().all(Result::is_ok), "{results:?}");
    assert_eq!(results[8], Err(CommandError::QueueFull { capacity: 3 }));
    let raw = format!(r#"{{"op":3,"d":{{"junk":"{}"}}}}"#, "z".repeat(5000));
    let oversized = addr
        .send(SendCommand(Command::Raw(raw)))
        .await
        .expect("delivered");
    assert!(matches!(oversized, Err(CommandError::TooLarge { .. })));
    let seen = mock.observed();
    assert!(
        seen.violations_of(ViolationKind::PayloadTooLarge)
            .next()
            .is_none()
    );
    assert!(
        seen.violations_of(ViolationKind::PresenceRateExceeded)
            .next()
            .is_none()
    );
}

/// The presence set at run time is sent again when a new session identifies.
#[actix_rt::test]
async fn presence_is_restored_on_a_new_session() {
    let (mock, recorded, addr) = ready_shard().await;
    addr.send(SendCommand(Command::UpdatePresence(presence("kept"))))
        .await
        .expect("delivered")
        .expect("queued");
    mock.wait_until(PATIENCE, |seen| sent_ops_in(seen).contains(&3))
        .await
        .expect("presence sent");
    mock.invalid_session(&Target::Shard(0), false);
    recorded.wait_for_event("READY", 2).await;
    let identifies: Vec<String> = mock
        .observed()
        .connections
        .iter()
        .flat_map(|c| {
            c.received
                .iter()
                .filter(|p| p.op == Some(2))
                .map(|p| p.json.clone())
        })
        .collect();
    assert_eq!(identifies.len(), 2);
    assert!(!identifies[0].contains("kept"));
    assert!(
        identifies[1].contains(r#""name":"kept""#),
        "{}",
        identifies[1]
    );
}

fn sent_ops_in(seen: &discore_mock::Observed) -> Vec<u8> {
    seen.connections
        .iter()
        .flat_map(|c| c.received.iter().filter_map(|p| p.op))
        .collect()
}

/// Request Guild Members, Update Voice State and Request Soundboard Sounds
/// are answered by their events.
#[actix_rt::test]
async fn request_commands_get_their_answers() {
    let mock = MockServer::start(mock_config()).await.expect("emulator");
    let recorded = Recorded::start();
    // VOICE_STATE_UPDATE needs GUILD_VOICE_STATES.
    let intents = Intents::GUILDS | Intents::GUILD_VOICE_STATES;
    let addr = shard(shard_config(&mock).intents(intents), &recorded)
        .start()
        .await
        .expect("starts");
    let guild_id = mock.guild_ids()[0];
    let guild = Id::new(guild_id);
    let members = RequestGuildMembers::builder(guild)
        .nonce("who")
        .query("", Some(10));
    addr.send(SendCommand(Command::from(members)))
        .await
        .expect("delivered")
        .expect("queued");
    let channel = mock.voice_channel_id(guild_id).map(Id::new);
    let voice = UpdateVoiceStateInfo::new(guild, channel, false, true);
    addr.send(SendCommand(Command::UpdateVoiceState(voice)))
        .await
        .expect("delivered")
        .expect("queued");
    let sounds = RequestSoundboardSounds {
        guild_ids: vec![guild],
    };
    addr.send(SendCommand(Command::RequestSoundboardSounds(sounds)))
        .await
        .expect("delivered")
        .expect("queued");
    recorded.wait_for_event("GUILD_MEMBERS_CHUNK", 1).await;
    recorded.wait_for_event("VOICE_STATE_UPDATE", 1).await;
    recorded.wait_for_event("VOICE_SERVER_UPDATE", 1).await;
    recorded.wait_for_event("SOUNDBOARD_SOUNDS", 1).await;
    let events = recorded.events();
    let chunk = events.iter().find_map(|e| match e.typed() {
        Some(DispatchEvent::MemberChunk(chunk)) => Some(chunk.clone()),
        _ => None,
    });
    assert_eq!(chunk.and_then(|c| c.nonce), Some("who".to_owned()));
    assert_no_violations(&mock);
}

/// A presence that fits a presence update but would make the next Identify
/// longer than 4096 bytes is refused, and a shard configured with such a
/// presence does not start: otherwise no new session could ever begin (the
/// gateway closes an oversized Identify with 4002). Found by the commands
/// fuzz target.
#[actix_rt::test]
async fn a_presence_too_large_for_identify_is_refused() {
    let (mock, _recorded, addr) = ready_shard().await;
    let large = presence(&"p".repeat(3950));
    assert!(
        Command::UpdatePresence(large.clone()).encode().is_ok(),
        "the update alone fits"
    );
    let refused = addr
        .send(SendCommand(Command::UpdatePresence(large.clone())))
        .await
        .expect("delivered");
    assert!(
        matches!(refused, Err(CommandError::TooLarge { size }) if size > 4096),
        "{refused:?}"
    );
    addr.send(SendCommand(Command::UpdatePresence(presence("fits"))))
        .await
        .expect("delivered")
        .expect("a presence that fits is queued");

    let config = shard_config(&mock).presence(large);
    let error = discore::Shard::new(token(), discore::ShardId::new(0, 1), config)
        .start()
        .await
        .expect_err("the Identify would be refused");
    assert!(
        matches!(error, discore::ShardStartError::IdentifyTooLarge { size } if size > 4096),
        "{error:?}"
    );
    assert_no_violations(&mock);
}
