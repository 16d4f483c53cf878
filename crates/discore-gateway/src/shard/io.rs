//! Reading and writing the socket, and carrying out the machine's actions.

use super::Shard;
use crate::{
    delivery::Gated,
    error::ShardStartError,
    event::{Dispatch, GatewayEvent},
    inflate::Inflater,
    machine::{Action, ConnectTarget, RESUMABLE_CLOSE},
    ratelimit::{CommandRateLimiter, Permit},
    transport::{self, Connection, FrameStream},
};
use actix::{
    ActorContext as _, ActorFutureExt as _, AsyncContext as _, Context, Message, StreamHandler,
    WrapFuture as _,
};
use actix_http::ws::{Frame, Item, ProtocolError};
use bytes::Bytes;
use discore_protocol::{
    Envelope, EnvelopeError, ErrorChain, OpCode, PayloadData, commands,
    inbound::{GuildMark, Hello, ReadySession},
};
use futures_util::{StreamExt as _, stream};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use twilight_model::gateway::event::EventType;

/// One item read from a connection: a frame, or the end of the stream.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Inbound {
    generation: u64,
    frame: Option<Result<Frame, ProtocolError>>,
}

impl Shard {
    /// Carries out everything the machine asked for, then re-arms the timer.
    pub(super) fn run_actions(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Connect { delay, target } => self.schedule_connect(delay, target, ctx),
                Action::Close { code } => self.close_connection(code, ctx),
                Action::SendHeartbeat(sequence) => {
                    log::trace!("shard {}: heartbeat {sequence:?}", self.id);
                    self.send_control(commands::heartbeat(sequence));
                }
                Action::RequestIdentify => self.request_identify(ctx),
                Action::SendResume {
                    session_id,
                    sequence,
                } => match commands::resume(&self.token, &session_id, sequence) {
                    Ok(frame) => {
                        log::debug!(
                            shard = self.id.number(), total = self.id.total(),
                            session = session_id.as_str(), sequence;
                            "shard {}: resuming at sequence {sequence}", self.id
                        );
                        self.send_control(frame);
                    }
                    Err(error) => {
                        // A session the gateway cannot be asked to resume
                        // (an id too long for the payload limit): start a
                        // new one rather than wait on this connection.
                        log::error!(
                            "shard {}: resume failed to encode ({error}); starting a new session",
                            self.id
                        );
                        self.machine.on_protocol_error(true);
                    }
                },
                Action::FlushCommands => self.flush_commands(ctx),
                Action::Notify(event) => self.notify(event, ctx),
            }
        }
        self.check_start_attempts(ctx);
        self.rearm_timer(ctx);
    }

    /// Gives up a `start()` that cannot reach the gateway at all.
    fn check_start_attempts(&mut self, ctx: &mut Context<Self>) {
        let attempts = self.machine.consecutive_failures();
        if self.start_waiter.is_some() && attempts >= self.config.start_attempts {
            log::error!(
                shard = self.id.number(), total = self.id.total(), attempt = attempts;
                "shard {}: gateway unreachable after {attempts} attempts", self.id
            );
            self.resolve_start(Err(ShardStartError::Unreachable { attempts }));
            ctx.stop();
        }
    }

    fn rearm_timer(&mut self, ctx: &mut Context<Self>) {
        let next = self.machine.next_deadline();
        if let (Some((armed, _)), Some(next)) = (&self.timer, next)
            && *armed == next
        {
            return;
        }
        if let Some((_, handle)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(next) = next {
            let delay = next.saturating_duration_since(Instant::now());
            let handle = ctx.run_later(delay, |shard, ctx| {
                shard.timer = None;
                shard
                    .machine
                    .on_timer(Instant::now(), shard.credits.take_waited());
                shard.run_actions(ctx);
            });
            self.timer = Some((next, handle));
        }
    }

    fn schedule_connect(
        &mut self,
        delay: Duration,
        target: ConnectTarget,
        ctx: &mut Context<Self>,
    ) {
        if let Some(task) = self.connect_task.take() {
            ctx.cancel_future(task);
        }
        // Every attempt, an immediate one too: a log filtered by shard shows
        // how the backoff grows.
        let attempt = self.machine.consecutive_failures() + 1;
        log::debug!(
            shard = self.id.number(), total = self.id.total(), attempt,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            "shard {}: connection attempt {attempt} in {delay:?}", self.id
        );
        if delay.is_zero() {
            self.open_connection(target, ctx);
        } else {
            let task = ctx.run_later(delay, move |shard, ctx| {
                shard.connect_task = None;
                shard.open_connection(target, ctx);
            });
            self.connect_task = Some(task);
        }
    }

    fn open_connection(&mut self, target: ConnectTarget, ctx: &mut Context<Self>) {
        // A connection that will identify waits for its turn in the queue,
        // so that a fleet start does not hold every connection open at once.
        if self.connect_turn.is_none() && self.machine.session().is_none() {
            let turn = self.queue.connect_turn(self.id);
            let task = ctx.spawn(turn.into_actor(self).map(move |turn, shard, ctx| {
                shard.connect_task = None;
                shard.connect_turn = Some(turn);
                shard.open_connection(target, ctx);
            }));
            self.connect_task = Some(task);
            return;
        }
        let resume_url = match target {
            ConnectTarget::ResumeUrl => self.machine.session().and_then(|s| s.resume_url.clone()),
            ConnectTarget::DiscoveryUrl => None,
        };
        let version = self.config.api_version;
        let compression = self.config.compression;
        let url = resume_url
            .and_then(
                |base| match transport::gateway_url(&base, version, compression) {
                    Ok(url) => Some(url),
                    Err(error) => {
                        log::warn!(
                            "shard {}: unusable resume url ({error}), using discovery",
                            self.id
                        );
                        None
                    }
                },
            )
            .map_or_else(
                || transport::gateway_url(&self.config.gateway_url, version, compression),
                Ok,
            );
        let url = match url {
            Ok(url) => url,
            Err(error) => {
                log::error!("shard {}: invalid gateway url: {error}", self.id);
                self.resolve_start(Err(ShardStartError::InvalidGatewayUrl(error)));
                ctx.stop();
                return;
            }
        };
        let tls = match self
            .config
            .tls
            .clone()
            .map_or_else(transport::default_tls, Ok)
        {
            Ok(tls) => tls,
            Err(error) => {
                log::error!("shard {}: TLS setup failed: {error}", self.id);
                self.machine.on_connect_failed();
                self.run_actions(ctx);
                return;
            }
        };
        log::debug!(
            shard = self.id.number(), total = self.id.total(),
            attempt = self.machine.consecutive_failures() + 1, url = url.as_str();
            "shard {}: connecting to {url}", self.id
        );
        let connect = transport::connect(
            url,
            tls,
            self.config.connect_timeout,
            self.config.max_inbound_message_size,
        );
        let task = ctx.spawn(connect.into_actor(self).map(|result, shard, ctx| {
            shard.connect_task = None;
            match result {
                Ok((connection, frames)) => shard.on_connected(connection, frames, ctx),
                Err(error) => {
                    log::warn!(
                        shard = shard.id.number(), total = shard.id.total(),
                        attempt = shard.machine.consecutive_failures() + 1;
                        "shard {}: connection failed: {}", shard.id, error.0
                    );
                    shard.machine.on_connect_failed();
                    shard.run_actions(ctx);
                }
            }
        }));
        self.connect_task = Some(task);
    }

    fn on_connected(
        &mut self,
        connection: Connection,
        frames: FrameStream,
        ctx: &mut Context<Self>,
    ) {
        let inflater = match Inflater::new(
            self.config.compression,
            self.config.max_inbound_message_size,
        ) {
            Ok(inflater) => inflater,
            Err(error) => {
                log::error!("shard {}: decompressor setup failed: {error}", self.id);
                connection.close(RESUMABLE_CLOSE);
                self.machine.on_connect_failed();
                self.run_actions(ctx);
                return;
            }
        };
        self.generation += 1;
        let generation = self.generation;
        let items = frames
            .map(move |frame| Inbound {
                generation,
                frame: Some(frame),
            })
            .chain(stream::iter([Inbound {
                generation,
                frame: None,
            }]));
        self.reader = Some(ctx.add_stream(Gated::new(items, Arc::clone(&self.credits))));
        self.connection = Some(connection);
        self.inflater = Some(inflater);
        self.fragments = None;
        self.limiter.reset();
        self.machine.on_connected(Instant::now());
        self.run_actions(ctx);
    }

    /// Closes the current connection (the machine decided to).
    fn close_connection(&mut self, code: u16, ctx: &mut Context<Self>) {
        if let Some(connection) = self.connection.take() {
            connection.close(code);
        }
        self.drop_reader(ctx);
    }

    fn drop_reader(&mut self, ctx: &mut Context<Self>) {
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        // The connection ended: the next shard of the bucket may connect.
        self.connect_turn = None;
        // Frames already read from the old connection are ignored.
        self.generation += 1;
        self.inflater = None;
        self.fragments = None;
    }

    /// The connection ended on the server's side or in a transport error.
    fn connection_lost(&mut self, code: Option<u16>, ctx: &mut Context<Self>) {
        self.connection = None;
        self.drop_reader(ctx);
        self.machine.on_closed(code);
        self.run_actions(ctx);
    }

    /// Something unusable arrived: reconnect (and resume) on a fresh connection.
    fn protocol_error(&mut self, reason: &str, new_session: bool, ctx: &mut Context<Self>) {
        log::warn!(
            shard = self.id.number(), total = self.id.total(), new_session;
            "shard {}: {reason}; reconnecting", self.id
        );
        self.machine.on_protocol_error(new_session);
        self.run_actions(ctx);
    }

    fn send_control(&mut self, frame: String) {
        if let Some(connection) = &self.connection {
            self.limiter.record_control(Instant::now());
            connection.send_text(frame);
        }
    }

    /// The gateway answered this connection's Identify (if one was sent)
    /// at `at`: its permit counts as sent then, and the connect turn goes
    /// to the next shard of the bucket.
    fn identify_answered(&mut self, at: Instant) {
        if let Some(connection) = &self.connection {
            connection.identify_answered(at);
        }
        self.connect_turn = None;
    }

    fn request_identify(&mut self, ctx: &mut Context<Self>) {
        if self.identify_task.is_some() {
            return;
        }
        let permit = self.queue.acquire(self.id);
        let task = ctx.spawn(permit.into_actor(self).map(|permit, shard, ctx| {
            shard.identify_task = None;
            shard.send_identify(permit);
            shard.run_actions(ctx);
        }));
        self.identify_task = Some(task);
    }

    /// Sends Identify with `permit`, or gives the permit back (dropping it)
    /// when this connection can no longer identify: it closed while the
    /// shard waited, or is not at the identify step.
    fn send_identify(&mut self, permit: crate::identify::IdentifyPermit) {
        let Some(connection) = &self.connection else {
            return;
        };
        if !self.machine.identify_permitted() {
            return;
        }
        let identify = commands::Identify {
            token: &self.token,
            shard: self.id,
            intents: self.config.intents,
            large_threshold: self.config.large_threshold,
            properties: &self.config.properties,
            presence: self.presence.as_ref(),
        };
        match identify.encode() {
            Ok(frame) => {
                log::debug!(shard = self.id.number(), total = self.id.total(); "shard {}: identifying", self.id);
                self.stats.identifies += 1;
                self.limiter.record_control(Instant::now());
                connection.send_identify(frame, permit);
                self.machine.on_identify_sent();
            }
            Err(error) => log::error!(
                "shard {}: identify failed to encode: {}",
                self.id,
                ErrorChain(&error)
            ),
        }
    }

    /// Sends queued commands while the session is active and the limiter lets them.
    pub(super) fn flush_commands(&mut self, ctx: &mut Context<Self>) {
        if self.flush_timer.is_some() {
            return;
        }
        while matches!(self.machine.state(), crate::machine::ShardState::Active) {
            let (Some(connection), Some(command)) = (&self.connection, self.commands.front())
            else {
                return;
            };
            let now = Instant::now();
            match self.limiter.try_command(now, command.is_presence) {
                Permit::Granted => {
                    if let Some(command) = self.commands.pop_front() {
                        connection.send_text(command.frame);
                    }
                }
                Permit::RetryAt(at) => {
                    self.stats.rate_limit_waits += 1;
                    let timer = ctx.run_later(at.saturating_duration_since(now), |shard, ctx| {
                        shard.flush_timer = None;
                        shard.flush_commands(ctx);
                    });
                    self.flush_timer = Some(timer);
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        match frame {
            Frame::Text(bytes) | Frame::Binary(bytes) => self.on_message(bytes, ctx),
            Frame::Continuation(item) => self.on_continuation(item, ctx),
            Frame::Ping(payload) => {
                if let Some(connection) = &self.connection {
                    connection.pong(payload);
                }
            }
            Frame::Pong(_) => {}
            Frame::Close(reason) => {
                let code = reason.map(|reason| u16::from(reason.code));
                self.connection_lost(code, ctx);
            }
        }
    }

    fn on_continuation(&mut self, item: Item, ctx: &mut Context<Self>) {
        let max = self.config.max_inbound_message_size;
        let (bytes, last) = match item {
            Item::FirstText(bytes) | Item::FirstBinary(bytes) => {
                self.fragments = Some(Vec::with_capacity(bytes.len() * 2));
                (bytes, false)
            }
            Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let Some(buffer) = &mut self.fragments else {
            self.protocol_error("continuation frame without a first frame", false, ctx);
            return;
        };
        if buffer.len() + bytes.len() > max {
            self.fragments = None;
            self.protocol_error(&format!("message over the {max}-byte maximum"), false, ctx);
            return;
        }
        buffer.extend_from_slice(&bytes);
        if last && let Some(mut message) = self.fragments.take() {
            // Dispatches keep slices of it: no spare room with them.
            message.shrink_to_fit();
            self.on_message(Bytes::from(message), ctx);
        }
    }

    fn on_message(&mut self, message: Bytes, ctx: &mut Context<Self>) {
        self.stats.inbound_bytes += message.len() as u64;
        let Some(mut inflater) = self.inflater.take() else {
            return;
        };
        let generation = self.generation;
        match inflater.push_shared(message) {
            Ok(Some(payload)) => {
                self.stats.inflated_bytes += payload.len() as u64;
                self.on_payload(&payload, ctx);
            }
            Ok(None) => {}
            Err(error) => self.protocol_error(&ErrorChain(&error).to_string(), false, ctx),
        }
        inflater.recycle();
        // Put the context back unless the connection changed meanwhile.
        if self.generation == generation {
            self.inflater = Some(inflater);
        }
    }

    fn on_payload(&mut self, payload: &Bytes, ctx: &mut Context<Self>) {
        let Ok(text) = std::str::from_utf8(payload) else {
            self.protocol_error("payload is not UTF-8", false, ctx);
            return;
        };
        let envelope = match Envelope::peek(text) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.protocol_error(&ErrorChain(&error).to_string(), false, ctx);
                return;
            }
        };
        // Dispatches, nearly every payload, read no clock here.
        match envelope.op {
            OpCode::Dispatch => self.on_dispatch(&envelope, payload, ctx),
            OpCode::Heartbeat => self.machine.on_heartbeat_request(Instant::now()),
            OpCode::HeartbeatAck => self.machine.on_heartbeat_ack(Instant::now()),
            OpCode::Reconnect => {
                log::info!(
                    shard = self.id.number(), total = self.id.total();
                    "shard {}: the gateway asked to reconnect", self.id
                );
                self.machine.on_reconnect_request();
            }
            OpCode::InvalidSession => {
                let resumable = envelope.data_as::<bool>().unwrap_or(false);
                log::info!(
                    shard = self.id.number(), total = self.id.total(), resumable;
                    "shard {}: invalid session (resumable: {resumable})", self.id
                );
                // Discord judged the Identify (if one was sent) before this.
                self.identify_answered(Instant::now());
                self.machine.on_invalid_session(resumable);
            }
            OpCode::Hello => match envelope.data_as::<Hello>() {
                Ok(hello) if hello.heartbeat_interval > 0 => {
                    let interval = Duration::from_millis(hello.heartbeat_interval);
                    self.limiter.set_reserved(CommandRateLimiter::reserve_for(
                        interval,
                        self.config.send_window,
                    ));
                    self.machine.on_hello(interval, Instant::now());
                }
                _ => {
                    self.protocol_error("Hello without a valid heartbeat interval", false, ctx);
                    return;
                }
            },
            other => log::debug!("shard {}: ignoring {other}", self.id),
        }
        self.run_actions(ctx);
    }

    /// `payload` is the frame `envelope` was read from: the delivered
    /// events share slices of it.
    fn on_dispatch(&mut self, envelope: &Envelope<'_>, payload: &Bytes, ctx: &mut Context<Self>) {
        let name = envelope.event_name.as_deref().unwrap_or_default();
        let Some(sequence) = envelope.sequence else {
            self.protocol_error(&format!("dispatch {name} without a sequence"), false, ctx);
            return;
        };
        match name {
            "READY" => {
                // Discord stamped the Identify before it sent this: the
                // bucket's next Identify is spaced from here.
                self.identify_answered(Instant::now());
                let ready = envelope.data_as::<ReadySession>();
                let Ok(ready) = ready else {
                    self.protocol_error("READY without a session id", true, ctx);
                    return;
                };
                self.stats.guilds_expected = ready.guild_count();
                self.stats.guilds_loaded = 0;
                self.stats.guilds_pending = ready.guild_ids().map(Box::from).collect();
                self.machine
                    .on_ready(sequence, ready.session_id, ready.resume_gateway_url);
            }
            "RESUMED" => self.machine.on_resumed(sequence),
            _ => {
                // A replay may overlap what was already delivered: deliver
                // each sequence number of a session once.
                if self
                    .machine
                    .last_sequence()
                    .is_some_and(|last| sequence <= last)
                {
                    log::debug!("shard {}: skipping duplicate {name} #{sequence}", self.id);
                    return;
                }
            }
        }
        // A wanted event is parsed, and so validated, before its sequence
        // number counts: a payload that turns out to be malformed is asked
        // for again by resuming from the sequence before it.
        let kind = EventType::try_from(name).ok();
        let event = match self.parse_for_subscribers(name, kind, envelope.data, payload) {
            Ok(event) => event,
            Err(error) => {
                let error = ErrorChain(&error);
                self.protocol_error(&format!("{name} #{sequence}: {error}"), false, ctx);
                return;
            }
        };
        if !matches!(name, "READY" | "RESUMED") {
            self.machine.on_dispatch(sequence);
            if matches!(name, "GUILD_CREATE" | "GUILD_DELETE")
                && !self.stats.guilds_pending.is_empty()
            {
                self.settle_guild(name, envelope);
            }
        }
        self.stats.events += 1;
        match self.stats.events_by_type.get_mut(name) {
            Some(count) => *count += 1,
            None => {
                self.stats.events_by_type.insert(name.into(), 1);
            }
        }
        log::trace!("shard {}: {name} #{sequence}", self.id);
        if let Some((event, data)) = event {
            self.deliver(kind, sequence, &event, &data);
        }
    }

    /// A guild of the last READY arrived (GUILD_CREATE) or turned out to be
    /// unavailable (GUILD_DELETE with `unavailable: true`, an outage): either
    /// way it is settled, and readiness does not wait for it any more.
    fn settle_guild(&mut self, name: &str, envelope: &Envelope<'_>) {
        let Ok(guild) = envelope.data_as::<GuildMark>() else {
            return;
        };
        let settles = name == "GUILD_CREATE" || guild.unavailable == Some(true);
        if settles && self.stats.guilds_pending.remove(guild.id.as_str()) {
            self.stats.guilds_loaded += 1;
            if name == "GUILD_DELETE" {
                log::info!(
                    "shard {}: guild {} is unavailable; counted as loaded",
                    self.id,
                    guild.id
                );
            }
        }
    }

    /// The typed event and its data as received, if any subscriber wants
    /// it; nothing is parsed for an event nobody wants.
    fn parse_for_subscribers(
        &self,
        name: &str,
        kind: Option<EventType>,
        data: Option<PayloadData<'_>>,
        payload: &Bytes,
    ) -> Result<Option<(Arc<Dispatch>, Bytes)>, EnvelopeError> {
        if !self.subscribers.iter().any(|s| s.filter.wants(kind)) {
            return Ok(None);
        }
        let (dispatch, text) = Dispatch::from_data_exact(name, kind, data)?;
        Ok(Some((Arc::new(dispatch), share(payload, text.as_bytes()))))
    }

    fn deliver(
        &mut self,
        kind: Option<EventType>,
        sequence: u64,
        event: &Arc<Dispatch>,
        data: &Bytes,
    ) {
        let mut disconnected = false;
        for subscriber in &self.subscribers {
            if !subscriber.filter.wants(kind) {
                continue;
            }
            if !subscriber.recipient.connected() {
                disconnected = true;
                continue;
            }
            subscriber.recipient.do_send(GatewayEvent {
                shard: self.id,
                sequence,
                event: Arc::clone(event),
                data: Some(data.clone()),
                _credit: Some(self.credits.take()),
            });
        }
        if disconnected {
            self.subscribers.retain(|s| s.recipient.connected());
        }
    }
}

/// `part` as a slice of `payload` sharing its buffer, or a copy when it
/// does not lie within it (the `null` of a dispatch without data).
fn share(payload: &Bytes, part: &[u8]) -> Bytes {
    let (within, range) = (payload.as_ptr_range(), part.as_ptr_range());
    if !part.is_empty() && within.start <= range.start && range.end <= within.end {
        payload.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

impl StreamHandler<Inbound> for Shard {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        if item.generation != self.generation {
            return;
        }
        match item.frame {
            Some(Ok(frame)) => self.on_frame(frame, ctx),
            Some(Err(error)) => {
                self.protocol_error(&format!("websocket error: {error}"), false, ctx)
            }
            None => self.connection_lost(None, ctx),
        }
    }

    /// Streams end with an explicit item; the actor outlives each connection.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}
