//! Holds many idle, heartbeating gateway connections and reports what the
//! emulator saw.
//!
//! ```text
//! ulimit -n 65536
//! cargo run --release -p discore-mock --example idle_bench -- 5000 30
//! ```
//!
//! Arguments: connections (default 5000) and seconds to hold them (default
//! 30). Each connection identifies as its own shard of `connections` with a
//! 1 s heartbeat interval, then heartbeats until the end. The client runs in
//! the same process, so the numbers are an upper bound for the emulator.

use discore_mock::{MockConfig, MockServer};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let connections: u32 = args.next().map_or(Ok(5000), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let interval = Duration::from_secs(1);
    let mock = MockServer::start(
        MockConfig::new()
            .guilds(u64::from(connections))
            .members_per_guild(2)
            .max_concurrency(connections.max(1))
            .identify_window(Duration::from_millis(1))
            .session_start_limit(1_000_000, 1_000_000, Duration::from_secs(86_400))
            .heartbeat_interval(interval)
            .workers(1),
    )
    .await?;
    let url = format!("{}/?v=10&encoding=json", mock.gateway_url());
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for shard in 0..connections {
        let url = url.clone();
        tasks.push(actix_rt::spawn(async move {
            let (_, mut framed) = awc::Client::new()
                .ws(url)
                .max_frame_size(16 << 20)
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
            let identify = format!(
                r#"{{"op":2,"d":{{"token":"mock-token","intents":1,"shard":[{shard},{connections}],"properties":{{"os":"linux","browser":"bench","device":"bench"}}}}}}"#
            );
            framed.send(awc::ws::Message::Text(identify.into())).await?;
            let mut ticker = actix_rt::time::interval_at(
                (Instant::now() + interval / 2).into(),
                interval,
            );
            while Instant::now() < end {
                tokio::select! {
                    _ = ticker.tick() => {
                        framed.send(awc::ws::Message::Text(r#"{"op":1,"d":null}"#.into())).await?;
                    }
                    frame = framed.next() => {
                        if frame.is_none() {
                            anyhow::bail!("shard {shard}: connection ended");
                        }
                    }
                }
            }
            framed
                .send(awc::ws::Message::Close(Some(awc::ws::CloseCode::Normal.into())))
                .await?;
            anyhow::Ok(())
        }));
        if shard % 100 == 99 {
            // Let the emulator breathe while the fleet connects.
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
    if mock
        .wait_until(Duration::from_secs(120), |o| {
            o.identifies_total() as u32 >= connections
        })
        .await
        .is_err()
    {
        let seen = mock.observed();
        anyhow::bail!(
            "only {} of {connections} identified ({} connections seen, {} open, violations {:?})",
            seen.identifies_total(),
            seen.connections.len(),
            seen.open_connections(),
            seen.violations.first()
        );
    }
    println!(
        "{connections} sessions ready {:.1} s after the first connect",
        started.elapsed().as_secs_f64()
    );
    let mut failed = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let seen = mock.observed();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!(
        "held {seconds} s: {} heartbeats, {} violations, {failed} client errors, peak {rss}",
        seen.heartbeats.len(),
        seen.violations.len(),
    );
    for violation in seen.violations.iter().take(5) {
        println!("  {violation:?}");
    }
    mock.stop().await;
    Ok(())
}
