//! The emulator in its own process, so its CPU time and memory are never
//! counted as the client's.
//!
//! The benchmark starts its own executable with the hidden `emulator`
//! subcommand, which runs `discore_mock::MockServer` (the library behind the
//! `discore-mock` binary) on loopback, prints its gateway URL, and then takes
//! one command per line on standard input and answers one line each (`ok …`
//! or `err …`) on standard output. Closing standard input stops it; the
//! parent also kills it by its process id if it does not exit in time, and
//! it exits by itself after `--max-seconds`.

use anyhow::{Context as _, anyhow, bail};
use discore_mock::{MockConfig, MockServer, Target};
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, SocketAddr},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::mpsc;

/// How the emulator is configured (the `emulator` subcommand's flags).
#[derive(Clone, Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Guilds in the world.
    #[arg(long, default_value_t = 10)]
    pub guilds: u64,
    /// heartbeat_interval sent in Hello, in ms.
    #[arg(long, default_value_t = 41_250)]
    pub heartbeat_ms: u64,
    /// Identify buckets.
    #[arg(long, default_value_t = 1)]
    pub max_concurrency: u32,
    /// One identify per bucket per this many ms (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub identify_window_ms: u64,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// The process exits by itself after this long.
    #[arg(long, default_value_t = 3600)]
    pub max_seconds: u64,
}

impl Default for EmulatorArgs {
    fn default() -> Self {
        Self {
            guilds: 10,
            heartbeat_ms: 41_250,
            max_concurrency: 1,
            identify_window_ms: 0,
            workers: 1,
            max_seconds: 3600,
        }
    }
}

impl EmulatorArgs {
    fn to_cli(&self) -> Vec<String> {
        vec![
            "--guilds".into(),
            self.guilds.to_string(),
            "--heartbeat-ms".into(),
            self.heartbeat_ms.to_string(),
            "--max-concurrency".into(),
            self.max_concurrency.to_string(),
            "--identify-window-ms".into(),
            self.identify_window_ms.to_string(),
            "--workers".into(),
            self.workers.to_string(),
            "--max-seconds".into(),
            self.max_seconds.to_string(),
        ]
    }
}

/// The emulator's token (also what the clients identify with).
pub const TOKEN: &str = "mock-token";

/// Nanoseconds since the Unix epoch: the one clock both processes read
/// (`CLOCK_REALTIME`), for send-to-handler latency.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The content of a latency probe message.
pub fn latency_stamp(nanos: u128) -> String {
    format!("lat:{nanos}")
}

/// The send time in a latency probe message, if it is one (anything after
/// a space is filler).
pub fn parse_latency_stamp(content: &str) -> Option<u128> {
    let stamp = content.strip_prefix("lat:")?;
    stamp.split(' ').next()?.parse().ok()
}

/// Bytes of filler after the stamp in every probe to `shard`: 0 to 399, the
/// same for all of one shard's probes, different between neighbours.
///
/// Each session compresses its stream with a zlib window of its own, and
/// every 32 KiB of input that window slides: a rewrite of its hash tables,
/// tens of microseconds with them out of cache. Probes of one length to
/// every shard keep all the sessions' streams byte for byte alike, so all
/// of them slide within the same few milliseconds, again and again: a
/// burst of emulator work that stalls every connection at once, and that a
/// gateway whose sessions carry different traffic never has. Lengths that
/// differ by shard spread the slides out.
fn probe_filler(shard: u32) -> usize {
    (u64::from(shard) * 7_919 % 400) as usize
}

// ----- the parent's side -----

/// A running emulator process.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::UnboundedReceiver<String>,
    gateway_url: String,
    rest_url: String,
}

impl Emulator {
    /// Starts an emulator process and waits for its URL.
    pub async fn spawn(args: &EmulatorArgs) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(exe)
            .arg("emulator")
            .args(args.to_cli())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the emulator process")?;
        let stdout = child.stdout.take().context("emulator stdout")?;
        let stdin = child.stdin.take();
        let replies = read_lines(stdout);
        let mut emulator = Self {
            child,
            stdin,
            replies,
            gateway_url: String::new(),
            rest_url: String::new(),
        };
        let first = emulator.reply(Duration::from_secs(20)).await?;
        let urls = first
            .strip_prefix("gateway ")
            .and_then(|urls| urls.split_once(' '))
            .ok_or_else(|| anyhow!("unexpected first line from the emulator: {first}"))?;
        emulator.gateway_url = urls.0.to_owned();
        emulator.rest_url = urls.1.to_owned();
        Ok(emulator)
    }

    /// CPU time the emulator process used so far (all its threads).
    pub fn cpu_time(&self) -> Duration {
        crate::stats::cpu_time_of(&self.child.id().to_string())
    }

    /// The discovery URL, `ws://127.0.0.1:PORT/`.
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The REST base, `http://127.0.0.1:PORT/api/v10`.
    pub fn rest_url(&self) -> &str {
        &self.rest_url
    }

    /// Sends a command without waiting for its answer.
    pub fn send(&mut self, command: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the emulator was stopped")?;
        writeln!(stdin, "{command}").context("writing to the emulator")?;
        stdin.flush().context("writing to the emulator")?;
        Ok(())
    }

    /// The next answer, without its `ok ` prefix.
    pub async fn reply(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let line = actix_rt::time::timeout(timeout, self.replies.recv())
            .await
            .map_err(|_| anyhow!("the emulator did not answer within {timeout:?}"))?
            .ok_or_else(|| anyhow!("the emulator process ended"))?;
        if let Some(rest) = line.strip_prefix("ok") {
            Ok(rest.trim_start().to_owned())
        } else if line.starts_with("gateway ") {
            Ok(line)
        } else {
            bail!("emulator: {line}")
        }
    }

    /// Sends a command and waits for its answer.
    pub async fn call(&mut self, command: &str, timeout: Duration) -> anyhow::Result<String> {
        self.send(command)?;
        self.reply(timeout).await
    }

    /// Open gateway connections.
    pub async fn connections(&mut self) -> anyhow::Result<usize> {
        Ok(self
            .call("connections", Duration::from_secs(10))
            .await?
            .parse()?)
    }

    /// Protocol violations the emulator recorded, as a count and their
    /// kinds.
    pub async fn violations(&mut self) -> anyhow::Result<(usize, String)> {
        let answer = self.call("violations", Duration::from_secs(10)).await?;
        let (count, kinds) = answer.split_once(' ').unwrap_or((&answer, ""));
        Ok((count.parse()?, kinds.to_owned()))
    }

    /// Gaps between consecutive Identifies of a bucket as stamped by the
    /// emulator: how many, the smallest and the median, in ms.
    pub async fn identify_gaps(&mut self) -> anyhow::Result<String> {
        self.call("identify_gaps", Duration::from_secs(10)).await
    }

    /// The transport compression of every open connection, as the
    /// emulator's `Compression` debug names (`None`, `ZlibStream`, …).
    pub async fn compressions(&mut self) -> anyhow::Result<Vec<String>> {
        let answer = self.call("compressions", Duration::from_secs(10)).await?;
        Ok(answer
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Waits until at most `open` connections remain (clients closing).
    pub async fn settle(&mut self, open: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let now_open = self.connections().await?;
            if now_open <= open {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{now_open} connections still open after {timeout:?}");
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process: asks it to quit, then kills it by its pid.
    pub async fn stop(mut self) {
        let _ = self.send("quit");
        self.stdin = None;
        wait_or_kill(&mut self.child, Duration::from_secs(5)).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Only reached without `stop` (an error path): never leave it behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits up to `timeout` for `child` to exit, then kills it (by its pid).
pub async fn wait_or_kill(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    log::warn!("process {} did not exit in time: killing it", child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Forwards each line of `source` to the returned channel (from a thread,
/// so the actix thread never blocks on a pipe).
pub fn read_lines(source: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

// ----- the child's side -----

/// Runs the emulator until standard input closes, `quit`, or `max_seconds`.
pub fn serve(args: &EmulatorArgs) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(serve_async(args.clone()))
}

async fn serve_async(args: EmulatorArgs) -> anyhow::Result<()> {
    let ms = Duration::from_millis;
    let config = MockConfig::new()
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .token(TOKEN)
        .guilds(args.guilds)
        .heartbeat_interval(ms(args.heartbeat_ms))
        .max_concurrency(args.max_concurrency)
        .identify_window(ms(args.identify_window_ms))
        .session_start_limit(1_000_000, 1_000_000, Duration::from_secs(86_400))
        .rest_rate_limit(None)
        .max_recorded_payloads(16)
        .workers(args.workers);
    let mock = MockServer::start(config)
        .await
        .context("starting the emulator")?;
    println!("gateway {} {}", mock.gateway_url(), mock.rest_url());
    let mut commands = read_lines(std::io::stdin());
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(line)) = actix_rt::time::timeout(left, commands.recv()).await else {
            break;
        };
        if line.trim() == "quit" {
            println!("ok");
            break;
        }
        match execute(&mock, &line).await {
            Ok(answer) => println!("ok {answer}"),
            Err(error) => println!("err {error:#}"),
        }
    }
    mock.stop().await;
    Ok(())
}

async fn execute(mock: &MockServer, line: &str) -> anyhow::Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["flood", count] => {
            let count: u64 = count.parse()?;
            let flood = mock.flood(&Target::All, count);
            let report = actix_rt::time::timeout(Duration::from_secs(600), flood.finished())
                .await
                .map_err(|_| anyhow!("flood still running after 600 s"))?;
            Ok(format!("{} {}", report.connections, report.sent))
        }
        ["drop"] => Ok(mock.drop_connection(&Target::All).to_string()),
        ["ticker", rate, count] => {
            let rate: f64 = rate.parse()?;
            let count: u64 = count.parse()?;
            ticker(mock, rate, count).await
        }
        ["ticker-shards", rate, count, shards, streams] => {
            let rate: f64 = rate.parse()?;
            let count: u64 = count.parse()?;
            let shards: u32 = shards.parse()?;
            let identical = match *streams {
                "varied" => false,
                "identical" => true,
                other => bail!("streams must be varied or identical, not {other:?}"),
            };
            ticker_shards(mock, rate, count, shards, identical).await
        }
        ["sent-at", path] => sent_at(mock, path),
        ["connections"] => Ok(mock.with_observed(|o| o.open_connections()).to_string()),
        ["violations"] => Ok(mock.with_observed(|o| {
            let kinds: Vec<String> = o
                .violations
                .iter()
                .map(|v| format!("{:?}", v.kind))
                .collect();
            format!("{} {}", kinds.len(), kinds.join(","))
        })),
        ["identify_gaps"] => Ok(mock.with_observed(identify_gaps)),
        ["compressions"] => Ok(mock.with_observed(|o| {
            let open: Vec<String> = o
                .connections
                .iter()
                .filter(|c| c.is_open())
                .map(|c| format!("{:?}", c.compression))
                .collect();
            open.join(",")
        })),
        _ => bail!("unknown command {line:?}"),
    }
}

/// Posts `count` messages at `rate` per second, each carrying its send time.
async fn ticker(mock: &MockServer, rate: f64, count: u64) -> anyhow::Result<String> {
    let guild = *mock.guild_ids().first().context("no guilds")?;
    let channel = *mock
        .text_channel_ids(guild)
        .first()
        .context("no text channel")?;
    let start = Instant::now();
    let mut delivered = 0;
    for i in 0..count {
        let at = start + Duration::from_secs_f64(i as f64 / rate.max(1.0));
        actix_rt::time::sleep_until(at.into()).await;
        let (_, deliveries) = mock.post_message(channel, &latency_stamp(unix_nanos()))?;
        delivered += deliveries.len();
    }
    Ok(delivered.to_string())
}

/// Dispatches `count` MESSAGE_CREATEs at `rate` per second to shards 0, 1,
/// …, `shards` − 1 in turn (message `i` to shard `i % shards`), each
/// carrying its send time: the latency of a whole fleet under one rate.
/// Each shard's probes carry [`probe_filler`] bytes after the stamp, or,
/// with `identical`, none, so that every session's stream is the same.
async fn ticker_shards(
    mock: &MockServer,
    rate: f64,
    count: u64,
    shards: u32,
    identical: bool,
) -> anyhow::Result<String> {
    let guild = *mock.guild_ids().first().context("no guilds")?;
    let channel = *mock
        .text_channel_ids(guild)
        .first()
        .context("no text channel")?;
    let member = *mock.member_ids(guild).first().context("no members")?;
    let mut message = serde_json::json!({
        "id": "0", "channel_id": channel.to_string(), "guild_id": guild.to_string(),
        "author": {"id": member.to_string(), "username": "member", "discriminator": "0",
                   "global_name": "A Member", "avatar": null, "public_flags": 0},
        "member": {"roles": [], "joined_at": "2024-01-01T00:00:00.000000+00:00",
                   "deaf": false, "mute": false, "flags": 0},
        "content": "", "timestamp": "2024-01-01T00:00:00.000000+00:00",
        "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
        "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        "flags": 0, "channel_type": 0
    });
    // Noted from here until `sent-at` takes them: the last probes reach
    // their sockets after the last dispatch returns.
    mock.record_send_times(true);
    drop(mock.take_send_times());
    let start = Instant::now();
    let mut delivered = 0;
    for i in 0..count {
        let at = start + Duration::from_secs_f64(i as f64 / rate.max(1.0));
        actix_rt::time::sleep_until(at.into()).await;
        message["id"] = serde_json::Value::String((1_000_000 + i).to_string());
        let shard = u32::try_from(i % u64::from(shards.max(1)))?;
        let mut content = latency_stamp(unix_nanos());
        if !identical {
            content.push(' ');
            content.extend(std::iter::repeat_n('x', probe_filler(shard)));
        }
        message["content"] = serde_json::Value::String(content);
        delivered += mock
            .dispatch(Some(&Target::Shard(shard)), "MESSAGE_CREATE", &message)
            .len();
    }
    Ok(delivered.to_string())
}

/// Stops noting send times and writes those noted since the last
/// `ticker-shards` to `path`, one `"{shard} {sequence} {unix_nanos}"` line
/// each: `"{count} {lost}"`.
fn sent_at(mock: &MockServer, path: &str) -> anyhow::Result<String> {
    mock.record_send_times(false);
    let times = mock.take_send_times();
    let file = std::fs::File::create(path).with_context(|| format!("creating {path}"))?;
    let mut out = std::io::BufWriter::new(file);
    for sent in &times.sent {
        let nanos = sent
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        writeln!(out, "{} {} {nanos}", sent.shard, sent.sequence)?;
    }
    out.flush()?;
    Ok(format!("{} {}", times.sent.len(), times.lost))
}

/// Reads what [`sent_at`] wrote: send times in ns since the Unix epoch by
/// shard and sequence.
pub fn read_sent_at(path: &std::path::Path) -> anyhow::Result<HashMap<(u32, u64), u128>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sent = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(shard), Some(sequence), Some(nanos), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("a send time line is not \"shard sequence nanos\": {line:?}");
        };
        sent.insert((shard.parse()?, sequence.parse()?), nanos.parse()?);
    }
    Ok(sent)
}

/// The gaps between consecutive Identifies of one bucket as the emulator
/// stamped them: `"{count} {smallest_ms} {median_ms}"` (`"0 - -"` when no
/// bucket had two).
fn identify_gaps(observed: &discore_mock::Observed) -> String {
    let mut last: std::collections::HashMap<u32, Duration> = std::collections::HashMap::new();
    let mut gaps: Vec<Duration> = Vec::new();
    for identify in &observed.identifies {
        if let Some(previous) = last.insert(identify.bucket, identify.at) {
            gaps.push(identify.at.saturating_sub(previous));
        }
    }
    gaps.sort_unstable();
    match (gaps.first(), gaps.get(gaps.len() / 2)) {
        (Some(smallest), Some(median)) => format!(
            "{} {:.3} {:.3}",
            gaps.len(),
            smallest.as_secs_f64() * 1000.0,
            median.as_secs_f64() * 1000.0
        ),
        _ => "0 - -".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{latency_stamp, parse_latency_stamp, probe_filler};

    #[test]
    fn stamps_round_trip() {
        assert_eq!(parse_latency_stamp(&latency_stamp(42)), Some(42));
        assert_eq!(parse_latency_stamp("hello"), None);
        assert_eq!(parse_latency_stamp("lat:42 xxxx"), Some(42));
    }

    #[test]
    fn neighbouring_shards_get_probes_of_different_lengths() {
        let lengths: Vec<usize> = (0..1_000).map(probe_filler).collect();
        assert!(lengths.iter().all(|&n| n < 400));
        assert!(lengths.windows(2).all(|pair| pair[0] != pair[1]));
        let distinct: std::collections::HashSet<usize> = lengths.iter().copied().collect();
        assert!(distinct.len() >= 300, "{} distinct lengths", distinct.len());
    }
}
