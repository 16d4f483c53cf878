//! Close frames and everything else a connection can do to the IO-free
//! state machine, in any order the shard actor allows.
//!
//! The input is a script: a few bytes of configuration, then events, each
//! an opcode byte and its operands (see [`Step`]). A close frame goes
//! through the WebSocket codec exactly as it comes off the socket (the
//! client side of `actix-http`'s codec), then to the machine as the shard
//! hands it over: a close code, `None` for a transport error, or a protocol
//! error for a frame the codec refuses.
//!
//! The harness keeps what the actor would: whether a connection is open
//! (frames only arrive on one), whether a connection attempt is pending,
//! whether an identify permit is awaited. After every event it drains the
//! machine's actions and checks them.

use crate::input::{Input, Output};
use actix_codec::Decoder as _;
use actix_http::ws::{Codec, Frame};
use bytes::BytesMut;
use discore_gateway::{
    Backoff,
    machine::{Action, ConnectTarget, Lifecycle, Machine, MachineConfig, ShardState, StopMode},
};
use discore_protocol::{CloseAction, CloseCode, Session};
use std::time::{Duration, Instant};

/// Events read from one input at most.
const MAX_STEPS: usize = 256;

/// One event of a script, by its opcode byte (`byte % 16`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u8)]
pub enum Step {
    /// The pending connection attempt succeeds.
    Connected = 0,
    /// The pending connection attempt fails.
    ConnectFailed = 1,
    /// Hello; operand: the interval in ms (2 bytes).
    Hello = 2,
    /// READY; operands: sequence (1 byte), session id (chunk), whether it
    /// has a resume URL (1 byte).
    Ready = 3,
    /// RESUMED; operand: sequence (1 byte).
    Resumed = 4,
    /// A dispatch; operand: sequence (1 byte).
    Dispatch = 5,
    /// Heartbeat ACK.
    HeartbeatAck = 6,
    /// The server asks for a heartbeat (op 1).
    HeartbeatRequest = 7,
    /// Reconnect (op 7).
    Reconnect = 8,
    /// Invalid Session (op 9); operand: resumable (1 byte).
    InvalidSession = 9,
    /// A close frame; operand: its payload (chunk; code and reason).
    CloseFrame = 10,
    /// The TCP connection ends without a close frame.
    TransportLost = 11,
    /// An unusable payload; operand: whether it was READY without a session.
    ProtocolError = 12,
    /// Time passes; operands: ms (2 bytes), whether reading was paused.
    Time = 13,
    /// The shard is stopped; operand: hand the session off (1 byte).
    Stop = 14,
    /// The identify queue grants the awaited permit.
    IdentifyPermit = 15,
}

/// Writes scripts for [`close`], for seeds and tests.
#[derive(Clone, Debug, Default)]
pub struct Script(Output);

impl Script {
    /// A script with the configuration bytes: backoff base and cap in ms,
    /// failed resume-URL connections before giving a session up, and a
    /// session to resume at start if `session` is set.
    pub fn new(base_ms: u16, cap_ms: u16, resume_url_attempts: u8, session: Option<&str>) -> Self {
        let output = Output::new()
            .u16(base_ms)
            .u16(cap_ms)
            .u8(resume_url_attempts)
            .u64(7);
        Self(match session {
            Some(id) => output.u8(1).chunk(id.as_bytes()),
            None => output.u8(0),
        })
    }

    /// Appends an event without operands.
    #[must_use]
    pub fn step(self, step: Step) -> Self {
        Self(self.0.u8(step as u8))
    }

    /// Appends an event with one operand byte.
    #[must_use]
    pub fn step_u8(self, step: Step, operand: u8) -> Self {
        Self(self.0.u8(step as u8).u8(operand))
    }

    /// Appends Hello with its interval.
    #[must_use]
    pub fn hello(self, interval_ms: u16) -> Self {
        Self(self.0.u8(Step::Hello as u8).u16(interval_ms))
    }

    /// Appends READY.
    #[must_use]
    pub fn ready(self, sequence: u8, session: &str, resume_url: bool) -> Self {
        Self(
            self.0
                .u8(Step::Ready as u8)
                .u8(sequence)
                .chunk(session.as_bytes())
                .u8(u8::from(resume_url)),
        )
    }

    /// Appends a close frame with `code` and `reason`.
    #[must_use]
    pub fn close_frame(self, code: u16, reason: &[u8]) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        Self(self.0.u8(Step::CloseFrame as u8).chunk(&payload))
    }

    /// Appends passing time.
    #[must_use]
    pub fn time(self, millis: u16, paused: bool) -> Self {
        Self(self.0.u8(Step::Time as u8).u16(millis).u8(u8::from(paused)))
    }

    /// The script's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0.finish()
    }
}

struct Harness {
    machine: Machine,
    longest_delay: Duration,
    now: Instant,
    /// A connection is open and its frames are read.
    open: bool,
    /// A connection attempt is scheduled or under way.
    pending: Option<ConnectTarget>,
    /// The shard waits for an identify permit.
    identify_waiting: bool,
    /// The state stopped for good at some point.
    terminal: bool,
}

/// Fuzz body: a script of connection events, close frames among them.
///
/// Invariants: nothing panics; every close code maps back to itself and
/// its policy is what the machine does (fatal codes stop the shard with
/// their reason and nothing reconnects, "new session" codes forget the
/// session and identify on the discovery URL, the rest reconnect); a
/// terminal state stays terminal; reconnect delays stay within the backoff
/// cap (or the op 9 delay); Resume and Identify go out only in the states
/// that call for them, heartbeats carry the last sequence.
pub fn close(data: &[u8]) {
    let mut input = Input::new(data);
    let base = Duration::from_millis(u64::from(input.u16()));
    let cap = Duration::from_millis(u64::from(input.u16()));
    let resume_url_attempts = u32::from(input.u8() % 8);
    let seed = input.u64();
    let session = input
        .bool()
        .then(|| Session::new(input.string(), 0, Some("wss://resume.test".to_owned())));
    let config = MachineConfig {
        backoff: Backoff { base, cap },
        invalid_session_delay: Duration::from_millis(10)..=Duration::from_millis(50),
        hello_timeout: Duration::from_millis(500),
        resume_url_attempts,
        ..MachineConfig::default()
    };
    let longest_delay = cap.max(Duration::from_millis(50));
    let mut harness = Harness {
        machine: Machine::new(config, session, seed),
        longest_delay,
        now: Instant::now(),
        open: false,
        pending: None,
        identify_waiting: false,
        terminal: false,
    };
    harness.machine.start();
    harness.drain();
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        harness.step(&mut input);
        harness.drain();
    }
}

impl Harness {
    fn step(&mut self, input: &mut Input<'_>) {
        let op = input.u8() % 16;
        // Frames arrive only while a connection is open.
        let frame = (2..=12).contains(&op);
        if frame && !self.open {
            // Still consume the operands so the script stays aligned.
            match op {
                2 => drop(input.u16()),
                3 => drop((input.u8(), input.chunk(), input.u8())),
                4 | 5 | 9 | 12 => drop(input.u8()),
                10 => drop(input.chunk()),
                _ => {}
            }
            return;
        }
        match op {
            0 => {
                if self.pending.take().is_some() {
                    self.machine.on_connected(self.now);
                    self.open = !self.machine.state().is_terminal();
                }
            }
            1 => {
                if self.pending.take().is_some() {
                    self.machine.on_connect_failed();
                }
            }
            2 => {
                let interval = Duration::from_millis(u64::from(input.u16().max(1)));
                self.machine.on_hello(interval, self.now);
            }
            3 => {
                let sequence = u64::from(input.u8());
                let session = input.string();
                let resume_url = input.bool().then(|| "wss://resume.test".to_owned());
                self.machine.on_ready(sequence, session.clone(), resume_url);
                assert_eq!(self.machine.state(), ShardState::Active);
                assert_eq!(self.machine.session().map(|s| &s.id), Some(&session));
            }
            4 => {
                let sequence = u64::from(input.u8());
                self.machine.on_resumed(sequence);
                assert_eq!(self.machine.state(), ShardState::Active);
            }
            5 => {
                let sequence = u64::from(input.u8());
                // The shard delivers each sequence number of a session once.
                if self
                    .machine
                    .last_sequence()
                    .is_none_or(|last| sequence > last)
                {
                    self.machine.on_dispatch(sequence);
                    assert_eq!(self.machine.last_sequence(), Some(sequence));
                }
            }
            6 => self.machine.on_heartbeat_ack(self.now),
            7 => self.machine.on_heartbeat_request(self.now),
            8 => self.machine.on_reconnect_request(),
            9 => self.machine.on_invalid_session(input.bool()),
            10 => self.close_frame(input.chunk()),
            11 => self.closed(None),
            12 => self.machine.on_protocol_error(input.bool()),
            13 => {
                self.now += Duration::from_millis(u64::from(input.u16()));
                let paused = input.bool();
                // The actor's one timer fires at the machine's deadline.
                for _ in 0..4 {
                    match self.machine.next_deadline() {
                        Some(deadline) if deadline <= self.now => {
                            self.machine.on_timer(self.now, paused);
                            self.drain();
                        }
                        _ => break,
                    }
                }
            }
            14 => {
                let mode = if input.bool() {
                    StopMode::HandOff
                } else {
                    StopMode::End
                };
                let before = self.machine.session().cloned();
                let handed = self.machine.stop(mode);
                assert_eq!(self.machine.state(), ShardState::Stopped);
                match mode {
                    StopMode::HandOff => assert_eq!(handed, before),
                    StopMode::End => assert!(handed.is_none()),
                }
                self.open = false;
                self.pending = None;
            }
            _ => {
                if std::mem::take(&mut self.identify_waiting) && self.machine.identify_permitted() {
                    assert_eq!(self.machine.state(), ShardState::Identifying);
                }
            }
        }
    }

    /// A close frame as the server sends it: unmasked, FIN, opcode 8.
    fn close_frame(&mut self, payload: &[u8]) {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&[0x88]);
        match u8::try_from(payload.len()) {
            Ok(len) if len < 126 => wire.extend_from_slice(&[len]),
            _ => {
                let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
                wire.extend_from_slice(&[126]);
                wire.extend_from_slice(&len.to_be_bytes());
            }
        }
        wire.extend_from_slice(payload);
        let mut codec = Codec::new().client_mode();
        match codec.decode(&mut wire) {
            Ok(Some(Frame::Close(reason))) => {
                let code = reason.map(|reason| u16::from(reason.code));
                if let Some(code) = code {
                    assert_eq!(
                        Some(code),
                        payload
                            .get(..2)
                            .map(|raw| u16::from_be_bytes([raw[0], raw[1]])),
                        "the codec keeps the code"
                    );
                }
                self.closed(code);
            }
            Ok(other) => panic!("a close frame decoded as {other:?}"),
            // The shard treats a WebSocket error as unusable input.
            Err(_) => self.machine.on_protocol_error(false),
        }
    }

    /// The server ended the connection, with a close code or without.
    fn closed(&mut self, code: Option<u16>) {
        self.open = false;
        let had_session = self.machine.session().is_some();
        self.machine.on_closed(code);
        let actions = self.drain();
        let connect = actions.iter().find_map(|action| match action {
            Action::Connect { target, .. } => Some(*target),
            _ => None,
        });
        let action = match code {
            Some(code) => {
                let close = CloseCode::from(code);
                assert_eq!(close.code(), code);
                assert_eq!(
                    CloseCode::GATEWAY_CODES.contains(&close),
                    !matches!(close, CloseCode::Other(_))
                );
                assert!(!close.to_string().is_empty());
                close.action()
            }
            None => CloseAction::Resume,
        };
        match action {
            CloseAction::Fatal(reason) => {
                assert_eq!(self.machine.state(), ShardState::Failed(reason));
                assert_eq!(reason.close_code().code(), code.unwrap_or_default());
                assert!(connect.is_none(), "a fatal close never reconnects");
            }
            CloseAction::NewSession => {
                assert!(self.machine.session().is_none(), "the session is gone");
                assert_eq!(connect, Some(ConnectTarget::DiscoveryUrl));
            }
            CloseAction::Resume => {
                assert!(connect.is_some(), "{code:?} reconnects");
                if connect == Some(ConnectTarget::ResumeUrl) {
                    assert!(had_session);
                }
            }
        }
    }

    /// Carries out the machine's actions as the actor would, checking each.
    fn drain(&mut self) -> Vec<Action> {
        let actions: Vec<Action> = std::iter::from_fn(|| self.machine.poll_action()).collect();
        assert!(actions.len() <= 8, "one event, {} actions", actions.len());
        let state = self.machine.state();
        if self.terminal {
            assert!(state.is_terminal(), "left a terminal state for {state:?}");
        }
        self.terminal = state.is_terminal();
        for action in &actions {
            match action {
                Action::Connect { delay, target } => {
                    assert!(!state.is_terminal(), "reconnecting from {state:?}");
                    assert!(
                        *delay <= self.longest_delay,
                        "{delay:?} over {:?}",
                        self.longest_delay
                    );
                    if *target == ConnectTarget::ResumeUrl {
                        assert!(
                            self.machine
                                .session()
                                .is_some_and(|s| s.resume_url.is_some()),
                            "the resume URL without a session"
                        );
                    }
                    self.pending = Some(*target);
                }
                Action::Close { code } => {
                    assert!(matches!(code, 1000 | 4000), "closing with {code}");
                    self.open = false;
                }
                Action::SendHeartbeat(sequence) => {
                    assert_eq!(*sequence, self.machine.last_sequence());
                }
                Action::RequestIdentify => {
                    assert_eq!(state, ShardState::Identifying);
                    assert!(self.machine.session().is_none());
                    self.identify_waiting = true;
                }
                Action::SendResume {
                    session_id,
                    sequence,
                } => {
                    assert_eq!(state, ShardState::Resuming);
                    let session = self.machine.session().expect("resuming a session");
                    assert_eq!((&session.id, session.sequence), (session_id, *sequence));
                }
                Action::FlushCommands => assert_eq!(state, ShardState::Active),
                Action::Notify(Lifecycle::Failed(reason)) => {
                    assert_eq!(state, ShardState::Failed(*reason));
                }
                Action::Notify(_) => {}
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::{Script, Step, close};

    #[test]
    fn scripts() {
        let identify = Script::new(20, 300, 5, None)
            .step(Step::Connected)
            .hello(1000)
            .step(Step::IdentifyPermit)
            .ready(1, "s1", true)
            .step_u8(Step::Dispatch, 2)
            .time(1500, false)
            .step(Step::HeartbeatAck);
        for code in [1000, 1006, 4000, 4004, 4009, 4014, 4999, 999] {
            close(
                &identify
                    .clone()
                    .close_frame(code, b"bye")
                    .step(Step::Connected)
                    .hello(1000)
                    .finish(),
            );
        }
        close(
            &Script::new(0, 0, 0, Some("handed"))
                .step(Step::ConnectFailed)
                .step(Step::Connected)
                .hello(1)
                .step_u8(Step::Resumed, 9)
                .step_u8(Step::InvalidSession, 1)
                .step(Step::Connected)
                .step_u8(Step::Stop, 1)
                .finish(),
        );
        close(&[]);
        close(&[0xff; 64]);
    }
}
