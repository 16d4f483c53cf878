//! The [`MockServer`] handle: start, URLs, control, observations, stop.

use crate::{
    config::MockConfig,
    control::{Fault, Target},
    error::{MockError, WaitTimeout},
    event::Event,
    observe::Observed,
    payloads::{self, Author},
    rest,
    send_clock::SendTimes,
    state::{Control, Delivery, Shared},
    store::Interaction,
    traffic::{Traffic, TrafficConfig},
    world::ChannelKind,
};
use actix_web::{App, HttpServer, dev::ServerHandle, web};
use serde_json::Value;
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// A running emulator. Cheap to clone; every clone controls the same server.
///
/// ```
/// use discore_mock::{MockConfig, MockServer};
///
/// # actix_rt::System::new().block_on(async {
/// let mock = MockServer::start(MockConfig::new().guilds(2)).await?;
/// assert!(mock.gateway_url().starts_with("ws://127.0.0.1:"));
/// assert_ne!(mock.gateway_url(), mock.resume_url());
/// assert_eq!(mock.guild_ids().len(), 2);
/// mock.stop().await;
/// # Ok::<(), discore_mock::MockError>(())
/// # }).expect("runs");
/// ```
#[derive(Clone)]
pub struct MockServer {
    shared: Arc<Shared>,
    traffic: Arc<Traffic>,
    handle: ServerHandle,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// Waits for a flood to finish on every connection it went to.
#[derive(Debug)]
pub struct FloodHandle {
    receivers: Vec<oneshot::Receiver<u64>>,
}

/// What a flood sent.
#[derive(Clone, Copy, Debug, Eq, PartialEq, serde::Serialize)]
pub struct FloodReport {
    /// Connections that took part.
    pub connections: usize,
    /// MESSAGE_CREATE dispatches sent in total.
    pub sent: u64,
}

impl FloodHandle {
    /// Resolves when every connection has written its dispatches (or ended).
    pub async fn finished(self) -> FloodReport {
        let connections = self.receivers.len();
        let mut sent = 0;
        for receiver in self.receivers {
            sent += receiver.await.unwrap_or(0);
        }
        FloodReport { connections, sent }
    }
}

/// An interaction the emulator dispatched.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CreatedInteraction {
    /// The interaction id (for `/interactions/{id}/{token}/callback`).
    pub id: u64,
    /// The interaction token.
    pub token: String,
    /// Where INTERACTION_CREATE went.
    pub deliveries: Vec<Delivery>,
}

fn routes(cfg: &mut web::ServiceConfig) {
    for version in ["/api/v10", "/api/v9"] {
        cfg.service(
            web::scope(version)
                .configure(rest::routes)
                .default_service(web::to(rest::not_found)),
        );
    }
    cfg.service(web::scope("/_mock").configure(crate::control_http::control_routes));
    // Gateway URLs: `/` and `//` on both listeners, `/{session}` on the
    // resume listener (the handler tells them apart).
    cfg.route("/", web::get().to(crate::gateway::upgrade))
        .route("//", web::get().to(crate::gateway::upgrade))
        .route("/{session}", web::get().to(crate::gateway::upgrade))
        .route("/{session}/", web::get().to(crate::gateway::upgrade))
        .default_service(web::to(rest::not_found));
}

impl MockServer {
    /// Starts the emulator. Call it inside an actix system
    /// (`#[actix_rt::main]`, `#[actix_rt::test]`): the server runs on it
    /// and on `workers` threads of its own.
    ///
    /// # Errors
    ///
    /// [`MockError::InvalidConfig`] for an unusable token,
    /// [`MockError::Bind`] when the address cannot be bound.
    pub async fn start(config: MockConfig) -> Result<Self, MockError> {
        if let Err(e) = &config.token {
            return Err(MockError::InvalidConfig(e.to_string()));
        }
        let bind = config.bind;
        let resume_bind = config.resume_bind;
        let workers = config.workers;
        let shared = Arc::new(Shared::new(config));
        let traffic = Arc::new(Traffic::default());
        let data = web::Data::new(Arc::clone(&shared));
        let traffic_data = web::Data::from(Arc::clone(&traffic));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(traffic_data.clone())
                .configure(routes)
        })
        .workers(workers)
        // A gateway writes small frames one at a time; with Nagle's
        // algorithm each would wait for the client's delayed ACK (up to
        // 40 ms on Linux) whenever the previous one is unacknowledged.
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(2)
        .client_disconnect_timeout(Duration::from_millis(250))
        .max_connections(50_000)
        .backlog(4096)
        .bind(bind)
        .map_err(MockError::Bind)?
        .bind(resume_bind)
        .map_err(MockError::Bind)?;
        let (addr, resume_addr) = match server.addrs().as_slice() {
            [addr, resume_addr] => (*addr, *resume_addr),
            _ => return Err(MockError::Bind(std::io::Error::other("no address bound"))),
        };
        let _ = shared.addr.set(addr);
        let _ = shared.resume_addr.set(resume_addr);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        log::info!("discore-mock listening on {addr}");
        Ok(Self {
            shared,
            traffic,
            handle,
        })
    }

    /// The discovery listener's address (gateway URL, REST, `/_mock`).
    pub fn addr(&self) -> SocketAddr {
        self.shared
            .addr
            .get()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The discovery URL (`/gateway`'s `url`), bare as Discord's:
    /// `ws://127.0.0.1:PORT`.
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url()
    }

    /// READY's `resume_gateway_url`, bare as Discord's:
    /// `ws://127.0.0.1:RESUME_PORT`, a listener of its own on the same
    /// server. Resuming anywhere else is a violation.
    pub fn resume_url(&self) -> String {
        self.shared.resume_url()
    }

    /// The REST base: `http://127.0.0.1:PORT/api/v10` (`/api/v9` works too).
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v10", self.shared.port())
    }

    /// Time since the server started: the clock of every `at` in
    /// [`Observed`].
    pub fn elapsed(&self) -> Duration {
        self.shared.elapsed()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &MockConfig {
        &self.shared.config
    }

    /// Stops the server: every connection is closed with 1001, then the
    /// listener stops. Idempotent.
    pub async fn stop(&self) {
        self.stop_traffic();
        let open = {
            let mut state = self.shared.lock();
            state.stopping = true;
            let all = state.resolve(&Target::All);
            state.send_control(&all, || Control::Shutdown)
        };
        if open > 0 {
            let _ = self
                .wait_until(Duration::from_secs(3), |o| o.open_connections() == 0)
                .await;
        }
        // The gateway connections are closed already; a graceful stop would
        // only wait (actix checks once a second) for sockets in teardown.
        self.handle.stop(false).await;
    }

    /// A snapshot of everything observed so far.
    pub fn observed(&self) -> Observed {
        let mut state = self.shared.lock();
        state.purge(Instant::now());
        state.refresh_written();
        state.observed.clone()
    }

    /// Starts (or stops) noting when each dispatch is taken by its
    /// connection's socket writer, in the turn in which the writer writes
    /// it to the socket, for [`take_send_times`](Self::take_send_times).
    /// Off by default.
    pub fn record_send_times(&self, on: bool) {
        self.shared.send_clock.set(on);
    }

    /// The send times noted since the last take, in the order the writers
    /// took them; empties the record.
    pub fn take_send_times(&self) -> SendTimes {
        self.shared.send_clock.take()
    }

    /// Looks at the observations without copying them.
    pub fn with_observed<R>(&self, f: impl FnOnce(&Observed) -> R) -> R {
        let mut state = self.shared.lock();
        state.purge(Instant::now());
        state.refresh_written();
        f(&state.observed)
    }

    /// Waits until `condition` holds, checking every 5 ms, for at most
    /// `timeout`. Tests use it instead of sleeping.
    ///
    /// # Errors
    ///
    /// [`WaitTimeout`] when the condition still fails at the deadline.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&Observed) -> bool,
    ) -> Result<(), WaitTimeout> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.with_observed(&mut condition) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(WaitTimeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // ----- faults -----

    /// Injects a fault into the connections `target` selects; returns how
    /// many connections it reached.
    pub fn fault(&self, target: &Target, fault: Fault) -> usize {
        let state = self.shared.lock();
        let ids = state.resolve(target);
        state.send_control(&ids, || Control::Fault(fault.clone()))
    }

    /// Sends op 7 Reconnect.
    pub fn reconnect(&self, target: &Target) -> usize {
        self.fault(target, Fault::Reconnect)
    }

    /// Sends op 9 Invalid Session with `d = resumable`.
    pub fn invalid_session(&self, target: &Target, resumable: bool) -> usize {
        self.fault(target, Fault::InvalidSession { resumable })
    }

    /// Closes with `code`.
    pub fn close(&self, target: &Target, code: u16) -> usize {
        self.fault(target, Fault::Close { code, reason: None })
    }

    /// Drops TCP without a close frame.
    pub fn drop_connection(&self, target: &Target) -> usize {
        self.fault(target, Fault::DropTcp)
    }

    /// Stops (`false`) or resumes (`true`) acknowledging heartbeats.
    pub fn set_heartbeat_acks(&self, target: &Target, enabled: bool) -> usize {
        self.fault(target, Fault::HeartbeatAcks { enabled })
    }

    /// Sends op 1, asking for an immediate heartbeat.
    pub fn request_heartbeat(&self, target: &Target) -> usize {
        self.fault(target, Fault::RequestHeartbeat)
    }

    /// Holds all outbound frames for `duration`.
    pub fn stall(&self, target: &Target, duration: Duration) -> usize {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.fault(target, Fault::Stall { millis })
    }

    /// Sends a frame no decompressor accepts.
    pub fn corrupt_next_frame(&self, target: &Target) -> usize {
        self.fault(target, Fault::CorruptNextFrame)
    }

    /// Sends `bytes` as one message, exactly as given (see
    /// [`Fault::Payload`]).
    pub fn send_payload(&self, target: &Target, bytes: &[u8]) -> usize {
        self.fault(
            target,
            Fault::Payload {
                bytes: bytes.to_vec(),
            },
        )
    }

    /// Sends a text frame that is not JSON.
    pub fn send_malformed_json(&self, target: &Target) -> usize {
        self.fault(target, Fault::MalformedJson)
    }

    /// Sends a MESSAGE_CREATE with the next sequence number and data that
    /// is not JSON (see [`Fault::MalformedDispatchData`]).
    pub fn send_malformed_dispatch_data(&self, target: &Target) -> usize {
        self.fault(target, Fault::MalformedDispatchData)
    }

    /// Holds (`true`) or releases (`false`) every Resume: a held Resume is
    /// recorded as received and left unanswered, with its session where it
    /// was, until resumes are released; then each is judged and answered as
    /// it would have been. A test holds resumes to make dispatches miss a
    /// client for certain (they are routed while the client waits) and then
    /// checks that the Resume replayed them.
    pub fn hold_resumes(&self, hold: bool) {
        let mut state = self.shared.lock();
        state.resumes_held = hold;
        if !hold {
            let all = state.resolve(&Target::All);
            state.send_control(&all, || Control::ReleaseResume);
        }
    }

    /// The next `count` connections get op 7 instead of Hello.
    pub fn reconnect_instead_of_hello(&self, count: u32) {
        self.shared.lock().reconnect_instead_of_hello = count;
    }

    /// The next `count` Identifies that would be accepted get op 9 (`d:
    /// false`) instead, as Discord answers an Identify it will not take.
    /// Each still occupies its bucket's window and is recorded as
    /// [`IdentifyOutcome::Refused`](crate::IdentifyOutcome::Refused).
    pub fn refuse_identifies(&self, count: u32) {
        self.shared.lock().identifies_to_refuse = count;
    }

    /// Puts these guilds in an outage (`true`) or ends it (`false`): a
    /// session identified meanwhile gets each as GUILD_DELETE with
    /// `unavailable: true` instead of its GUILD_CREATE.
    pub fn set_guilds_unavailable(&self, guild_ids: &[u64], unavailable: bool) {
        let mut state = self.shared.lock();
        for id in guild_ids {
            if unavailable {
                state.unavailable_guilds.insert(*id);
            } else {
                state.unavailable_guilds.remove(id);
            }
        }
    }

    /// Answers upgrades with 503 for `duration` (an outage). Open
    /// connections are not touched; combine with [`close`](Self::close).
    pub fn outage(&self, duration: Duration) {
        self.shared.lock().outage_until = Some(Instant::now() + duration);
    }

    // ----- events -----

    /// Dispatches an arbitrary event. With `target` `None` it goes where
    /// Discord would send it: to the sessions owning `data.guild_id`, or
    /// to shard 0 when there is none. Intents filter it (by its name) and
    /// message content is blanked as for real events. Returns where it went
    /// and the sequence number it got in each session.
    pub fn dispatch(&self, target: Option<&Target>, event: &str, data: &Value) -> Vec<Delivery> {
        // Serialized outside the lock: connection tasks take the same lock
        // to drain their outboxes, and a caller dispatching in a loop would
        // otherwise hold it nearly all the time.
        let bot_id = self.shared.lock().world.bot_id;
        let event = Event::from_value(event, data, bot_id);
        self.shared.lock().route(&event, target, Instant::now())
    }

    /// Dispatches an event to the sessions owning `guild_id`.
    pub fn dispatch_to_guild(&self, guild_id: u64, event: &str, data: &Value) -> Vec<Delivery> {
        self.dispatch(Some(&Target::Guild(guild_id)), event, data)
    }

    /// Posts a message from a member into a text channel: MESSAGE_CREATE
    /// goes to the shard owning the guild. `<@id>` in `content` mentions
    /// the bot or a member. Returns the MESSAGE_CREATE data.
    ///
    /// # Errors
    ///
    /// [`MockError::UnknownChannel`] or [`MockError::NotTextChannel`].
    pub fn post_message(
        &self,
        channel_id: u64,
        content: &str,
    ) -> Result<(Value, Vec<Delivery>), MockError> {
        self.shared
            .create_message(channel_id, content, Author::Member(0))
    }

    /// Dispatches INTERACTION_CREATE (a slash command by member 0) in a text
    /// channel; its callback is then accepted once over REST.
    ///
    /// # Errors
    ///
    /// [`MockError::UnknownChannel`] or [`MockError::NotTextChannel`].
    pub fn create_interaction(
        &self,
        channel_id: u64,
        command: &str,
        options: &Value,
    ) -> Result<CreatedInteraction, MockError> {
        self.shared.create_interaction(channel_id, command, options)
    }

    /// Adds guilds to the world. Shards that now hold more than
    /// `max_guilds_per_shard` are closed with 4011 (their sessions are
    /// gone), new Identifies for them get 4011, and `/gateway/bot`
    /// recommends the new count. Returns the new guild ids.
    pub fn add_guilds(&self, count: u64) -> Vec<u64> {
        self.shared.lock().add_guilds(count)
    }

    /// Starts the traffic generator (replacing a running one).
    pub fn start_traffic(&self, config: TrafficConfig) {
        self.traffic.start(&self.shared, config);
    }

    /// Stops the traffic generator.
    pub fn stop_traffic(&self) {
        self.traffic.stop();
    }

    /// Sends `count` MESSAGE_CREATE dispatches to each selected connection
    /// as fast as it reads them (pre-encoded, with increasing sequence
    /// numbers, kept in the bounded replay buffer). Await
    /// [`FloodHandle::finished`] for completion.
    pub fn flood(&self, target: &Target, count: u64) -> FloodHandle {
        let state = self.shared.lock();
        let ids = state.resolve(target);
        let mut receivers = Vec::new();
        for id in ids {
            if let Some(handle) = state.connections.get(&id) {
                let (done, receiver) = oneshot::channel();
                if handle.control.send(Control::Flood { count, done }).is_ok() {
                    receivers.push(receiver);
                }
            }
        }
        FloodHandle { receivers }
    }

    // ----- the world -----

    /// Ids of every guild, in creation order.
    pub fn guild_ids(&self) -> Vec<u64> {
        self.shared.lock().world.guilds.clone()
    }

    /// The bot's user id (also the application id).
    pub fn bot_id(&self) -> u64 {
        self.shared.lock().world.bot_id
    }

    /// Text channel ids of a guild.
    pub fn text_channel_ids(&self, guild_id: u64) -> Vec<u64> {
        let state = self.shared.lock();
        let world = &state.world;
        world.guild_index(guild_id).map_or_else(Vec::new, |g| {
            (0..world.channels_per_guild())
                .map(|k| world.channel_id(g, ChannelKind::Text(k)))
                .collect()
        })
    }

    /// The voice channel id of a guild.
    pub fn voice_channel_id(&self, guild_id: u64) -> Option<u64> {
        let state = self.shared.lock();
        let g = state.world.guild_index(guild_id)?;
        Some(state.world.channel_id(g, ChannelKind::Voice))
    }

    /// User ids of a guild's members (without the bot).
    pub fn member_ids(&self, guild_id: u64) -> Vec<u64> {
        let state = self.shared.lock();
        let world = &state.world;
        world.guild_index(guild_id).map_or_else(Vec::new, |g| {
            (0..world.members_per_guild())
                .map(|m| world.user_id(g, m))
                .collect()
        })
    }

    /// A guild as the world holds it: the GUILD_CREATE data a session with
    /// GUILD_PRESENCES gets (every member listed, when the guild is not
    /// large at the maximum threshold of 250), so a test can compare a
    /// bot's cache with the truth. `None` for an unknown guild.
    pub fn guild_object(&self, guild_id: u64) -> Option<Value> {
        let state = self.shared.lock();
        let g = state.world.guild_index(guild_id)?;
        Some(
            state
                .world
                .guild_create(g, crate::intents::GUILD_PRESENCES, 250),
        )
    }

    /// The shard count `/gateway/bot` recommends now.
    pub fn recommended_shards(&self) -> u64 {
        self.shared.lock().recommended_shards()
    }

    /// Session starts left in the daily budget.
    pub fn session_starts_remaining(&self) -> u32 {
        let mut state = self.shared.lock();
        state.refresh_budget(Instant::now());
        state.budget_remaining
    }
}

impl Shared {
    /// Posts a message as `author` in a text channel: stored, and
    /// MESSAGE_CREATE routed. Returns the MESSAGE_CREATE data and where it
    /// went.
    pub(crate) fn create_message(
        &self,
        channel_id: u64,
        content: &str,
        author: Author,
    ) -> Result<(Value, Vec<Delivery>), MockError> {
        let mut state = self.lock();
        let channel = state
            .world
            .channel(channel_id)
            .ok_or(MockError::UnknownChannel(channel_id))?;
        if !matches!(channel.kind, ChannelKind::Text(_)) {
            return Err(MockError::NotTextChannel(channel_id));
        }
        let mut body = serde_json::Map::new();
        body.insert("content".to_owned(), Value::from(content));
        crate::rest::create_message(&mut state, channel_id, author, &body, None)
            .map(|created| (created.gateway, created.deliveries))
            .map_err(|e| MockError::InvalidMessage(e.to_string()))
    }

    pub(crate) fn create_interaction(
        &self,
        channel_id: u64,
        command: &str,
        options: &Value,
    ) -> Result<CreatedInteraction, MockError> {
        let mut state = self.lock();
        let world = Arc::clone(&state.world);
        let channel = world
            .channel(channel_id)
            .ok_or(MockError::UnknownChannel(channel_id))?;
        let ChannelKind::Text(k) = channel.kind else {
            return Err(MockError::NotTextChannel(channel_id));
        };
        state.interaction_counter += 1;
        let id = payloads::interaction_id(state.interaction_counter);
        let token = format!("mock-interaction.{}", payloads::hex_id(world.bot_id, id));
        let member = 0;
        let data = payloads::interaction(
            &world,
            channel.guild,
            k,
            member,
            id,
            &token,
            command,
            options,
        );
        let event = Event::from_value("INTERACTION_CREATE", &data, world.bot_id);
        let deliveries = state.route(&event, None, Instant::now());
        state.store.insert_interaction(
            id,
            Interaction {
                token: token.clone(),
                guild: channel.guild,
                channel: channel_id,
                user_id: world.user_id(channel.guild, member),
                command: command.to_owned(),
                responded: None,
                original: None,
            },
        );
        Ok(CreatedInteraction {
            id,
            token,
            deliveries,
        })
    }
}
