//! twilight-gateway shards and a twilight-http client, unchanged, in this
//! process, reporting what they see as the other bots do.
//!
//! twilight-gateway picks its transport compression when it is compiled:
//! this crate builds it with `zstd`, so these shards speak zstd-stream.

use super::{bot::Bot, emulator::Emulator, emulator::TOKEN};
use serde_json::{Value, json};
use std::{path::PathBuf, time::Duration};
use tokio::sync::mpsc;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
    queue::InMemoryQueue,
};

/// Starts `shards` shards and returns the bot their reports come from.
pub fn start(emulator: &Emulator, shards: u32, log: PathBuf) -> Bot {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    // Both shards in their own identify bucket (the emulator's
    // max_concurrency), 5 s apart within one as twilight's queue keeps them.
    let queue = InMemoryQueue::new(
        u16::try_from(shards).unwrap_or(1),
        1000,
        Duration::from_secs(86_400),
        1000,
    );
    // The settings twilight needs: the gateway URL (the proxy URL, which
    // twilight-gateway connects to instead of Discord's), and the REST
    // host through twilight-http's proxy over plain HTTP.
    let rest_host = emulator.base.trim_start_matches("http://").to_owned();
    // twilight-http builds a TLS client even for a plain-HTTP proxy.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = std::sync::Arc::new(
        twilight_http::Client::builder()
            .token(TOKEN.to_owned())
            .proxy(rest_host, true)
            .build(),
    );
    for id in 0..shards {
        let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
            .proxy_url(emulator.gateway.clone())
            .queue(queue.clone())
            .build();
        let mut shard = Shard::with_config(ShardId::new(id, shards), config);
        let tx = tx.clone();
        let http = std::sync::Arc::clone(&http);
        actix_rt::spawn(async move {
            let mut sent_hello = false;
            while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
                let report = |line: Value| {
                    let _ = tx.send(line);
                };
                match item {
                    Ok(Event::Ready(ready)) => {
                        report(json!({ "ready": id, "session": ready.session_id }))
                    }
                    Ok(Event::GuildCreate(guild)) => {
                        report(json!({ "guild": guild.id().to_string(), "shard": id }));
                        if let twilight_model::gateway::payload::incoming::GuildCreate::Available(
                            guild,
                        ) = &*guild
                            && id == 0
                            && !sent_hello
                        {
                            sent_hello = true;
                            let channel = guild.channels.iter().find(|c| {
                                c.kind == twilight_model::channel::ChannelType::GuildText
                            });
                            if let Some(channel) = channel {
                                match http
                                    .create_message(channel.id)
                                    .content("hello from twilight")
                                    .await
                                {
                                    Ok(response) => match response.model().await {
                                        Ok(message) => {
                                            report(json!({ "sent": message.id.to_string() }))
                                        }
                                        Err(e) => eprintln!("twilight-http: {e}"),
                                    },
                                    Err(e) => eprintln!("twilight-http: {e}"),
                                }
                            }
                        }
                    }
                    Ok(Event::MessageCreate(message)) => report(json!({
                        "message": message.id.to_string(),
                        "content": message.content,
                        "shard": id,
                    })),
                    Ok(Event::Resumed) => report(json!({ "resumed": id })),
                    Ok(_) => {}
                    Err(e) => eprintln!("twilight-gateway shard {id}: {e}"),
                }
            }
        });
    }
    Bot::in_process(rx, log)
}
