//! twilight-gateway's side, the reference: one task per shard polling
//! `next_event` with only READY and MESSAGE_CREATE wanted, handling each
//! event inline in the loop (twilight's usual shape, no actor hop).
//!
//! twilight picks its transport compression at compile time. This crate
//! builds it with zlib-stream by default; its uncompressed runs then point
//! it at `ws://…/?v=10&encoding=json#`, so the `&compress=zlib-stream`
//! twilight appends lands in the URL fragment, which is never sent: the
//! emulator sends plain text frames, which twilight reads without touching
//! its decompressor. (The decompressor is still allocated per shard, so
//! idle memory without compression is only exact in a build without the
//! `twilight-zlib` feature.)

use crate::{
    decode::Codec,
    emulator::{Emulator, TOKEN},
    harness,
    stats::Throughput,
    tally::Tally,
};
use actix_rt::task::JoinHandle;
use anyhow::{anyhow, bail};
use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};
use tokio::sync::oneshot;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Shard, ShardId, StreamExt as _, queue::Queue,
};

/// Whether this build of twilight-gateway can run with `codec`.
pub const fn supports(codec: Codec) -> bool {
    match codec {
        Codec::None => true,
        Codec::Zlib => cfg!(feature = "twilight-zlib"),
        Codec::Zstd => false,
    }
}

/// The base URL twilight appends `/?v=10&encoding=json…` to.
fn base_url(gateway_url: &str, codec: Codec) -> anyhow::Result<String> {
    let base = gateway_url.trim_end_matches('/');
    match codec {
        Codec::None if cfg!(feature = "twilight-zlib") => {
            Ok(format!("{base}/?v=10&encoding=json#"))
        }
        codec if supports(codec) => Ok(base.to_owned()),
        codec => bail!("this build of twilight-gateway cannot do {}", codec.label()),
    }
}

/// Lets every shard identify at once (the emulator enforces no window).
#[derive(Debug)]
struct ImmediateQueue;

impl Queue for ImmediateQueue {
    fn enqueue(&self, _shard: u32) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        let _ = sender.send(());
        receiver
    }
}

/// One running twilight shard.
pub struct TwilightShard {
    /// Counts MESSAGE_CREATEs.
    pub tally: Rc<RefCell<Tally>>,
    task: JoinHandle<()>,
}

impl TwilightShard {
    /// Starts shard `[id, total]` and waits for READY.
    pub async fn start(
        gateway_url: &str,
        codec: Codec,
        id: u32,
        total: u32,
    ) -> anyhow::Result<Self> {
        let config = ConfigBuilder::new(TOKEN.to_owned(), crate::intents())
            .proxy_url(base_url(gateway_url, codec)?)
            .queue(ImmediateQueue)
            .build();
        let mut shard = Shard::with_config(ShardId::new(id, total), config);
        let tally = Rc::new(RefCell::new(Tally::default()));
        let ready = Rc::new(Cell::new(false));
        let task = {
            let tally = Rc::clone(&tally);
            let ready = Rc::clone(&ready);
            actix_rt::spawn(async move {
                let wanted = EventTypeFlags::READY | EventTypeFlags::MESSAGE_CREATE;
                while let Some(item) = shard.next_event(wanted).await {
                    match item {
                        Ok(Event::MessageCreate(message)) => {
                            tally.borrow_mut().record(&message.content);
                        }
                        Ok(Event::Ready(_)) => ready.set(true),
                        Ok(_) => {}
                        Err(error) => log::warn!("twilight shard {id}: {error}"),
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.get() {
            if Instant::now() >= deadline || task.is_finished() {
                task.abort();
                return Err(anyhow!("twilight shard {id} not ready within 30 s"));
            }
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self { tally, task })
    }

    /// Arms the tally and returns where the outcome arrives.
    pub fn arm(&self, count: u64, latency: bool) -> oneshot::Receiver<crate::tally::Outcome> {
        let (done, outcome) = oneshot::channel();
        self.tally.borrow_mut().arm(count, latency, done);
        outcome
    }

    /// Ends the task, dropping the shard and its connection.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Single-shard throughput: best of `runs` floods of `events`.
pub async fn throughput(
    emulator: &mut Emulator,
    codec: Codec,
    events: u64,
    runs: usize,
) -> anyhow::Result<Throughput> {
    let shard = TwilightShard::start(emulator.gateway_url(), codec, 0, 1).await?;
    harness::check_compression(emulator, codec).await?;
    let mut rates = Vec::new();
    for _ in 0..runs.max(1) {
        let armed = shard.arm(events, false);
        rates.push(harness::flood_run(emulator, vec![armed], events, events).await?);
    }
    shard.stop();
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(Throughput::best(&rates))
}

/// Send-to-handler latency of `count` messages at `rate` per second.
pub async fn latency(
    emulator: &mut Emulator,
    codec: Codec,
    rate: f64,
    count: u64,
) -> anyhow::Result<Vec<Duration>> {
    let shard = TwilightShard::start(emulator.gateway_url(), codec, 0, 1).await?;
    let armed = shard.arm(count, true);
    let latencies = harness::latency_run(emulator, armed, rate, count).await?;
    shard.stop();
    emulator.settle(0, Duration::from_secs(5)).await?;
    Ok(latencies)
}
