//! The protocol rules of one shard as a plain state machine
//! (`docs/protocol.md`, from "Connection lifecycle" to "Close codes").
//!
//! The machine does no IO and reads no clock: the [`Shard`](crate::Shard)
//! actor feeds it what happened on the socket together with the current time,
//! then carries out the [`Action`]s it queues. That keeps every rule
//! unit-testable on virtual time.

mod heartbeat;
#[cfg(test)]
mod tests;

use crate::backoff::Backoff;
use discore_protocol::{CloseAction, CloseCode, Intents, Session, ShardFailureReason};
use heartbeat::Heartbeat;
use std::{
    collections::VecDeque,
    ops::RangeInclusive,
    time::{Duration, Instant},
};

pub use heartbeat::Latency;

/// Close code the client uses when it intends to resume: anything but
/// 1000/1001 keeps the session alive on Discord's side.
pub const RESUMABLE_CLOSE: u16 = 4000;
/// Close code that ends the session for good.
pub const SESSION_ENDING_CLOSE: u16 = 1000;

/// Where a shard is in its lifecycle.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ShardState {
    /// Not connected; a connection is scheduled (or the shard has not started).
    Disconnected,
    /// Opening the WebSocket.
    Connecting,
    /// Connected, waiting for Hello.
    AwaitingHello,
    /// Hello received; identifying (possibly waiting in the identify queue).
    Identifying,
    /// Hello received; Resume sent, the missed events are being replayed.
    Resuming,
    /// READY or RESUMED received: events flow and commands are sent.
    Active,
    /// Stopped by a fatal close code.
    Failed(ShardFailureReason),
    /// Stopped on request.
    Stopped,
}

impl ShardState {
    /// Whether the shard stopped for good.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Failed(_) | Self::Stopped)
    }
}

/// Which URL the next connection goes to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ConnectTarget {
    /// The session's `resume_gateway_url`.
    ResumeUrl,
    /// The discovery URL (configured or from `GET /gateway/bot`).
    DiscoveryUrl,
}

/// A lifecycle change that subscribers are told about.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Lifecycle {
    /// The WebSocket is open.
    Connected,
    /// READY arrived: a new session started.
    Ready {
        /// The new session.
        session_id: String,
    },
    /// RESUMED arrived: the missed events were replayed.
    Resumed,
    /// The shard came back after losing a connection.
    Reconnected {
        /// `true` if the session was resumed, `false` if a new session had to
        /// be started (presence and per-session state were reset).
        resumed: bool,
    },
    /// The connection ended.
    Disconnected {
        /// The close code, if a close frame was exchanged.
        code: Option<u16>,
        /// Whether discore closed the connection (to resume or stop).
        by_client: bool,
    },
    /// The shard stopped for good.
    Failed(ShardFailureReason),
}

/// What the actor must do next.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Action {
    /// Open a connection after `delay`.
    Connect {
        /// How long to wait first (backoff, op 9 delay).
        delay: Duration,
        /// Which URL to use.
        target: ConnectTarget,
    },
    /// Close the socket with `code` and drop it without waiting for the
    /// server's close frame.
    Close {
        /// The close code to send.
        code: u16,
    },
    /// Send a heartbeat with this sequence.
    SendHeartbeat(Option<u64>),
    /// Wait for the identify queue, then call [`Machine::identify_permitted`].
    RequestIdentify,
    /// Send Resume.
    SendResume {
        /// The session to resume.
        session_id: String,
        /// The last sequence received.
        sequence: u64,
    },
    /// The session is active: send the queued commands.
    FlushCommands,
    /// Tell subscribers.
    Notify(Lifecycle),
}

/// Settings of the machine.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// Random wait after op 9 before identifying again.
    pub invalid_session_delay: RangeInclusive<Duration>,
    /// Longest wait for Hello after the socket opened.
    pub hello_timeout: Duration,
    /// Failed connections to the resume URL in a row before the session is
    /// given up and a new one identified on the discovery URL. Default 8:
    /// with the default backoff, about one to two minutes of outage.
    pub resume_url_attempts: u32,
    /// The intents the shard identifies with: a 4014 failure names the
    /// privileged ones among them.
    pub intents: Intents,
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            invalid_session_delay: Duration::from_secs(1)..=Duration::from_secs(5),
            hello_timeout: Duration::from_secs(10),
            resume_url_attempts: 8,
            intents: Intents::empty(),
        }
    }
}

/// How a shard is asked to stop.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StopMode {
    /// Close with 1000: the session ends and the bot goes offline.
    End,
    /// Close with 4000 and keep the session for whoever resumes it next.
    HandOff,
}

/// The protocol state of one shard.
#[derive(Debug)]
pub struct Machine {
    config: MachineConfig,
    state: ShardState,
    session: Option<Session>,
    /// The last dispatch sequence of the current or last connection.
    sequence: Option<u64>,
    heartbeat: Option<Heartbeat>,
    hello_deadline: Option<Instant>,
    latency: Latency,
    /// Connection attempts in a row that did not prove healthy (see
    /// [`Machine::consecutive_failures`]).
    failures: u32,
    /// The current connection proved healthy: active, and a heartbeat was
    /// acknowledged on it.
    healthy: bool,
    /// Identify went out on the current connection.
    identify_sent: bool,
    /// Of those, failures to reach the resume URL.
    resume_url_failures: u32,
    /// The target of the connection in progress.
    target: ConnectTarget,
    /// A session has been active on this shard before.
    was_active: bool,
    /// The client has closed the current connection and waits for the next.
    closing: bool,
    rng: fastrand::Rng,
    actions: VecDeque<Action>,
}

impl Machine {
    /// A machine that will resume `session` if given, or identify.
    pub fn new(config: MachineConfig, session: Option<Session>, seed: u64) -> Self {
        Self {
            config,
            state: ShardState::Disconnected,
            sequence: session.as_ref().map(|s| s.sequence),
            session,
            heartbeat: None,
            hello_deadline: None,
            latency: Latency::default(),
            failures: 0,
            healthy: false,
            identify_sent: false,
            resume_url_failures: 0,
            target: ConnectTarget::DiscoveryUrl,
            was_active: false,
            closing: false,
            rng: fastrand::Rng::with_seed(seed),
            actions: VecDeque::new(),
        }
    }

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The current state.
    pub const fn state(&self) -> ShardState {
        self.state
    }

    /// The resumable session, if any.
    pub const fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Heartbeat latency.
    pub const fn latency(&self) -> &Latency {
        &self.latency
    }

    /// Connection attempts in a row that did not prove healthy. A
    /// connection proves healthy once its session is active and a heartbeat
    /// was acknowledged on it; any other end of a connection (a close, op 7,
    /// op 9, a refused upgrade, a missing Hello) counts, and the count sets
    /// the reconnect backoff.
    pub const fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The earliest time [`Machine::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let heartbeat = self.heartbeat.as_ref().map(|h| h.next_due);
        match (heartbeat, self.hello_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts the shard: the first connection goes out at once.
    pub fn start(&mut self) {
        let target = self.next_target();
        self.schedule_connect(Duration::ZERO, target);
    }

    /// The socket is open.
    pub fn on_connected(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        self.state = ShardState::AwaitingHello;
        self.closing = false;
        self.healthy = false;
        self.identify_sent = false;
        self.hello_deadline = Some(now + self.config.hello_timeout);
        self.notify(Lifecycle::Connected);
    }

    /// Opening the socket failed.
    pub fn on_connect_failed(&mut self) {
        if self.state.is_terminal() {
            return;
        }
        let delay = self.next_attempt_delay();
        let target = self.next_target();
        self.schedule_connect(delay, target);
    }

    /// Hello (op 10) arrived.
    pub fn on_hello(&mut self, interval: Duration, now: Instant) {
        if !matches!(self.state, ShardState::AwaitingHello) {
            // A second Hello on a connection is not meaningful; ignore it.
            return;
        }
        self.hello_deadline = None;
        let jitter = self.rng.f64();
        self.heartbeat = Some(Heartbeat::after_hello(interval, jitter, now));
        match &self.session {
            Some(session) => {
                self.state = ShardState::Resuming;
                self.actions.push_back(Action::SendResume {
                    session_id: session.id.clone(),
                    sequence: session.sequence,
                });
            }
            None => {
                self.state = ShardState::Identifying;
                self.actions.push_back(Action::RequestIdentify);
            }
        }
    }

    /// The identify queue let this shard identify. Returns whether Identify
    /// should be sent now (the connection may have changed while waiting).
    pub fn identify_permitted(&self) -> bool {
        matches!(self.state, ShardState::Identifying) && !self.closing && !self.identify_sent
    }

    /// Identify went out on this connection: no second one goes out on it.
    pub fn on_identify_sent(&mut self) {
        self.identify_sent = true;
    }

    /// A dispatch other than READY and RESUMED arrived with sequence `s`.
    #[inline]
    pub fn on_dispatch(&mut self, sequence: u64) {
        self.sequence = Some(sequence);
        if let Some(session) = &mut self.session {
            session.sequence = sequence;
        }
    }

    /// READY arrived: a new session is active.
    pub fn on_ready(&mut self, sequence: u64, session_id: String, resume_url: Option<String>) {
        self.sequence = Some(sequence);
        self.session = Some(Session::new(session_id.clone(), sequence, resume_url));
        let reconnected = self.was_active;
        self.become_active();
        self.notify(Lifecycle::Ready { session_id });
        if reconnected {
            self.notify(Lifecycle::Reconnected { resumed: false });
        }
    }

    /// RESUMED arrived: the replay is complete.
    pub fn on_resumed(&mut self, sequence: u64) {
        self.on_dispatch(sequence);
        self.become_active();
        self.notify(Lifecycle::Resumed);
        self.notify(Lifecycle::Reconnected { resumed: true });
    }

    /// The server asked for a heartbeat (op 1): answer at once.
    pub fn on_heartbeat_request(&mut self, now: Instant) {
        if let Some(heartbeat) = &mut self.heartbeat {
            // The schedule is kept; the ACK to this beat clears the flag.
            heartbeat.record_sent(now);
        }
        self.actions.push_back(Action::SendHeartbeat(self.sequence));
    }

    /// A heartbeat ACK (op 11) arrived.
    pub fn on_heartbeat_ack(&mut self, now: Instant) {
        if matches!(self.state, ShardState::Active) && !self.closing {
            // The connection works end to end: the next reconnect, whatever
            // its cause, is a first attempt again.
            self.healthy = true;
            self.failures = 0;
        }
        if let Some(heartbeat) = &mut self.heartbeat {
            heartbeat.awaiting_ack = false;
            if let Some(sent) = heartbeat.last_sent.take() {
                self.latency.record(now.saturating_duration_since(sent));
            }
        }
    }

    /// Reconnect (op 7): close and resume, at once after a healthy
    /// connection, after the backoff otherwise (a gateway that answers
    /// every connection with op 7 is not hammered).
    pub fn on_reconnect_request(&mut self) {
        if self.state.is_terminal() || self.closing {
            return;
        }
        let delay = self.next_attempt_delay();
        let target = self.next_target();
        self.close_and_reconnect(RESUMABLE_CLOSE, delay, target);
    }

    /// Invalid Session (op 9) arrived.
    pub fn on_invalid_session(&mut self, resumable: bool) {
        if self.state.is_terminal() || self.closing {
            return;
        }
        let backoff = self.next_attempt_delay();
        if resumable && self.session.is_some() {
            let target = self.next_target();
            self.close_and_reconnect(RESUMABLE_CLOSE, backoff, target);
            return;
        }
        // A failed resume, an identify over the concurrency limit, or an
        // invalidated session: forget it, wait 1–5 s (or the backoff, if
        // longer), identify on the discovery URL. The wait protects the
        // identify bucket.
        self.forget_session();
        let delay = self
            .random_in(self.config.invalid_session_delay.clone())
            .max(backoff);
        self.close_and_reconnect(SESSION_ENDING_CLOSE, delay, ConnectTarget::DiscoveryUrl);
    }

    /// The connection ended without the client closing it: a close frame
    /// from the server (`Some(code)`) or a transport error (`None`).
    pub fn on_closed(&mut self, code: Option<u16>) {
        self.heartbeat = None;
        self.hello_deadline = None;
        if self.closing || self.state.is_terminal() {
            // Expected: the client closed it and already scheduled what follows.
            return;
        }
        self.notify(Lifecycle::Disconnected {
            code,
            by_client: false,
        });
        let action = code.map_or(CloseAction::Resume, |code| CloseCode::from(code).action());
        if let CloseAction::Fatal(reason) = action {
            let reason = reason.with_intents(self.config.intents);
            self.count_failure_unless_healthy();
            self.state = ShardState::Failed(reason);
            self.notify(Lifecycle::Failed(reason));
            return;
        }
        let delay = self.next_attempt_delay();
        if matches!(action, CloseAction::NewSession) {
            self.forget_session();
        }
        let target = self.next_target();
        self.schedule_connect(delay, target);
    }

    /// The connection delivered something unusable: a corrupt compressed
    /// frame, malformed JSON, an oversized message, or a READY without a
    /// session. The client closes it and resumes on a fresh connection, or
    /// identifies anew when `new_session` says there is nothing to resume.
    pub fn on_protocol_error(&mut self, new_session: bool) {
        if self.state.is_terminal() || self.closing {
            return;
        }
        let delay = self.next_attempt_delay();
        if new_session {
            self.forget_session();
        }
        let target = self.next_target();
        self.close_and_reconnect(RESUMABLE_CLOSE, delay, target);
    }

    /// The last dispatch sequence received, if the session has one.
    pub const fn last_sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// Time passed. `reader_paused` tells that the actor stopped reading the
    /// socket since the last heartbeat because subscribers were behind: a
    /// missing ACK may then sit unread in the socket, so it is no evidence
    /// of a zombie connection.
    pub fn on_timer(&mut self, now: Instant, reader_paused: bool) {
        if self.hello_deadline.is_some_and(|deadline| now >= deadline) {
            self.hello_deadline = None;
            let delay = self.next_attempt_delay();
            let target = self.next_target();
            self.close_and_reconnect(RESUMABLE_CLOSE, delay, target);
            return;
        }
        let Some(heartbeat) = &mut self.heartbeat else {
            return;
        };
        if now < heartbeat.next_due {
            return;
        }
        if heartbeat.awaiting_ack && !reader_paused {
            // Zombie: no ACK between two sends. Drop the socket with a
            // resumable code and resume (at once if it had been healthy).
            let delay = self.next_attempt_delay();
            let target = self.next_target();
            self.close_and_reconnect(RESUMABLE_CLOSE, delay, target);
            return;
        }
        heartbeat.record_sent(now);
        // Keep the cadence even if the timer fired late, but never schedule
        // into the past (a stalled process would otherwise burst).
        heartbeat.next_due = (heartbeat.next_due + heartbeat.interval).max(now);
        self.actions.push_back(Action::SendHeartbeat(self.sequence));
    }

    /// Stops the shard. Returns the session to hand off for [`StopMode::HandOff`].
    pub fn stop(&mut self, mode: StopMode) -> Option<Session> {
        let connected = !matches!(
            self.state,
            ShardState::Disconnected | ShardState::Connecting
        ) && !self.state.is_terminal()
            && !self.closing;
        let code = match mode {
            StopMode::End => SESSION_ENDING_CLOSE,
            StopMode::HandOff => RESUMABLE_CLOSE,
        };
        if connected {
            self.actions.push_back(Action::Close { code });
            self.notify(Lifecycle::Disconnected {
                code: Some(code),
                by_client: true,
            });
        }
        self.state = ShardState::Stopped;
        self.closing = true;
        self.heartbeat = None;
        self.hello_deadline = None;
        match mode {
            StopMode::End => {
                self.forget_session();
                None
            }
            StopMode::HandOff => self.session.clone(),
        }
    }

    fn become_active(&mut self) {
        self.state = ShardState::Active;
        self.resume_url_failures = 0;
        self.was_active = true;
        self.actions.push_back(Action::FlushCommands);
    }

    fn close_and_reconnect(&mut self, code: u16, delay: Duration, target: ConnectTarget) {
        let connected = !matches!(
            self.state,
            ShardState::Disconnected | ShardState::Connecting
        );
        if connected && !self.closing {
            self.actions.push_back(Action::Close { code });
            self.notify(Lifecycle::Disconnected {
                code: Some(code),
                by_client: true,
            });
        }
        self.closing = true;
        self.heartbeat = None;
        self.hello_deadline = None;
        self.schedule_connect(delay, target);
    }

    fn schedule_connect(&mut self, delay: Duration, target: ConnectTarget) {
        self.state = ShardState::Connecting;
        self.target = target;
        self.actions.push_back(Action::Connect { delay, target });
    }

    /// The connection attempt in progress ended: it counts unless it proved
    /// healthy, and the next attempt waits the backoff for the count (the
    /// first attempt after a healthy connection goes at once).
    fn next_attempt_delay(&mut self) -> Duration {
        self.count_failure_unless_healthy();
        let jitter = self.rng.f64();
        self.config
            .backoff
            .delay(self.failures.saturating_add(1), jitter)
    }

    fn count_failure_unless_healthy(&mut self) {
        if self.healthy {
            // Counted once: the next end of this same connection (it is
            // closing) must not be taken for a healthy one again.
            self.healthy = false;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if matches!(self.target, ConnectTarget::ResumeUrl)
            && !matches!(self.state, ShardState::Active)
        {
            self.resume_url_failures = self.resume_url_failures.saturating_add(1);
        }
    }

    /// Where the next connection goes: the resume URL while there is a
    /// session (the gateway expects resumes there, never on the discovery
    /// URL). When the resume URL could not be reached `resume_url_attempts`
    /// times in a row, the resume is not possible: the session is given up
    /// and a new one is identified on the discovery URL (`docs/protocol.md`,
    /// "Resuming").
    fn next_target(&mut self) -> ConnectTarget {
        if self.session.is_some() && self.resume_url_failures >= self.config.resume_url_attempts {
            self.forget_session();
        }
        match &self.session {
            Some(session) if session.resume_url.is_some() => ConnectTarget::ResumeUrl,
            _ => ConnectTarget::DiscoveryUrl,
        }
    }

    fn forget_session(&mut self) {
        self.session = None;
        self.sequence = None;
        self.resume_url_failures = 0;
    }

    fn random_in(&mut self, range: RangeInclusive<Duration>) -> Duration {
        let (low, high) = (*range.start(), *range.end());
        if high <= low {
            return low;
        }
        low + (high - low).mul_f64(self.rng.f64())
    }

    fn notify(&mut self, lifecycle: Lifecycle) {
        self.actions.push_back(Action::Notify(lifecycle));
    }
}
