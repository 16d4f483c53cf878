//! One gateway WebSocket connection: the handshake, then a task that reads
//! client frames, enforces the protocol (`docs/protocol.md`), writes dispatches from
//! the session's outbox, and applies faults.

use crate::{
    control::Fault,
    event::{Event, GUILD_MEMBERS, GUILD_PRESENCES, GUILD_VOICE_STATES},
    observe::{
        Compression, ConnectionEnd, ConnectionId, ConnectionRecord, HeartbeatRecord,
        ReceivedPayload, RefusedUpgrade, ViolationKind,
    },
    payloads,
    state::{ConnHandle, Control, IdentifyRequest, IdentifyResult, ResumeResult, Shared, Stored},
    transport::{self, Encoder},
    world::{ChannelKind, Status},
};
use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use actix_web::{HttpRequest, HttpResponse, body::MessageBody, web};
use bytes::{Bytes, BytesMut};
use discore_protocol::{
    Envelope, OpCode,
    commands::{ChannelInfoField, RequestChannelInfo, RequestSoundboardSounds},
    limits,
};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    collections::{HashMap, VecDeque},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::sync::{Notify, mpsc, oneshot};

/// Bytes queued for the socket above which no more dispatches are encoded.
const HIGH_WATER: usize = 512 * 1024;
/// Dispatches encoded per step of a flood or an outbox drain, at most.
const BATCH: usize = 256;
/// How long one encoding step may take before the batch shrinks: between
/// steps the task yields to the runtime, which then polls the socket, so
/// this bounds how late a client's payload (a heartbeat) is read while the
/// emulator is busy writing (compressing, in a debug build, is slow).
const STEP_BUDGET: Duration = Duration::from_millis(2);
/// Largest client frame the codec accepts; larger ones close with 4002 too.
const MAX_FRAME: usize = 1 << 20;
/// How long the emulator waits for the client's close frame after its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The body stream error that makes actix drop the TCP connection.
#[derive(Debug, thiserror::Error)]
#[error("connection aborted by the emulator")]
struct Aborted;

/// The response body: frames from the connection task, or an abort.
struct Outgoing {
    rx: mpsc::Receiver<Bytes>,
    abort: Arc<AtomicBool>,
}

impl Stream for Outgoing {
    type Item = Result<Bytes, Aborted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.abort.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Aborted)));
        }
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// Client frames decoded from the request payload.
struct Incoming {
    payload: web::Payload,
    buf: BytesMut,
    codec: Codec,
}

impl Incoming {
    /// The next frame; cancel-safe (bytes stay in `buf`).
    async fn next(&mut self) -> Option<Result<Frame, ProtocolError>> {
        use actix_codec::Decoder as _;
        for _ in 0..1_000_000 {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => return None,
            }
        }
        None
    }
}

/// The query string of a gateway URL.
struct GatewayQuery {
    version: Option<u8>,
    encoding: Option<String>,
    compress: Option<String>,
}

impl GatewayQuery {
    fn parse(query: &str) -> Self {
        let params = web::Query::<HashMap<String, String>>::from_query(query)
            .map(web::Query::into_inner)
            .unwrap_or_default();
        Self {
            version: params.get("v").and_then(|v| v.parse().ok()),
            encoding: params.get("encoding").cloned(),
            compress: params.get("compress").cloned(),
        }
    }
}

/// `GET /` and `GET /resume/`: the WebSocket upgrade.
pub(crate) async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Arc<Shared>>,
) -> Result<HttpResponse, actix_web::Error> {
    let shared = Arc::clone(shared.get_ref());
    let now = Instant::now();
    {
        let mut state = shared.lock();
        if state.stopping || state.outage_until.is_some_and(|until| until > now) {
            crate::observe::push_bounded(
                &mut state.observed.refused_upgrades,
                RefusedUpgrade {
                    path: req.path().to_owned(),
                    on_resume_url: req.path().starts_with("/resume"),
                    at: shared.elapsed(),
                },
            );
            return Ok(HttpResponse::ServiceUnavailable()
                .insert_header(("retry-after", "1"))
                .json(json!({"message": "503: Service Unavailable", "code": 0})));
        }
    }
    let mut response = match actix_http::ws::handshake(req.head()) {
        Ok(response) => response,
        Err(e) => return Ok(actix_http::Response::from(e).into()),
    };
    let query = GatewayQuery::parse(req.query_string());
    let path = req.path().to_owned();
    let on_resume_url = path.starts_with("/resume");
    let compression = match query.compress.as_deref() {
        Some("zlib-stream") => Ok(Compression::ZlibStream),
        Some("zstd-stream") => Ok(Compression::ZstdStream),
        None | Some("") => Ok(Compression::None),
        Some(_) => Err((4002, "unknown compress value")),
    };
    // Refusals that Discord answers after the upgrade, with a close code.
    let refusal = match (&compression, query.version, query.encoding.as_deref()) {
        (_, v, _) if !v.is_some_and(|v| shared.config.api_versions.contains(&v)) => {
            Some((4012, "invalid api version"))
        }
        (_, _, Some(e)) if e != "json" => {
            Some((4002, "only encoding=json is supported by discore-mock"))
        }
        (Err(refusal), _, _) => Some(*refusal),
        _ => None,
    };
    let compression = compression.unwrap_or_default();

    let (out_tx, out_rx) = mpsc::channel(8);
    let abort = Arc::new(AtomicBool::new(false));
    let body = actix_web::body::BodyStream::new(Outgoing {
        rx: out_rx,
        abort: Arc::clone(&abort),
    });
    let response: HttpResponse = response.message_body(body.boxed())?.into();

    let wake = Arc::new(Notify::new());
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let at = shared.elapsed();
    let (id, reconnect_first) = {
        let mut state = shared.lock();
        let id = state.next_connection_id();
        state.connections.insert(
            id,
            ConnHandle {
                wake: Arc::clone(&wake),
                control: control_tx,
                session: None,
                shard: None,
            },
        );
        crate::observe::push_bounded_if(
            &mut state.observed.connections,
            ConnectionRecord {
                id,
                path: path.clone(),
                on_resume_url,
                query: req.query_string().to_owned(),
                version: query.version,
                compression,
                opened_at: at,
                closed_at: None,
                end: None,
                shard: None,
                session_id: None,
                received: Vec::new(),
                received_count: 0,
                dispatches_sent: 0,
                close_sent: None,
                close_received: None,
            },
            |record| !record.is_open(),
        );
        state.purge(now);
        let reconnect_first = refusal.is_none() && state.reconnect_instead_of_hello > 0;
        if reconnect_first {
            state.reconnect_instead_of_hello -= 1;
        }
        (id, reconnect_first)
    };
    log::debug!("{id} opened on {path} ({compression:?})");
    let encoder = Encoder::new(compression, shared.config.max_frame_payload)
        .map_err(actix_web::error::ErrorInternalServerError)?;
    let timeout = shared.config.heartbeat_timeout();
    let connection = Connection {
        id,
        on_resume_url,
        version: query.version.unwrap_or(limits::API_VERSION),
        encoder,
        incoming: Incoming {
            payload,
            buf: BytesMut::new(),
            codec: Codec::new().max_size(MAX_FRAME),
        },
        out_tx,
        abort,
        out_queue: VecDeque::new(),
        out_bytes: 0,
        pending: BytesMut::new(),
        wake,
        control: control_rx,
        session_id: None,
        shard: None,
        intents: 0,
        heartbeat_deadline: now + timeout,
        acks: true,
        send_window: (now, 0),
        presence_window: (now, 0),
        stall_until: None,
        delay: None,
        reconnect_deadline: None,
        flood: None,
        outbox_pending: false,
        batch: BATCH,
        heartbeat_overdue: false,
        fragment: None,
        close_received: None,
        shutting_down: false,
        shared,
    };
    actix_web::rt::spawn(connection.run(refusal, reconnect_first));
    Ok(response)
}

/// How a connection's main loop ended.
enum Exit {
    /// Close with this code and reason (then wait for the client's close).
    Close(u16, String),
    /// The client closed with this code.
    ClientClosed(Option<u16>),
    /// The client went away without a close frame.
    ClientDropped,
    /// Drop TCP without a close frame.
    Drop,
}

struct Flood {
    remaining: u64,
    sent: u64,
    pool: Vec<Bytes>,
    next: usize,
    done: Option<oneshot::Sender<u64>>,
}

struct Connection {
    shared: Arc<Shared>,
    id: ConnectionId,
    on_resume_url: bool,
    version: u8,
    encoder: Encoder,
    incoming: Incoming,
    out_tx: mpsc::Sender<Bytes>,
    abort: Arc<AtomicBool>,
    out_queue: VecDeque<(Bytes, Option<Instant>)>,
    out_bytes: usize,
    pending: BytesMut,
    wake: Arc<Notify>,
    control: mpsc::UnboundedReceiver<Control>,
    session_id: Option<String>,
    shard: Option<[u32; 2]>,
    intents: u64,
    heartbeat_deadline: Instant,
    acks: bool,
    send_window: (Instant, u32),
    presence_window: (Instant, u32),
    stall_until: Option<Instant>,
    delay: Option<(Duration, Instant)>,
    reconnect_deadline: Option<Instant>,
    flood: Option<Flood>,
    outbox_pending: bool,
    /// Dispatches encoded per step (adapts to keep a step within
    /// [`STEP_BUDGET`]).
    batch: usize,
    /// The heartbeat deadline passed once; the connection is failed only if
    /// it still has no heartbeat after everything it sent was read.
    heartbeat_overdue: bool,
    fragment: Option<(bool, Vec<u8>)>,
    close_received: Option<u16>,
    shutting_down: bool,
}

/// What woke the main loop.
enum Step {
    Frame(Option<Result<Frame, ProtocolError>>),
    Control(Option<Control>),
    Permit(Result<mpsc::OwnedPermit<Bytes>, mpsc::error::SendError<()>>),
    Wake,
    Timer,
}

#[derive(Deserialize)]
struct IdentifyData {
    token: String,
    properties: IdentifyProperties,
    #[serde(default)]
    #[allow(dead_code)]
    compress: Option<bool>,
    #[serde(default)]
    large_threshold: Option<u64>,
    #[serde(default)]
    shard: Option<[u64; 2]>,
    #[serde(default)]
    presence: Option<Value>,
    intents: u64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct IdentifyProperties {
    #[serde(alias = "$os")]
    os: String,
    #[serde(alias = "$browser")]
    browser: String,
    #[serde(alias = "$device")]
    device: String,
}

#[derive(Deserialize)]
struct ResumeData {
    token: String,
    session_id: String,
    seq: u64,
}

#[derive(Deserialize)]
struct PresenceData {
    since: Option<u64>,
    activities: Vec<ActivityData>,
    status: String,
    afk: bool,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct ActivityData {
    name: String,
    #[serde(rename = "type")]
    kind: u8,
}

#[derive(Deserialize)]
struct VoiceStateData {
    #[serde(with = "crate::control::snowflake")]
    guild_id: u64,
    channel_id: Option<String>,
    self_mute: bool,
    self_deaf: bool,
}

/// A snowflake as sent in `user_ids`: a string, or (the quirk) a number.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum LooseId {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<LooseId>),
    One(LooseId),
}

#[derive(Deserialize)]
struct RequestMembersData {
    #[serde(with = "crate::control::snowflake")]
    guild_id: u64,
    query: Option<String>,
    limit: Option<u64>,
    #[serde(default)]
    presences: Option<bool>,
    user_ids: Option<OneOrMany>,
    nonce: Option<String>,
}

fn validate_presence(value: &Value) -> bool {
    let Ok(presence) = PresenceData::deserialize(value) else {
        return false;
    };
    let _ = presence.since;
    let _ = presence.afk;
    let _ = presence.activities.len();
    matches!(
        presence.status.as_str(),
        "online" | "dnd" | "idle" | "invisible" | "offline"
    )
}

impl Connection {
    async fn run(mut self, refusal: Option<(u16, &'static str)>, reconnect_first: bool) {
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
                let _ = tokio::time::timeout(CLOSE_WAIT, self.out_tx.send(frame.freeze())).await;
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

    /// Sends the close frame after everything queued, waits briefly for the
    /// client's close, then ends the stream (actix closes TCP).
    async fn finish_close(&mut self, code: u16, reason: &str, wait_reply: bool) {
        self.abort_flood();
        transport::close_frame(code, reason, &mut self.pending);
        self.seal(None);
        let deadline = Instant::now() + CLOSE_WAIT;
        while let Some((chunk, _)) = self.out_queue.pop_front() {
            match tokio::time::timeout_at(deadline.into(), self.out_tx.send(chunk)).await {
                Ok(Ok(())) => {}
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

    fn abort_flood(&mut self) {
        if let Some(flood) = self.flood.take()
            && let Some(done) = flood.done
        {
            let _ = done.send(flood.sent);
        }
    }

    /// Reads, writes and timers of one connection.
    ///
    /// Reading never waits for writing: the client's frames come first in
    /// every round, the frames to write wait in `out_queue` (a client that
    /// does not read only stops the encoding of more dispatches), and after
    /// every encoding step the task yields to the runtime. That yield
    /// matters: the task and actix's HTTP dispatcher that writes its frames
    /// share one worker thread, and as long as the socket takes data they
    /// keep each other busy, while tokio polls the socket for readability
    /// only between rounds of runnable tasks. Without it a client's
    /// heartbeats sat unread in the kernel for seconds while a compressed
    /// flood was being written, and when the writes finally blocked, the
    /// heartbeat timer could fire before those bytes were read.
    async fn main_loop(&mut self) -> Exit {
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
                // Let the runtime poll the socket (a deferred wake-up) before
                // the next round: pending client frames are read first.
                tokio::task::yield_now().await;
            }
            let not_before = self.delay_until();
            self.seal(not_before);
            let now = Instant::now();
            let stalled = self.stall_until.is_some_and(|until| until > now);
            let front_ready = self
                .out_queue
                .front()
                .is_some_and(|(_, not_before)| not_before.is_none_or(|t| t <= now));
            let can_send = front_ready && !stalled;
            let deadline = self.next_deadline(now);
            let step = tokio::select! {
                biased;
                frame = self.incoming.next() => Step::Frame(frame),
                control = self.control.recv() => Step::Control(control),
                permit = self.out_tx.clone().reserve_owned(), if can_send => Step::Permit(permit),
                () = self.wake.notified(), if !self.outbox_pending => Step::Wake,
                () = tokio::time::sleep_until(deadline.into()) => Step::Timer,
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
                    if let Some((chunk, _)) = self.out_queue.pop_front() {
                        self.out_bytes -= chunk.len();
                        permit.send(chunk);
                    }
                    None
                }
                Step::Wake => {
                    self.outbox_pending = true;
                    None
                }
                Step::Timer => self.on_timer(Instant::now()),
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

    /// Halves the batch when a step overran its budget, grows it back when
    /// steps are cheap.
    fn adapt_batch(&mut self, encoded: usize, took: Duration) {
        if took > STEP_BUDGET {
            self.batch = (encoded / 2).max(1);
        } else if took < STEP_BUDGET / 2 && encoded >= self.batch {
            self.batch = (self.batch * 2).min(BATCH);
        }
    }

    fn delay_until(&mut self) -> Option<Instant> {
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

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut deadline = self.heartbeat_deadline;
        for t in [
            self.stall_until,
            self.reconnect_deadline,
            self.out_queue.front().and_then(|(_, t)| *t),
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

    fn on_timer(&mut self, now: Instant) -> Option<Exit> {
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
    fn seal(&mut self, not_before: Option<Instant>) {
        if !self.pending.is_empty() {
            let chunk = self.pending.split().freeze();
            self.out_bytes += chunk.len();
            self.out_queue.push_back((chunk, not_before));
        }
    }

    fn send_raw(&mut self, json: &[u8]) {
        if let Err(e) = self.encoder.message(&[json], &mut self.pending) {
            log::error!("{}: {e}", self.id);
        }
    }

    fn encode_dispatch(&mut self, stored: &Stored) {
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
    }

    /// Encodes the next batch of the session's outbox; returns how many.
    fn drain_outbox(&mut self) -> usize {
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

    /// Encodes the next batch of a flood; returns how many dispatches.
    fn flood_step(&mut self) -> usize {
        let Some(flood) = self.flood.as_mut() else {
            return 0;
        };
        let batch = self.batch;
        let mut items = Vec::with_capacity(batch);
        let name: Arc<str> = Arc::from("MESSAGE_CREATE");
        let finished;
        {
            let mut state = self.shared.lock();
            // Anything already queued goes first, keeping sequence order.
            let more = state.take_outbox(self.id, batch, &mut items);
            self.outbox_pending |= more;
            let capacity = state.config.replay_buffer;
            let session = self
                .session_id
                .as_ref()
                .and_then(|id| state.sessions.get_mut(id))
                .filter(|s| s.connection == Some(self.id));
            match session {
                Some(session) if flood.remaining > 0 && !more => {
                    let room = batch.saturating_sub(items.len()).max(1);
                    let n = flood.remaining.min(room as u64);
                    for _ in 0..n {
                        let data = flood.pool[flood.next % flood.pool.len()].clone();
                        flood.next += 1;
                        items.push(session.push(Arc::clone(&name), data, capacity));
                    }
                    flood.remaining -= n;
                    flood.sent += n;
                    finished = flood.remaining == 0;
                }
                Some(_) => finished = flood.remaining == 0,
                None => finished = true,
            }
            if let Some(record) = state.observed.connection_mut(self.id) {
                record.dispatches_sent += items.len() as u64;
            }
        }
        for item in &items {
            self.encode_dispatch(item);
        }
        if finished {
            self.abort_flood();
        }
        items.len()
    }

    fn violation(&self, kind: ViolationKind, detail: impl Into<String>) {
        let at = self.shared.elapsed();
        self.shared
            .lock()
            .violation(kind, Some(self.id), at, detail);
    }

    fn authenticated(&self) -> bool {
        self.session_id.is_some()
    }

    fn on_frame(&mut self, frame: Frame) -> Option<Exit> {
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

    fn check_fragment(&mut self) -> Option<Exit> {
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

    fn record(&mut self, op: Option<u8>, raw: &[u8]) {
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

    fn on_payload(&mut self, raw: &[u8]) -> Option<Exit> {
        let now = Instant::now();
        let config = Arc::clone(&self.shared.config);
        if now.saturating_duration_since(self.send_window.0) >= config.send_window {
            self.send_window = (now, 0);
        }
        self.send_window.1 += 1;
        if raw.len() > limits::MAX_CLIENT_PAYLOAD_BYTES {
            self.record(None, &raw[..256.min(raw.len())]);
            self.violation(
                ViolationKind::PayloadTooLarge,
                format!("payload of {} bytes", raw.len()),
            );
            return Some(Exit::Close(4002, "payload too large".to_owned()));
        }
        if self.send_window.1 > config.send_limit {
            self.record(
                Envelope::peek(&String::from_utf8_lossy(raw))
                    .ok()
                    .map(|e| e.op.code()),
                raw,
            );
            self.violation(
                ViolationKind::SendRateExceeded,
                format!(
                    "more than {} payloads in {:?}",
                    config.send_limit, config.send_window
                ),
            );
            return Some(Exit::Close(4008, "rate limited".to_owned()));
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            self.record(None, raw);
            self.violation(ViolationKind::MalformedPayload, "payload is not UTF-8");
            return Some(Exit::Close(4002, "decode error".to_owned()));
        };
        let envelope = match Envelope::peek(text) {
            Ok(envelope) => envelope,
            Err(_) => {
                self.record(None, raw);
                self.violation(
                    ViolationKind::MalformedPayload,
                    "payload is not a gateway envelope",
                );
                return Some(Exit::Close(4002, "decode error".to_owned()));
            }
        };
        let op = envelope.op;
        self.record(Some(op.code()), raw);
        if !op.is_sent_by_client() {
            self.violation(
                ViolationKind::UnknownOpcode,
                format!("opcode {}", op.code()),
            );
            return Some(Exit::Close(4001, "unknown opcode".to_owned()));
        }
        let data: Value = match envelope.data_as::<Option<Value>>() {
            Ok(data) => data.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        match op {
            OpCode::Heartbeat => self.on_heartbeat(&data),
            OpCode::Identify | OpCode::Resume if self.authenticated() => {
                self.violation(
                    ViolationKind::AlreadyAuthenticated,
                    format!("{op} on an authenticated connection"),
                );
                Some(Exit::Close(4005, "already authenticated".to_owned()))
            }
            OpCode::Identify => self.on_identify(data),
            OpCode::Resume => self.on_resume(data),
            _ if !self.authenticated() => {
                self.violation(
                    ViolationKind::PayloadBeforeIdentify,
                    format!("{op} before identify"),
                );
                Some(Exit::Close(4003, "not authenticated".to_owned()))
            }
            OpCode::PresenceUpdate => self.on_presence(&data, now),
            OpCode::VoiceStateUpdate => self.on_voice_state(data),
            OpCode::RequestGuildMembers => self.on_request_members(data, now),
            OpCode::RequestSoundboardSounds => self.on_soundboard(data),
            OpCode::RequestChannelInfo => self.on_channel_info(data),
            _ => {
                self.violation(
                    ViolationKind::UnknownOpcode,
                    format!("opcode {}", op.code()),
                );
                Some(Exit::Close(4001, "unknown opcode".to_owned()))
            }
        }
    }

    fn invalid(&self, what: &str) -> Option<Exit> {
        self.violation(
            ViolationKind::InvalidPayload,
            format!("invalid {what} payload"),
        );
        Some(Exit::Close(4001, format!("invalid {what} payload")))
    }

    fn on_heartbeat(&mut self, data: &Value) -> Option<Exit> {
        let sequence = match data {
            Value::Null => None,
            Value::Number(n) => match n.as_u64() {
                Some(n) => Some(n),
                None => return self.invalid("heartbeat"),
            },
            _ => return self.invalid("heartbeat"),
        };
        let now = Instant::now();
        self.heartbeat_deadline = now + self.shared.config.heartbeat_timeout();
        self.heartbeat_overdue = false;
        let at = self.shared.elapsed();
        let ahead = {
            let mut state = self.shared.lock();
            crate::observe::push_bounded(
                &mut state.observed.heartbeats,
                HeartbeatRecord {
                    connection: self.id,
                    sequence,
                    acked: self.acks,
                    at,
                },
            );
            let last = state.session_of(self.id).map(|s| s.seq);
            match (sequence, last) {
                (Some(s), Some(last)) if s > last => Some((s, last)),
                _ => None,
            }
        };
        if let Some((s, last)) = ahead {
            self.violation(
                ViolationKind::HeartbeatSequenceAhead,
                format!("heartbeat {s} but the last dispatch sent was {last}"),
            );
        }
        if self.acks {
            self.send_raw(br#"{"t":null,"s":null,"op":11,"d":null}"#);
        }
        None
    }

    fn token_ok(&self, token: &str) -> bool {
        // Discord also accepts the REST form `Bot <token>` in Identify and
        // Resume (twilight-gateway sends it).
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        self.shared
            .config
            .token
            .as_ref()
            .is_ok_and(|t| t.expose() == token)
    }

    fn send_invalid_session(&mut self, resumable: bool) -> Option<Exit> {
        let frame = format!(r#"{{"t":null,"s":null,"op":9,"d":{resumable}}}"#);
        self.send_raw(frame.as_bytes());
        self.shared
            .config
            .invalid_session_closes
            .then(|| Exit::Close(4000, "invalid session".to_owned()))
    }

    fn on_identify(&mut self, data: Value) -> Option<Exit> {
        let Ok(identify) = IdentifyData::deserialize(&data) else {
            return self.invalid("identify");
        };
        let large_threshold = identify.large_threshold.unwrap_or(50);
        if !limits::LARGE_THRESHOLD_RANGE.contains(&large_threshold)
            || identify
                .presence
                .as_ref()
                .is_some_and(|p| !validate_presence(p))
            || identify.properties.os.len() > 4096
        {
            return self.invalid("identify");
        }
        let request = IdentifyRequest {
            token_ok: self.token_ok(&identify.token),
            intents: identify.intents,
            shard: identify.shard,
        };
        let now = Instant::now();
        let at = self.shared.elapsed();
        let resume_url = self.shared.resume_url();
        let result =
            self.shared
                .lock()
                .identify(self.id, &request, self.version, now, at, &resume_url);
        match result {
            IdentifyResult::Close(code, reason) => Some(Exit::Close(code, reason.to_owned())),
            IdentifyResult::InvalidSession => self.send_invalid_session(false),
            IdentifyResult::Ready {
                session_id,
                guilds,
                world,
            } => {
                let shard = identify
                    .shard
                    .map_or([0, 1], |s| [s[0] as u32, s[1] as u32]);
                log::info!("{} identified as shard {shard:?}", self.id);
                self.session_id = Some(session_id.clone());
                self.shard = Some(shard);
                self.intents = identify.intents;
                self.outbox_pending = true;
                // Build GUILD_CREATEs without holding the lock, then queue
                // them in one go.
                let events: Vec<Event> = guilds
                    .iter()
                    .map(|g| {
                        let data = world.guild_create(*g, identify.intents, large_threshold);
                        Event {
                            intent: crate::event::GUILDS,
                            ..Event::plain("GUILD_CREATE", &data, Some(world.guild_id(*g)))
                        }
                    })
                    .collect();
                let mut state = self.shared.lock();
                for event in &events {
                    state.deliver(&session_id, event);
                }
                None
            }
        }
    }

    fn on_resume(&mut self, data: Value) -> Option<Exit> {
        let Ok(resume) = ResumeData::deserialize(&data) else {
            return self.invalid("resume");
        };
        let token_ok = self.token_ok(&resume.token);
        let now = Instant::now();
        let at = self.shared.elapsed();
        let result = self.shared.lock().resume(
            self.id,
            token_ok,
            &resume.session_id,
            resume.seq,
            self.on_resume_url,
            now,
            at,
        );
        match result {
            ResumeResult::Close(code, reason) => Some(Exit::Close(code, reason.to_owned())),
            ResumeResult::InvalidSession => self.send_invalid_session(false),
            ResumeResult::Resumed { session_id, shard } => {
                log::info!("{} resumed shard {shard:?}", self.id);
                self.intents = self
                    .shared
                    .lock()
                    .sessions
                    .get(&session_id)
                    .map_or(0, |s| s.intents);
                self.session_id = Some(session_id);
                self.shard = Some(shard);
                self.outbox_pending = true;
                None
            }
        }
    }

    fn on_presence(&mut self, data: &Value, now: Instant) -> Option<Exit> {
        if !validate_presence(data) {
            return self.invalid("presence update");
        }
        let config = Arc::clone(&self.shared.config);
        if now.saturating_duration_since(self.presence_window.0) >= config.presence_window {
            self.presence_window = (now, 0);
        }
        self.presence_window.1 += 1;
        if self.presence_window.1 > config.presence_limit {
            self.violation(
                ViolationKind::PresenceRateExceeded,
                format!(
                    "more than {} presence updates in {:?}",
                    config.presence_limit, config.presence_window
                ),
            );
        }
        None
    }

    /// The guild index if `guild_id` exists and belongs to this shard.
    fn own_guild(&self, world: &crate::world::World, guild_id: u64) -> Option<usize> {
        let shard = self.shard?;
        let index = world.guild_index(guild_id)?;
        (discore_protocol::shard_for_guild(guild_id, shard[1]) == shard[0]).then_some(index)
    }

    fn on_voice_state(&mut self, data: Value) -> Option<Exit> {
        let Ok(voice) = VoiceStateData::deserialize(&data) else {
            return self.invalid("voice state update");
        };
        let channel = match voice.channel_id.as_deref().map(str::parse::<u64>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => return self.invalid("voice state update"),
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        let guild = self.own_guild(&world, voice.guild_id)?;
        if let Some(channel) = channel {
            let is_voice = world
                .channel(channel)
                .is_some_and(|c| c.guild == guild && c.kind == ChannelKind::Voice);
            if !is_voice {
                return None;
            }
        }
        let guild_id = world.guild_id(guild);
        let voice_state = payloads::voice_state(
            &world,
            guild,
            channel,
            voice.self_mute,
            voice.self_deaf,
            &session_id,
        );
        let event = Event {
            intent: GUILD_VOICE_STATES,
            ..Event::plain("VOICE_STATE_UPDATE", &voice_state, Some(guild_id))
        };
        state.deliver(&session_id, &event);
        if channel.is_some() {
            state.message_counter += 1;
            let token = format!(
                "{:016x}",
                crate::world::mix(world.bot_id, 43, state.message_counter)
            );
            let server = payloads::voice_server(&world, guild, &token);
            state.deliver(
                &session_id,
                &Event::plain("VOICE_SERVER_UPDATE", &server, Some(guild_id)),
            );
        }
        None
    }

    fn on_request_members(&mut self, data: Value, now: Instant) -> Option<Exit> {
        let Ok(request) = RequestMembersData::deserialize(&data) else {
            return self.invalid("request guild members");
        };
        if request.query.is_some() == request.user_ids.is_some()
            || (request.query.is_some() && request.limit.is_none())
        {
            return self.invalid("request guild members");
        }
        let all = request.query.as_deref() == Some("") && request.limit == Some(0);
        if all && self.intents & GUILD_MEMBERS == 0 {
            self.violation(
                ViolationKind::MembersIntentRequired,
                "all members requested without GUILD_MEMBERS",
            );
            return Some(Exit::Close(
                4001,
                "GUILD_MEMBERS intent required".to_owned(),
            ));
        }
        let session_id = self.session_id.clone()?;
        let nonce = request.nonce.filter(|n| n.len() <= limits::MAX_NONCE_BYTES);
        let world = Arc::clone(&self.shared.lock().world);
        let guild = self.own_guild(&world, request.guild_id)?;
        if all {
            let limited = self
                .shared
                .lock()
                .all_members_allowed(request.guild_id, now);
            if let Err(retry_after) = limited {
                self.violation(
                    ViolationKind::RequestGuildMembersRateLimited,
                    format!(
                        "all members of guild {} requested again within the window",
                        request.guild_id
                    ),
                );
                let data = payloads::rate_limited(request.guild_id, retry_after, nonce.as_deref());
                self.shared.lock().deliver(
                    &session_id,
                    &Event::plain("RATE_LIMITED", &data, Some(request.guild_id)),
                );
                return None;
            }
        }
        let presences = request.presences == Some(true) && self.intents & GUILD_PRESENCES != 0;
        // (member index or None for the bot)
        let mut found: Vec<Option<u32>> = Vec::new();
        let mut not_found: Vec<Value> = Vec::new();
        let members = world.members_per_guild();
        if let Some(query) = request.query {
            let cap = if all {
                usize::MAX
            } else {
                usize::try_from(request.limit.unwrap_or(0))
                    .unwrap_or(usize::MAX)
                    .clamp(1, limits::MAX_QUERY_MEMBERS)
            };
            let query = query.to_lowercase();
            if "discore-mock".starts_with(&query) {
                found.push(None);
            }
            for m in 0..members {
                if found.len() >= cap {
                    break;
                }
                if world.username(m).starts_with(&query) {
                    found.push(Some(m));
                }
            }
        } else if let Some(ids) = request.user_ids {
            let ids = match ids {
                OneOrMany::Many(ids) => ids,
                OneOrMany::One(id) => vec![id],
            };
            for id in ids.into_iter().take(limits::MAX_QUERY_MEMBERS) {
                let parsed = match &id {
                    LooseId::Number(n) => Some(*n),
                    LooseId::Text(s) => s.parse::<u64>().ok(),
                };
                match parsed {
                    Some(n) if n == world.bot_id => found.push(None),
                    Some(n) => match world.member_index(guild, n) {
                        Some(m) => found.push(Some(m)),
                        // The documented quirk: ids that are not bigint-sized
                        // come back as JSON numbers.
                        None if n < (1 << 53) => not_found.push(json!(n)),
                        None => not_found.push(json!(n.to_string())),
                    },
                    None => not_found.push(match id {
                        LooseId::Number(n) => json!(n),
                        LooseId::Text(s) => json!(s),
                    }),
                }
            }
        }
        let guild_id = world.guild_id(guild);
        let chunks: Vec<&[Option<u32>]> = if found.is_empty() {
            vec![&[]]
        } else {
            found.chunks(limits::MEMBERS_PER_CHUNK).collect()
        };
        let count = chunks.len();
        let events: Vec<Event> = chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| {
                let members: Vec<Value> = chunk
                    .iter()
                    .map(|m| match m {
                        Some(m) => world.member(guild, *m, true),
                        None => world.bot_member(guild, true),
                    })
                    .collect();
                let mut data = json!({
                    "guild_id": guild_id.to_string(),
                    "members": members,
                    "chunk_index": index,
                    "chunk_count": count,
                    "not_found": if index == 0 { Value::Array(not_found.clone()) } else { json!([]) },
                });
                if let Some(map) = data.as_object_mut() {
                    if presences {
                        let list: Vec<Value> = chunk
                            .iter()
                            .flatten()
                            .filter(|m| world.status(guild, **m) != Status::Offline)
                            .map(|m| world.presence(guild, *m))
                            .collect();
                        map.insert("presences".to_owned(), Value::Array(list));
                    }
                    if let Some(nonce) = &nonce {
                        map.insert("nonce".to_owned(), json!(nonce));
                    }
                }
                Event::plain("GUILD_MEMBERS_CHUNK", &data, Some(guild_id))
            })
            .collect();
        let mut state = self.shared.lock();
        for event in &events {
            state.deliver(&session_id, event);
        }
        None
    }

    fn on_soundboard(&mut self, data: Value) -> Option<Exit> {
        let Ok(request) = RequestSoundboardSounds::deserialize(&data) else {
            return self.invalid("request soundboard sounds");
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        for guild_id in request.guild_ids {
            if let Some(guild) = self.own_guild(&world, guild_id.get()) {
                let data = payloads::soundboard_sounds(&world, guild);
                state.deliver(
                    &session_id,
                    &Event::plain("SOUNDBOARD_SOUNDS", &data, Some(guild_id.get())),
                );
            }
        }
        None
    }

    fn on_channel_info(&mut self, data: Value) -> Option<Exit> {
        let Ok(request) = RequestChannelInfo::deserialize(&data) else {
            return self.invalid("request channel info");
        };
        let session_id = self.session_id.clone()?;
        let mut state = self.shared.lock();
        let world = Arc::clone(&state.world);
        let guild = self.own_guild(&world, request.guild_id.get())?;
        let status = request.fields.contains(&ChannelInfoField::Status);
        let start = request.fields.contains(&ChannelInfoField::VoiceStartTime);
        let data = payloads::channel_info(&world, guild, status, start);
        state.deliver(
            &session_id,
            &Event::plain("CHANNEL_INFO", &data, Some(request.guild_id.get())),
        );
        None
    }

    fn on_control(&mut self, control: Control) -> Option<Exit> {
        match control {
            Control::Shutdown => {
                self.shutting_down = true;
                Some(Exit::Close(1001, "server stopping".to_owned()))
            }
            Control::Flood { count, done } => {
                self.abort_flood();
                self.start_flood(count, done);
                None
            }
            Control::Fault(fault) => self.on_fault(fault),
        }
    }

    fn start_flood(&mut self, count: u64, done: oneshot::Sender<u64>) {
        let Some(shard) = self.shard.filter(|_| self.authenticated()) else {
            let _ = done.send(0);
            return;
        };
        let state = self.shared.lock();
        let world = Arc::clone(&state.world);
        drop(state);
        let mut guilds = world.guilds_of_shard(shard);
        if guilds.is_empty() {
            guilds.push(0);
        }
        let mut pool = Vec::new();
        for i in 0..64_u64 {
            let guild = guilds[i as usize % guilds.len()];
            let data = payloads::member_message(&world, guild, 1_000_000_000 + i);
            let event = Event::from_value("MESSAGE_CREATE", &data, world.bot_id);
            if !event.allowed(self.intents) {
                let _ = done.send(0);
                return;
            }
            pool.push(event.data_for(self.intents).clone());
        }
        self.flood = Some(Flood {
            remaining: count,
            sent: 0,
            pool,
            next: 0,
            done: Some(done),
        });
    }

    fn on_fault(&mut self, fault: Fault) -> Option<Exit> {
        let now = Instant::now();
        match fault {
            Fault::Reconnect => {
                self.send_raw(br#"{"t":null,"s":null,"op":7,"d":null}"#);
                if self.reconnect_deadline.is_none() {
                    self.reconnect_deadline =
                        self.shared.config.reconnect_close_after.map(|d| now + d);
                }
                None
            }
            Fault::InvalidSession { resumable } => {
                if !resumable && let Some(session_id) = self.session_id.take() {
                    self.shared.lock().destroy_session(&session_id);
                    self.shard = None;
                }
                self.send_invalid_session(resumable)
            }
            Fault::Close { code, reason } => Some(Exit::Close(
                code,
                reason.unwrap_or_else(|| "closed by discore-mock".to_owned()),
            )),
            Fault::DropTcp => Some(Exit::Drop),
            Fault::HeartbeatAcks { enabled } => {
                self.acks = enabled;
                None
            }
            Fault::RequestHeartbeat => {
                self.send_raw(br#"{"t":null,"s":null,"op":1,"d":null}"#);
                None
            }
            Fault::Stall { millis } => {
                self.seal(None);
                self.stall_until = Some(now + Duration::from_millis(millis));
                None
            }
            Fault::Delay { millis, for_millis } => {
                self.seal(None);
                self.delay = Some((
                    Duration::from_millis(millis),
                    now + Duration::from_millis(for_millis),
                ));
                None
            }
            Fault::CorruptNextFrame => {
                self.encoder.garbage(&mut self.pending);
                None
            }
            Fault::MalformedJson => {
                self.send_raw(br#"{"t":"MESSAGE_CREATE","s":"#);
                None
            }
            Fault::MalformedDispatchData => {
                let next = self.shared.lock().session_of(self.id).map_or(0, |s| s.seq) + 1;
                let frame = format!(
                    r#"{{"t":"MESSAGE_CREATE","s":{next},"op":0,"d":{{"content":"broken",}}}}"#
                );
                self.send_raw(frame.as_bytes());
                None
            }
            Fault::Payload { bytes } => {
                self.send_raw(&bytes);
                None
            }
        }
    }
}
