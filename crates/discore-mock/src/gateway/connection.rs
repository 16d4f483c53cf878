//! One connection's task: its loop over the socket, the handle's control
//! messages and its timers; the backpressure that keeps it reading while
//! it writes; the frame-level checks; and the hand-off of each payload to
//! the handler of its opcode.

use super::{
    flood::Flood,
    inbound::Quirks,
    socket::{Incoming, Outbound},
};
use crate::{
    limits,
    observe::{ConnectionEnd, ConnectionId, Quirk, ReceivedPayload, ViolationKind},
    rate::SlidingWindow,
    state::{Control, Shared, Stored, Written},
    transport::{self, Encoder},
};
use actix_http::ws::{Frame, Item, ProtocolError};
use bytes::{Bytes, BytesMut};
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{
    sync::{Notify, mpsc},
    time::Sleep,
};

/// Bytes queued for the socket above which no more dispatches are encoded.
pub(super) const HIGH_WATER: usize = 512 * 1024;
/// Dispatches encoded per step of a flood or an outbox drain, at most.
pub(super) const BATCH: usize = 256;
/// Dispatches encoded in one step from which the task yields before the
/// next round (see [`Connection::main_loop`]); a step of fewer, the usual
/// one or two of a live dispatch, goes straight on to the select.
const YIELD_AFTER: usize = 16;
/// How long one encoding step may take before the batch shrinks: between
/// steps the task yields to the runtime, which then polls the socket, so
/// this bounds how late a client's payload (a heartbeat) is read while the
/// emulator is busy writing (compressing, in a debug build, is slow).
pub(super) const STEP_BUDGET: Duration = Duration::from_millis(2);
/// Largest client frame the codec accepts; larger ones close with 4002 too.
pub(super) const MAX_FRAME: usize = 1 << 20;
/// How long the emulator waits for the client's close frame after its own.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Encoded frames handed to the socket at once.
pub(super) struct Chunk {
    pub(super) bytes: Bytes,
    /// Not before this instant (a delay fault).
    pub(super) not_before: Option<Instant>,
    /// The first and last dispatch sequence in it (0: none).
    pub(super) sequences: (u64, u64),
}

/// How a connection's main loop ended.
pub(super) enum Exit {
    /// Close with this code and reason (then wait for the client's close).
    Close(u16, String),
    /// The client closed with this code.
    ClientClosed(Option<u16>),
    /// The client went away without a close frame.
    ClientDropped,
    /// Drop TCP without a close frame.
    Drop,
}

/// One gateway connection, owned by its task.
pub(super) struct Connection {
    pub(super) shared: Arc<Shared>,
    pub(super) id: ConnectionId,
    pub(super) on_resume_url: bool,
    pub(super) version: u8,
    pub(super) encoder: Encoder,
    pub(super) incoming: Incoming,
    pub(super) out_tx: mpsc::Sender<Outbound>,
    pub(super) abort: Arc<AtomicBool>,
    /// Encoded frames waiting for the socket, in chunks.
    pub(super) out_queue: VecDeque<Chunk>,
    pub(super) out_bytes: usize,
    /// Frames encoded since the last chunk was sealed.
    pub(super) pending: BytesMut,
    /// The dispatch sequences in `pending`, first and last (0: none).
    pub(super) pending_sequences: (u64, u64),
    /// The sequences handed to the socket, on this connection and in its
    /// session (the resume judge reads the latter).
    pub(super) written: Arc<Written>,
    pub(super) session_written: Option<Arc<Written>>,
    pub(super) wake: Arc<Notify>,
    /// The loop's one timer, moved to each round's deadline rather than
    /// made anew every round (each is an entry in the runtime's wheel).
    pub(super) timer: Pin<Box<Sleep>>,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) session_id: Option<String>,
    pub(super) shard: Option<[u32; 2]>,
    pub(super) intents: u64,
    pub(super) heartbeat_deadline: Instant,
    pub(super) acks: bool,
    /// Every payload the client sends (120 per 60 s).
    pub(super) send_limit: SlidingWindow,
    /// Presence updates (5 per 20 s).
    pub(super) presence_limit: SlidingWindow,
    /// A Resume held while the handle holds resumes.
    pub(super) held_resume: Option<serde_json::Value>,
    pub(super) stall_until: Option<Instant>,
    pub(super) delay: Option<(Duration, Instant)>,
    pub(super) reconnect_deadline: Option<Instant>,
    pub(super) flood: Option<Flood>,
    pub(super) outbox_pending: bool,
    /// Dispatches encoded per step (adapts to keep a step within
    /// [`STEP_BUDGET`]).
    pub(super) batch: usize,
    /// The heartbeat deadline passed once; the connection is failed only if
    /// it still has no heartbeat after everything it sent was read.
    pub(super) heartbeat_overdue: bool,
    pub(super) fragment: Option<(bool, Vec<u8>)>,
    pub(super) close_received: Option<u16>,
    pub(super) shutting_down: bool,
}

/// What woke the main loop.
enum Step {
    Frame(Option<Result<Frame, ProtocolError>>),
    Control(Option<Control>),
    Permit(Result<mpsc::OwnedPermit<Outbound>, mpsc::error::SendError<()>>),
    Wake,
    Timer,
    /// Nothing else is ready and more is waiting to be encoded.
    Encode,
}

impl Connection {
    pub(super) async fn run(mut self, refusal: Option<(u16, &'static str)>, reconnect_first: bool) {
        let mut wait_reply = true;
        let exit = match refusal {
            Some((code, reason)) => Exit::Close(code, reason.to_owned()),
            None => {
                if reconnect_first {
                    self.send_raw(br#"{"t":null,"s":null,"op":7,"d":null}"#);
                    self.reconnect_deadline = self
                        .shared
                        .config
                        .reconnect_close_after
                        .map(|d| Instant::now() + d);
                } else {
                    let hello = format!(
                        r#"{{"t":null,"s":null,"op":10,"d":{{"heartbeat_interval":{},"_trace":["[\"discore-mock\",{{\"micros\":0}}]"]}}}}"#,
                        self.shared.config.heartbeat_interval.as_millis()
                    );
                    self.send_raw(hello.as_bytes());
                }
                let exit = self.main_loop().await;
                wait_reply = !self.shutting_down;
                exit
            }
        };
        let (end, code) = match exit {
            Exit::Close(code, reason) => {
                self.finish_close(code, &reason, wait_reply).await;
                (ConnectionEnd::ServerClosed, Some(code))
            }
            Exit::ClientClosed(code) => {
                // Echo the close, as RFC 6455 asks, then end.
                let mut frame = BytesMut::new();
                transport::close_frame(code.unwrap_or(1000), "", &mut frame);
                let close = Outbound {
                    bytes: frame.freeze(),
                    dispatches: None,
                };
                let _ = tokio::time::timeout(CLOSE_WAIT, self.out_tx.send(close)).await;
                (ConnectionEnd::ClientClosed, code)
            }
            Exit::ClientDropped => (ConnectionEnd::ClientDropped, None),
            Exit::Drop => {
                self.abort.store(true, Ordering::Release);
                (ConnectionEnd::ServerDropped, None)
            }
        };
        if let Some(flood) = self.flood.take()
            && let Some(done) = flood.done
        {
            let _ = done.send(flood.sent);
        }
        let at = self.shared.elapsed();
        let mut state = self.shared.lock();
        if let Some(record) = state.observed.connection_mut(self.id) {
            if end == ConnectionEnd::ServerClosed {
                record.close_sent = code;
            }
            if let Some(code) = self
                .close_received
                .or(if end == ConnectionEnd::ClientClosed {
                    code
                } else {
                    None
                })
            {
                record.close_received = Some(code);
            }
        }
        state.connection_ended(self.id, end, code, Instant::now(), at);
        log::debug!("{} ended: {end:?} {code:?}", self.id);
    }

    /// Records the dispatch sequences of a chunk handed to the writer, for
    /// the connection and for its session (`(0, 0)`: a chunk without
    /// dispatches).
    fn record_written(&self, sequences: (u64, u64)) {
        if sequences.1 > 0 {
            self.written.record(sequences);
            if let Some(session) = &self.session_written {
                session.record(sequences);
            }
        }
    }

    /// A chunk as the writer's item, with what the send clock notes when
    /// the writer takes it.
    fn outbound(&self, chunk: Chunk) -> Outbound {
        let sequences = chunk.sequences;
        Outbound {
            bytes: chunk.bytes,
            dispatches: self
                .shard
                .filter(|_| sequences.1 > 0)
                .map(|[shard, _]| (shard, sequences)),
        }
    }

    /// A chunk for a slot already reserved in the writer's channel (so its
    /// send cannot fail): recorded as written, as the writer's item.
    fn hand_over(&self, chunk: Chunk) -> Outbound {
        self.record_written(chunk.sequences);
        self.outbound(chunk)
    }

    /// Sends the close frame after everything queued, waits briefly for the
    /// client's close, then ends the stream (actix closes TCP).
    pub(super) async fn finish_close(&mut self, code: u16, reason: &str, wait_reply: bool) {
        self.abort_flood();
        transport::close_frame(code, reason, &mut self.pending);
        self.seal(None);
        let deadline = Instant::now() + CLOSE_WAIT;
        while let Some(chunk) = self.out_queue.pop_front() {
            let sequences = chunk.sequences;
            let outbound = self.outbound(chunk);
            match tokio::time::timeout_at(deadline.into(), self.out_tx.send(outbound)).await {
                // Dispatches written ahead of the close frame reach the
                // client: its session may resume from them.
                Ok(Ok(())) => self.record_written(sequences),
                _ => return,
            }
        }
        if !wait_reply {
            return;
        }
        // Read until the client's close frame or EOF, bounded in time.
        let wait = async {
            loop {
                match self.incoming.next().await {
                    Some(Ok(Frame::Close(reason))) => {
                        self.close_received = reason.map(|r| u16::from(r.code));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline.into(), wait).await;
    }

    /// Reads, writes and timers of one connection.
    ///
    /// Reading never waits for writing: the client's frames come first in
    /// every round, the frames to write wait in `out_queue` (a client that
    /// does not read only stops the encoding of more dispatches), and after
    /// an encoding step of [`YIELD_AFTER`] dispatches or more, or one that
    /// left more to encode, the task yields to the runtime. That yield
    /// matters: the task and actix's HTTP dispatcher that writes its frames
    /// share one worker thread, and as long as the socket takes data they
    /// keep each other busy, while tokio polls the socket for readability
    /// only between rounds of runnable tasks. Without it a client's
    /// heartbeats sat unread in the kernel for seconds while a compressed
    /// flood was being written, and when the writes finally blocked, the
    /// heartbeat timer could fire before those bytes were read. A smaller
    /// step that finished the work (a live dispatch or two) ends in the
    /// select, where the task waits and the runtime polls the socket anyway.
    ///
    /// Encoded chunks go to the writer as soon as they are sealed while its
    /// channel has room; the select waits for room only when it is full.
    pub(super) async fn main_loop(&mut self) -> Exit {
        loop {
            let started = Instant::now();
            let mut encoded = 0;
            if self.outbox_pending && self.out_bytes < HIGH_WATER {
                encoded += self.drain_outbox();
            }
            if self.flood.is_some() && !self.outbox_pending && self.out_bytes < HIGH_WATER {
                encoded += self.flood_step();
            }
            if encoded > 0 {
                self.adapt_batch(encoded, started.elapsed());
            }
            let not_before = self.delay_until();
            self.seal(not_before);
            let now = Instant::now();
            self.hand_over_ready(now);
            // A stall holds the encoding too: it resumes when the timer ends it.
            let more_to_encode = (self.outbox_pending || self.flood.is_some())
                && self.out_bytes < HIGH_WATER
                && self.stall_until.is_none_or(|until| until <= now);
            if encoded >= YIELD_AFTER || (encoded > 0 && more_to_encode) {
                // Let the runtime poll the socket (a deferred wake-up) before
                // the next round: pending client frames are read first.
                tokio::task::yield_now().await;
            }
            let now = Instant::now();
            let stalled = self.stall_until.is_some_and(|until| until > now);
            let front_ready = self
                .out_queue
                .front()
                .is_some_and(|chunk| chunk.not_before.is_none_or(|t| t <= now));
            let can_send = front_ready && !stalled;
            let deadline = tokio::time::Instant::from_std(self.next_deadline(now));
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            let step = tokio::select! {
                biased;
                frame = self.incoming.next() => Step::Frame(frame),
                control = self.control.recv() => Step::Control(control),
                permit = self.out_tx.clone().reserve_owned(), if can_send => Step::Permit(permit),
                () = self.wake.notified(), if !self.outbox_pending => Step::Wake,
                () = &mut self.timer => Step::Timer,
                () = std::future::ready(()), if more_to_encode => Step::Encode,
            };
            let exit = match step {
                Step::Frame(None) => Some(Exit::ClientDropped),
                Step::Frame(Some(Err(ProtocolError::Overflow))) => {
                    self.violation(ViolationKind::PayloadTooLarge, "frame larger than 1 MiB");
                    Some(Exit::Close(4002, "payload too large".to_owned()))
                }
                Step::Frame(Some(Err(_))) => {
                    Some(Exit::Close(1002, "websocket protocol error".to_owned()))
                }
                Step::Frame(Some(Ok(frame))) => self.on_frame(frame),
                Step::Control(None) => Some(Exit::Close(1001, "server stopping".to_owned())),
                Step::Control(Some(control)) => self.on_control(control),
                Step::Permit(Err(_)) => Some(Exit::ClientDropped),
                Step::Permit(Ok(permit)) => {
                    if let Some(chunk) = self.out_queue.pop_front() {
                        self.out_bytes -= chunk.bytes.len();
                        permit.send(self.hand_over(chunk));
                    }
                    None
                }
                Step::Wake => {
                    self.outbox_pending = true;
                    None
                }
                Step::Timer => self.on_timer(Instant::now()),
                Step::Encode => None,
            };
            if let Some(exit) = exit {
                return exit;
            }
            if self.heartbeat_overdue && self.heartbeat_deadline <= Instant::now() {
                // Give whatever the client sent one more chance to be read
                // (the runtime polls the socket before this task runs again).
                tokio::task::yield_now().await;
            }
        }
    }

    /// Hands the chunks that may go now to the writer while its channel has
    /// room, without a round through the select for each (the select's
    /// permit waits only when the channel is full).
    fn hand_over_ready(&mut self, now: Instant) {
        if self.stall_until.is_some_and(|until| until > now) {
            return;
        }
        while self
            .out_queue
            .front()
            .is_some_and(|chunk| chunk.not_before.is_none_or(|t| t <= now))
        {
            let Ok(permit) = self.out_tx.try_reserve() else {
                return;
            };
            let Some(chunk) = self.out_queue.pop_front() else {
                return;
            };
            self.out_bytes -= chunk.bytes.len();
            permit.send(self.hand_over(chunk));
        }
    }

    /// Halves the batch when a step overran its budget, grows it back when
    /// steps are cheap.
    pub(super) fn adapt_batch(&mut self, encoded: usize, took: Duration) {
        if took > STEP_BUDGET {
            self.batch = (encoded / 2).max(1);
        } else if took < STEP_BUDGET / 2 && encoded >= self.batch {
            self.batch = (self.batch * 2).min(BATCH);
        }
    }

    pub(super) fn delay_until(&mut self) -> Option<Instant> {
        let now = Instant::now();
        match self.delay {
            Some((delay, until)) if until > now => Some(now + delay),
            Some(_) => {
                self.delay = None;
                None
            }
            None => None,
        }
    }

    pub(super) fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = self.heartbeat_deadline;
        for t in [
            self.stall_until,
            self.reconnect_deadline,
            self.out_queue.front().and_then(|chunk| chunk.not_before),
        ]
        .into_iter()
        .flatten()
        {
            if t > now {
                deadline = deadline.min(t);
            }
        }
        deadline.max(now)
    }

    pub(super) fn on_timer(&mut self, now: Instant) -> Option<Exit> {
        if self.stall_until.is_some_and(|t| t <= now) {
            self.stall_until = None;
        }
        if self.reconnect_deadline.is_some_and(|t| t <= now) {
            return Some(Exit::Close(4000, "reconnect requested".to_owned()));
        }
        if self.heartbeat_deadline <= now {
            if !self.heartbeat_overdue {
                // Not yet: first read everything the client sent.
                self.heartbeat_overdue = true;
                return None;
            }
            self.violation(
                ViolationKind::HeartbeatMissed,
                "no heartbeat within the interval",
            );
            let code = self.shared.config.heartbeat_timeout_close_code;
            return Some(Exit::Close(code, "heartbeat timeout".to_owned()));
        }
        None
    }

    /// Moves encoded bytes into the send queue as one chunk.
    pub(super) fn seal(&mut self, not_before: Option<Instant>) {
        if !self.pending.is_empty() {
            let bytes = self.pending.split().freeze();
            self.out_bytes += bytes.len();
            self.out_queue.push_back(Chunk {
                bytes,
                not_before,
                sequences: std::mem::take(&mut self.pending_sequences),
            });
        }
    }

    pub(super) fn send_raw(&mut self, json: &[u8]) {
        if let Err(e) = self.encoder.message(&[json], &mut self.pending) {
            log::error!("{}: {e}", self.id);
        }
    }

    pub(super) fn encode_dispatch(&mut self, stored: &Stored) {
        let mut digits = [0; 20];
        let seq = transport::write_u64(stored.seq, &mut digits);
        let parts: [&[u8]; 7] = [
            b"{\"t\":\"",
            stored.name.as_bytes(),
            b"\",\"s\":",
            seq,
            b",\"op\":0,\"d\":",
            &stored.data,
            b"}",
        ];
        if let Err(e) = self.encoder.message(&parts, &mut self.pending) {
            log::error!("{}: {e}", self.id);
        }
        if self.pending_sequences.0 == 0 {
            self.pending_sequences.0 = stored.seq;
        }
        self.pending_sequences.1 = stored.seq;
    }

    /// Encodes the next batch of the session's outbox; returns how many.
    pub(super) fn drain_outbox(&mut self) -> usize {
        let mut items = Vec::new();
        {
            let mut state = self.shared.lock();
            self.outbox_pending = state.take_outbox(self.id, self.batch, &mut items);
            if let Some(record) = state.observed.connection_mut(self.id) {
                record.dispatches_sent += items.len() as u64;
            }
        }
        for item in &items {
            self.encode_dispatch(item);
        }
        items.len()
    }

    pub(super) fn violation(&self, kind: ViolationKind, detail: impl Into<String>) {
        let at = self.shared.elapsed();
        self.shared
            .lock()
            .violation(kind, Some(self.id), at, detail);
    }

    pub(super) fn authenticated(&self) -> bool {
        self.session_id.is_some()
    }

    pub(super) fn on_frame(&mut self, frame: Frame) -> Option<Exit> {
        match frame {
            Frame::Text(bytes) | Frame::Binary(bytes) => self.on_payload(&bytes),
            Frame::Continuation(item) => match item {
                Item::FirstText(bytes) | Item::FirstBinary(bytes) => {
                    self.fragment = Some((true, bytes.to_vec()));
                    self.check_fragment()
                }
                Item::Continue(bytes) => {
                    if let Some((_, buf)) = self.fragment.as_mut() {
                        buf.extend_from_slice(&bytes);
                    }
                    self.check_fragment()
                }
                Item::Last(bytes) => {
                    let mut buf = self.fragment.take().map(|(_, b)| b).unwrap_or_default();
                    buf.extend_from_slice(&bytes);
                    self.on_payload(&buf)
                }
            },
            Frame::Ping(payload) => {
                transport::pong_frame(&payload, &mut self.pending);
                None
            }
            Frame::Pong(_) => None,
            Frame::Close(reason) => {
                let code = reason.map(|r| u16::from(r.code));
                self.close_received = code;
                Some(Exit::ClientClosed(code))
            }
        }
    }

    pub(super) fn check_fragment(&mut self) -> Option<Exit> {
        let too_big = self
            .fragment
            .as_ref()
            .is_some_and(|(_, b)| b.len() > limits::MAX_CLIENT_PAYLOAD_BYTES);
        if too_big {
            self.violation(
                ViolationKind::PayloadTooLarge,
                "fragmented payload over 4096 bytes",
            );
            return Some(Exit::Close(4002, "payload too large".to_owned()));
        }
        None
    }

    /// Records a received payload (the token redacted).
    pub(super) fn record(&mut self, op: Option<u8>, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let token = self
            .shared
            .config
            .token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        let json = if !token.is_empty() && text.contains(token.as_str()) {
            text.replace(token.as_str(), "[redacted]")
        } else {
            text.into_owned()
        };
        let at = self.shared.elapsed();
        let max = self.shared.config.max_recorded_payloads;
        let mut state = self.shared.lock();
        if let Some(record) = state.observed.connection_mut(self.id) {
            record.received_count += 1;
            if record.received.len() < max {
                record.received.push(ReceivedPayload { op, json, at });
            }
        }
    }

    /// Closes with 4001 for a payload whose data does not fit its opcode.
    pub(super) fn invalid(&self, what: &str, detail: &str) -> Option<Exit> {
        self.violation(
            ViolationKind::InvalidPayload,
            format!("invalid {what} payload: {detail}"),
        );
        Some(Exit::Close(4001, format!("invalid {what} payload")))
    }

    /// Records the quirks of one payload.
    pub(super) fn note_quirks(&self, op: Option<u8>, quirks: Quirks) {
        if quirks.0.is_empty() {
            return;
        }
        let at = self.shared.elapsed();
        let mut state = self.shared.lock();
        for detail in quirks.0 {
            log::debug!("{}: quirk: {detail}", self.id);
            crate::observe::push_bounded(
                &mut state.observed.quirks,
                Quirk {
                    connection: self.id,
                    op,
                    detail,
                    at,
                },
            );
        }
    }

    /// Whether `token` (from Identify or Resume) is the bot's.
    pub(super) fn token_ok(&self, token: &str) -> bool {
        self.shared
            .config
            .token
            .as_ref()
            .is_ok_and(|t| t.matches_gateway(token))
    }

    pub(super) fn send_invalid_session(&mut self, resumable: bool) -> Option<Exit> {
        let frame = format!(r#"{{"t":null,"s":null,"op":9,"d":{resumable}}}"#);
        self.send_raw(frame.as_bytes());
        self.shared
            .config
            .invalid_session_closes
            .then(|| Exit::Close(4000, "invalid session".to_owned()))
    }

    /// The guild index if `guild_id` exists and belongs to this shard.
    pub(super) fn own_guild(&self, world: &crate::world::World, guild_id: u64) -> Option<usize> {
        let shard = self.shard?;
        let index = world.guild_index(guild_id)?;
        (crate::world::shard_of(guild_id, shard[1]) == shard[0]).then_some(index)
    }
}
