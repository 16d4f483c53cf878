//! `discore-mock`: run the Discord gateway emulator from the command line.
//!
//! ```text
//! cargo run -p discore-mock -- --guilds 5000
//! ```

use anyhow::Context as _;
use clap::Parser;
use discore_mock::{
    BadSequenceBehaviour, Intents, MockConfig, MockServer, RestRateLimit, TrafficConfig,
};
use std::{net::SocketAddr, time::Duration};

/// A local emulator of Discord's Gateway and REST routes.
#[derive(Debug, Parser)]
#[command(name = "discore-mock", version)]
struct Args {
    /// Port on 127.0.0.1 of the gateway URL, REST and /_mock (0 picks a
    /// free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Port on 127.0.0.1 of the resume URL, READY's resume_gateway_url (0
    /// picks a free one).
    #[arg(long, default_value_t = 0)]
    resume_port: u16,
    /// READY's resume_gateway_url names the session (ws://HOST:PORT/<id>).
    #[arg(long)]
    session_resume_urls: bool,
    /// Bot token: raw in Identify, `Bot <token>` in REST.
    #[arg(long, default_value = "mock-token", hide_default_value = false)]
    token: String,
    /// Seed of the synthetic world.
    #[arg(long, default_value_t = 0x00D1_5C0E)]
    seed: u64,
    /// Guilds the bot is in.
    #[arg(long, default_value_t = 3)]
    guilds: u64,
    /// Members per guild besides the bot.
    #[arg(long, default_value_t = 8)]
    members_per_guild: u32,
    /// Text channels per guild.
    #[arg(long, default_value_t = 3)]
    channels_per_guild: u32,
    /// Guilds a shard may hold before 4011; divides the recommended count.
    #[arg(long, default_value_t = 2500)]
    max_guilds_per_shard: u64,
    /// `max_concurrency` of /gateway/bot.
    #[arg(long, default_value_t = 1)]
    max_concurrency: u32,
    /// One identify per bucket per this many ms.
    #[arg(long, default_value_t = 5000)]
    identify_window_ms: u64,
    /// Daily session starts in total.
    #[arg(long, default_value_t = 1000)]
    session_start_total: u32,
    /// Session starts remaining at start.
    #[arg(long)]
    session_start_remaining: Option<u32>,
    /// Milliseconds until the session start budget resets.
    #[arg(long, default_value_t = 86_400_000)]
    session_start_reset_after_ms: u64,
    /// heartbeat_interval sent in Hello, in ms.
    #[arg(long, default_value_t = 41_250)]
    heartbeat_interval_ms: u64,
    /// Grace after the interval before a silent connection is closed, in ms
    /// (default: half the interval, at least 1000).
    #[arg(long)]
    heartbeat_grace_ms: Option<u64>,
    /// Client payloads allowed per send window.
    #[arg(long, default_value_t = 120)]
    send_limit: u32,
    /// The send window in ms.
    #[arg(long, default_value_t = 60_000)]
    send_window_ms: u64,
    /// Presence updates allowed per presence window.
    #[arg(long, default_value_t = 5)]
    presence_limit: u32,
    /// The presence window in ms.
    #[arg(long, default_value_t = 20_000)]
    presence_window_ms: u64,
    /// How long a disconnected session stays resumable, in ms.
    #[arg(long, default_value_t = 180_000)]
    session_keep_alive_ms: u64,
    /// Privileged intents granted, as a bitfield (2 | 256 | 32768 = all).
    #[arg(long, default_value_t = 33_026)]
    granted_intents: u64,
    /// Close the socket after every op 9.
    #[arg(long)]
    invalid_session_closes: bool,
    /// Answer a Resume with a bad seq with op 9 instead of closing 4007.
    #[arg(long)]
    bad_seq_invalid_session: bool,
    /// Dispatches kept per session for replay.
    #[arg(long, default_value_t = 10_000)]
    replay_buffer: usize,
    /// REST requests per window per route bucket (0 disables the limit).
    #[arg(long, default_value_t = 50)]
    rest_rate_limit: u32,
    /// The REST rate-limit window in ms.
    #[arg(long, default_value_t = 1000)]
    rest_rate_window_ms: u64,
    /// One all-members request per guild per this many ms.
    #[arg(long, default_value_t = 30_000)]
    all_members_window_ms: u64,
    /// After op 7, close with 4000 after this many ms (0: never).
    #[arg(long, default_value_t = 5000)]
    reconnect_close_after_ms: u64,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Largest payload of one outbound WebSocket frame, in bytes; larger
    /// messages are fragmented (default: unlimited, one frame per message).
    #[arg(long)]
    max_frame_payload: Option<usize>,
    /// Traffic generator events per second per shard (0: off).
    #[arg(long, default_value_t = 0.0)]
    traffic_rate: f64,
}

fn config(args: &Args) -> MockConfig {
    let ms = Duration::from_millis;
    let mut config = MockConfig::new()
        .bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .resume_bind(SocketAddr::from(([127, 0, 0, 1], args.resume_port)))
        .session_resume_urls(args.session_resume_urls)
        .token(&args.token)
        .seed(args.seed)
        .guilds(args.guilds)
        .members_per_guild(args.members_per_guild)
        .channels_per_guild(args.channels_per_guild)
        .max_guilds_per_shard(args.max_guilds_per_shard)
        .max_concurrency(args.max_concurrency)
        .identify_window(ms(args.identify_window_ms))
        .session_start_limit(
            args.session_start_total,
            args.session_start_remaining
                .unwrap_or(args.session_start_total),
            ms(args.session_start_reset_after_ms),
        )
        .heartbeat_interval(ms(args.heartbeat_interval_ms))
        .send_limit(args.send_limit, ms(args.send_window_ms))
        .presence_limit(args.presence_limit, ms(args.presence_window_ms))
        .session_keep_alive(ms(args.session_keep_alive_ms))
        .granted_intents(Intents::from_bits_truncate(args.granted_intents))
        .invalid_session_closes(args.invalid_session_closes)
        .replay_buffer(args.replay_buffer)
        .rest_rate_limit((args.rest_rate_limit > 0).then(|| RestRateLimit {
            limit: args.rest_rate_limit,
            window: ms(args.rest_rate_window_ms),
        }))
        .all_members_window(ms(args.all_members_window_ms))
        .reconnect_close_after(
            (args.reconnect_close_after_ms > 0).then(|| ms(args.reconnect_close_after_ms)),
        )
        .workers(args.workers);
    if let Some(grace) = args.heartbeat_grace_ms {
        config = config.heartbeat_grace(ms(grace));
    }
    if let Some(bytes) = args.max_frame_payload {
        config = config.max_frame_payload(bytes);
    }
    if args.bad_seq_invalid_session {
        config = config.bad_sequence(BadSequenceBehaviour::InvalidSession);
    }
    config
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mock = MockServer::start(config(&args))
        .await
        .context("starting the emulator")?;
    println!("gateway: {}", mock.gateway_url());
    println!("resume:  {}", mock.resume_url());
    println!("rest:    {}", mock.rest_url());
    println!("token:   (as given with --token)");
    println!(
        "guilds:  {} (recommended shards: {})",
        mock.guild_ids().len(),
        mock.recommended_shards()
    );
    println!("control: http://{}/_mock/observed", mock.addr());
    if args.traffic_rate > 0.0 {
        mock.start_traffic(TrafficConfig::per_shard(args.traffic_rate));
    }
    actix_rt::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    log::info!("stopping");
    mock.stop().await;
    Ok(())
}
