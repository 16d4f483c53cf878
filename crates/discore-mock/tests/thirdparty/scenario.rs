//! What every library must do against the emulator, in order: READY on
//! every shard, every guild, its own message through its own REST client
//! and messages created through REST, then a resume with the missed
//! dispatches replayed after op 7 and after a dropped connection. The
//! emulator's record must show the replay on the new connection and none
//! of those dispatches written to the old one.

use super::{bot::Bot, emulator::Emulator};
use discore_mock::{Compression, ConnectionRecord, Observed, ResumeOutcome};
use serde_json::json;
use std::collections::BTreeSet;

/// One library in one configuration.
pub struct Case {
    /// Also the prefix of its log files.
    pub name: &'static str,
    pub shards: u32,
    /// The transport compression the library asks for.
    pub compression: Compression,
}

/// Dispatches made to miss the client in each resume.
const MISSED: usize = 3;

/// How a connection is made to end before the resume.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// Op 7 Reconnect: the client closes and resumes.
    Reconnect,
    /// The TCP connection is dropped without a close frame.
    Drop,
}

/// The guild ids of the emulator's world, and a text channel of each.
async fn world(emulator: &Emulator) -> Vec<(u64, String)> {
    let world = emulator.world().await;
    world["guilds"]
        .as_array()
        .expect("guilds")
        .iter()
        .map(|g| {
            let id = g["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("a guild id");
            let channel = g["text_channels"][0]
                .as_str()
                .expect("a text channel")
                .to_owned();
            (id, channel)
        })
        .collect()
}

fn shard_of(guild: u64, total: u32) -> u64 {
    (guild >> 22) % u64::from(total)
}

/// The open connection of shard 0 (the one a fault goes to).
fn shard_zero(seen: &Observed, total: u32) -> Option<&ConnectionRecord> {
    seen.connections
        .iter()
        .rev()
        .find(|c| c.is_open() && c.shard == Some([0, total]) && c.session_id.is_some())
}

pub async fn run(case: &Case, emulator: &Emulator, bot: &mut Bot) {
    let guilds = world(emulator).await;

    // READY on every shard, then every guild.
    for shard in 0..case.shards {
        bot.wait_for(&format!("READY on shard {shard}"), |l| l["ready"] == shard)
            .await;
    }
    let expected: BTreeSet<String> = guilds.iter().map(|(id, _)| id.to_string()).collect();
    for id in &expected {
        bot.wait_for(&format!("guild {id}"), |l| l["guild"] == id.as_str())
            .await;
    }
    let reported: BTreeSet<String> = bot
        .seen
        .iter()
        .filter_map(|l| l["guild"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reported, expected, "{}: the guilds the bot saw", case.name);

    // Its own message, through its own REST client, comes back as an event.
    let sent = bot
        .wait_for("its own message sent", |l| l["sent"].is_string())
        .await;
    let sent = sent["sent"].as_str().unwrap_or_default().to_owned();
    bot.wait_for("its own MESSAGE_CREATE", |l| l["message"] == sent.as_str())
        .await;

    // Messages created through REST.
    for (n, (_, channel)) in guilds.iter().enumerate() {
        let content = format!("created through REST {n}");
        let message = emulator.create_message(channel, &content).await;
        let id = message["id"].as_str().expect("a message id").to_owned();
        bot.wait_for(&format!("MESSAGE_CREATE {content}"), |l| {
            l["message"] == id.as_str() && l["content"] == content.as_str()
        })
        .await;
    }

    resume(case, emulator, bot, &guilds, Trigger::Reconnect).await;
    resume(case, emulator, bot, &guilds, Trigger::Drop).await;

    let seen = emulator.observed().await;
    for connection in seen.connections.iter().filter(|c| c.shard.is_some()) {
        assert_eq!(
            connection.compression, case.compression,
            "{}: connection {:?} ({})",
            case.name, connection.id, connection.query
        );
    }
    assert!(
        seen.violations.is_empty(),
        "{}: violations {:#?}",
        case.name,
        seen.violations
    );
}

/// Ends shard 0's connection with `trigger` while resumes are held, routes
/// dispatches to the session while the client waits for its Resume to be
/// answered, then lets the Resume through: the client must get exactly
/// those dispatches, replayed on the new connection.
async fn resume(
    case: &Case,
    emulator: &Emulator,
    bot: &mut Bot,
    guilds: &[(u64, String)],
    trigger: Trigger,
) {
    let what = format!("{}, resume after {trigger:?}", case.name);
    let seen = emulator.observed().await;
    let old = shard_zero(&seen, case.shards)
        .unwrap_or_else(|| panic!("{what}: shard 0 has an open connection"))
        .id;
    let resumed_before = bot.count(|l| l["resumed"] == 0);
    emulator
        .control("/hold_resumes", &json!({ "hold": true }))
        .await;
    let fault = match trigger {
        Trigger::Reconnect => json!({ "type": "reconnect" }),
        Trigger::Drop => json!({ "type": "drop_tcp" }),
    };
    let reached = emulator
        .control(
            "/fault",
            &json!({ "target": { "connection": old }, "fault": fault }),
        )
        .await;
    assert_eq!(
        reached["connections"], 1,
        "{what}: the fault reached the connection"
    );

    // The old connection is gone and the client's Resume waits on a new one
    // to the resume URL.
    let seen = emulator
        .wait_until(&format!("{what}: a held Resume"), |o| {
            o.connection(old).is_some_and(|c| !c.is_open())
                && o.connections
                    .iter()
                    .any(|c| c.id > old && c.on_resume_url && c.received_ops().contains(&Some(6)))
        })
        .await;
    let new = seen
        .connections
        .iter()
        .find(|c| c.id > old && c.on_resume_url && c.received_ops().contains(&Some(6)))
        .map(|c| c.id)
        .expect("the new connection");

    // Dispatches for shard 0 while the session has no connection.
    let (_, channel) = guilds
        .iter()
        .find(|(id, _)| shard_of(*id, case.shards) == 0)
        .expect("shard 0 owns a guild");
    let mut missed = Vec::new();
    for n in 0..MISSED {
        let content = format!("missed during {trigger:?} {n}");
        let posted = emulator
            .control(
                "/messages",
                &json!({ "channel_id": channel, "content": content }),
            )
            .await;
        let delivery = &posted["deliveries"][0];
        assert!(
            delivery["connection"].is_null(),
            "{what}: the session had no connection when {content} was routed: {posted}"
        );
        let sequence = delivery["sequence"].as_u64().expect("a sequence");
        let id = posted["message"]["id"].as_str().expect("an id").to_owned();
        missed.push((id, content, sequence));
    }
    emulator
        .control("/hold_resumes", &json!({ "hold": false }))
        .await;

    bot.wait_for_count(&format!("{what}: RESUMED"), resumed_before + 1, |l| {
        l["resumed"] == 0
    })
    .await;
    for (id, content, _) in &missed {
        bot.wait_for(&format!("{what}: replayed {content}"), |l| {
            l["message"] == id.as_str() && l["content"] == content.as_str()
        })
        .await;
    }

    // The emulator's own record: replayed on the new connection, never
    // written to the old one.
    let first = missed.iter().map(|m| m.2).min().unwrap_or_default();
    let last = missed.iter().map(|m| m.2).max().unwrap_or_default();
    let seen = emulator
        .wait_until(&format!("{what}: the replay written"), |o| {
            o.connection(new)
                .and_then(|c| c.last_sequence_written)
                .is_some_and(|s| s >= last)
        })
        .await;
    let record = seen
        .resumes
        .iter()
        .rev()
        .find(|r| r.connection == new)
        .unwrap_or_else(|| panic!("{what}: no Resume recorded on the new connection"));
    assert!(
        matches!(record.outcome, ResumeOutcome::Resumed { replayed } if replayed >= MISSED as u64),
        "{what}: {record:?}"
    );
    assert!(
        record.replayed_from.is_some_and(|f| f <= first)
            && record.replayed_to.is_some_and(|t| t >= last),
        "{what}: replayed {:?}..={:?}, missed {first}..={last}",
        record.replayed_from,
        record.replayed_to
    );
    assert!(
        record.on_resume_url,
        "{what}: resumed on resume_gateway_url"
    );
    let old = seen.connection(old).expect("the old connection's record");
    assert!(
        old.last_sequence_written.is_none_or(|s| s < first),
        "{what}: the old connection wrote up to {:?}, the missed ones start at {first}",
        old.last_sequence_written
    );
}
