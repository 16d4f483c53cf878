//! The protocol rules, one test each, on virtual time.

use super::*;
use discore_protocol::CloseCode;

const INTERVAL: Duration = Duration::from_millis(1000);

fn config() -> MachineConfig {
    MachineConfig {
        backoff: Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1600),
        },
        invalid_session_delay: Duration::from_millis(1000)..=Duration::from_millis(5000),
        hello_timeout: Duration::from_millis(500),
        resume_url_attempts: 2,
        intents: discore_protocol::Intents::empty(),
    }
}

fn drain(machine: &mut Machine) -> Vec<Action> {
    std::iter::from_fn(|| machine.poll_action()).collect()
}

fn without_notices(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, Action::Notify(_)))
        .collect()
}

fn notices(actions: &[Action]) -> Vec<Lifecycle> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

/// A machine with an active session "s1" at sequence 5 and its resume URL,
/// on a connection that proved healthy (a heartbeat was acknowledged).
fn active(now: Instant) -> Machine {
    let mut machine = active_unproven(now);
    let beat = machine.next_deadline().expect("scheduled");
    machine.on_timer(beat, false);
    machine.on_heartbeat_ack(beat);
    drain(&mut machine);
    machine
}

/// As [`active`], before any heartbeat was acknowledged.
fn active_unproven(now: Instant) -> Machine {
    let mut machine = Machine::new(config(), None, 1);
    machine.start();
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    machine.on_ready(1, "s1".into(), Some("wss://resume".into()));
    machine.on_dispatch(5);
    drain(&mut machine);
    machine
}

fn connect_action(actions: &[Action]) -> Option<(Duration, ConnectTarget)> {
    actions.iter().find_map(|a| match a {
        Action::Connect { delay, target } => Some((*delay, *target)),
        _ => None,
    })
}

#[test]
fn handshake_identifies_then_becomes_active() {
    let now = Instant::now();
    let mut machine = Machine::new(config(), None, 1);
    machine.start();
    assert_eq!(
        drain(&mut machine),
        [Action::Connect {
            delay: Duration::ZERO,
            target: ConnectTarget::DiscoveryUrl
        }]
    );
    machine.on_connected(now);
    assert_eq!(machine.state(), ShardState::AwaitingHello);
    machine.on_hello(INTERVAL, now);
    assert_eq!(machine.state(), ShardState::Identifying);
    assert_eq!(
        without_notices(drain(&mut machine)),
        [Action::RequestIdentify]
    );
    assert!(machine.identify_permitted());
    machine.on_ready(1, "s1".into(), Some("wss://resume".into()));
    let actions = drain(&mut machine);
    assert_eq!(machine.state(), ShardState::Active);
    assert!(actions.contains(&Action::FlushCommands));
    assert_eq!(
        notices(&actions),
        [Lifecycle::Ready {
            session_id: "s1".into()
        }]
    );
    assert_eq!(machine.session().map(|s| s.sequence), Some(1));
}

#[test]
fn first_heartbeat_is_jittered_then_every_interval() {
    let now = Instant::now();
    let mut firsts = Vec::new();
    for seed in 0..50 {
        let mut machine = Machine::new(config(), None, seed);
        machine.start();
        machine.on_connected(now);
        machine.on_hello(INTERVAL, now);
        let first = machine.next_deadline().expect("heartbeat scheduled");
        assert!(
            first >= now && first < now + INTERVAL,
            "within [0, interval)"
        );
        firsts.push(first);
        drain(&mut machine);
        machine.on_timer(first, false);
        assert_eq!(drain(&mut machine), [Action::SendHeartbeat(None)]);
        assert_eq!(machine.next_deadline(), Some(first + INTERVAL));
    }
    firsts.sort();
    firsts.dedup();
    assert!(firsts.len() > 40, "first beats must differ between shards");
}

#[test]
fn heartbeat_carries_the_last_dispatch_sequence() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_dispatch(9);
    let due = machine.next_deadline().expect("scheduled");
    machine.on_timer(due, false);
    assert_eq!(drain(&mut machine), [Action::SendHeartbeat(Some(9))]);
}

#[test]
fn server_heartbeat_request_is_answered_at_once_and_keeps_the_schedule() {
    let now = Instant::now();
    let mut machine = active(now);
    let due = machine.next_deadline();
    machine.on_heartbeat_request(now + Duration::from_millis(1));
    assert_eq!(drain(&mut machine), [Action::SendHeartbeat(Some(5))]);
    assert_eq!(machine.next_deadline(), due);
}

#[test]
fn ack_measures_latency() {
    let now = Instant::now();
    let mut machine = active(now);
    let due = machine.next_deadline().expect("scheduled");
    machine.on_timer(due, false);
    machine.on_heartbeat_ack(due + Duration::from_millis(30));
    assert_eq!(machine.latency().last(), Some(Duration::from_millis(30)));
}

#[test]
fn missing_ack_between_two_beats_is_a_zombie_and_resumes() {
    let now = Instant::now();
    let mut machine = active(now);
    let first = machine.next_deadline().expect("scheduled");
    machine.on_timer(first, false);
    drain(&mut machine);
    machine.on_timer(first + INTERVAL, false);
    let actions = drain(&mut machine);
    assert_eq!(
        without_notices(actions),
        [
            Action::Close {
                code: RESUMABLE_CLOSE
            },
            Action::Connect {
                delay: Duration::ZERO,
                target: ConnectTarget::ResumeUrl
            }
        ]
    );
    assert!(machine.session().is_some(), "the session survives a zombie");
}

#[test]
fn a_paused_reader_is_not_a_zombie() {
    let now = Instant::now();
    let mut machine = active(now);
    let first = machine.next_deadline().expect("scheduled");
    machine.on_timer(first, true);
    drain(&mut machine);
    machine.on_timer(first + INTERVAL, true);
    assert_eq!(drain(&mut machine), [Action::SendHeartbeat(Some(5))]);
}

#[test]
fn acked_heartbeats_never_zombie() {
    let now = Instant::now();
    let mut machine = active(now);
    let mut at = machine.next_deadline().expect("scheduled");
    for _ in 0..10 {
        machine.on_timer(at, false);
        assert_eq!(drain(&mut machine), [Action::SendHeartbeat(Some(5))]);
        machine.on_heartbeat_ack(at + Duration::from_millis(5));
        at += INTERVAL;
    }
}

#[test]
fn reconnect_request_resumes_on_the_resume_url() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_reconnect_request();
    let actions = drain(&mut machine);
    assert_eq!(
        without_notices(actions),
        [
            Action::Close {
                code: RESUMABLE_CLOSE
            },
            Action::Connect {
                delay: Duration::ZERO,
                target: ConnectTarget::ResumeUrl
            }
        ]
    );
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    assert_eq!(
        without_notices(drain(&mut machine)),
        [Action::SendResume {
            session_id: "s1".into(),
            sequence: 5
        }]
    );
    machine.on_dispatch(6);
    machine.on_resumed(7);
    let actions = drain(&mut machine);
    assert_eq!(
        notices(&actions),
        [Lifecycle::Resumed, Lifecycle::Reconnected { resumed: true }]
    );
    assert_eq!(machine.session().map(|s| s.sequence), Some(7));
}

#[test]
fn reconnect_before_hello_resumes() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_reconnect_request();
    drain(&mut machine);
    machine.on_connected(now);
    // op 7 instead of Hello on the new connection.
    machine.on_reconnect_request();
    let actions = without_notices(drain(&mut machine));
    assert_eq!(
        actions[0],
        Action::Close {
            code: RESUMABLE_CLOSE
        }
    );
    assert!(matches!(
        actions[1],
        Action::Connect {
            target: ConnectTarget::ResumeUrl,
            ..
        }
    ));
}

#[test]
fn resumable_invalid_session_resumes() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_invalid_session(true);
    let actions = drain(&mut machine);
    assert_eq!(
        connect_action(&actions),
        Some((Duration::ZERO, ConnectTarget::ResumeUrl))
    );
    assert!(machine.session().is_some());
}

#[test]
fn invalid_session_waits_one_to_five_seconds_then_identifies_on_discovery_url() {
    let now = Instant::now();
    let mut delays = Vec::new();
    for seed in 0..30 {
        let mut machine = Machine::new(config(), None, seed);
        machine.start();
        machine.on_connected(now);
        machine.on_hello(INTERVAL, now);
        machine.on_ready(1, "s1".into(), Some("wss://resume".into()));
        drain(&mut machine);
        machine.on_invalid_session(false);
        let actions = drain(&mut machine);
        assert!(actions.contains(&Action::Close {
            code: SESSION_ENDING_CLOSE
        }));
        let (delay, target) = connect_action(&actions).expect("reconnects");
        assert_eq!(target, ConnectTarget::DiscoveryUrl);
        assert!((Duration::from_secs(1)..=Duration::from_secs(5)).contains(&delay));
        assert!(machine.session().is_none());
        machine.on_connected(now);
        machine.on_hello(INTERVAL, now);
        assert_eq!(
            without_notices(drain(&mut machine)),
            [Action::RequestIdentify]
        );
        delays.push(delay);
    }
    delays.sort();
    delays.dedup();
    assert!(delays.len() > 20, "delays are random");
}

#[test]
fn failed_resume_clears_the_resume_url_and_identifies() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_closed(None);
    drain(&mut machine);
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    drain(&mut machine);
    assert_eq!(machine.state(), ShardState::Resuming);
    machine.on_invalid_session(false);
    let actions = drain(&mut machine);
    assert_eq!(
        connect_action(&actions).map(|c| c.1),
        Some(ConnectTarget::DiscoveryUrl)
    );
    assert!(machine.session().is_none());
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    assert_eq!(
        without_notices(drain(&mut machine)),
        [Action::RequestIdentify]
    );
    machine.on_ready(1, "s2".into(), Some("wss://resume2".into()));
    let actions = drain(&mut machine);
    assert!(notices(&actions).contains(&Lifecycle::Reconnected { resumed: false }));
}

#[test]
fn close_codes_follow_the_policy_table() {
    let now = Instant::now();
    for code in CloseCode::GATEWAY_CODES
        .iter()
        .map(|c| c.code())
        .chain([1000, 1001, 1006])
    {
        let mut machine = active(now);
        machine.on_closed(Some(code));
        let actions = drain(&mut machine);
        let connect = connect_action(&actions);
        match CloseCode::from(code).action() {
            CloseAction::Resume => {
                assert_eq!(
                    connect,
                    Some((Duration::ZERO, ConnectTarget::ResumeUrl)),
                    "{code}"
                );
                assert!(machine.session().is_some(), "{code}");
            }
            CloseAction::NewSession => {
                assert_eq!(
                    connect.map(|c| c.1),
                    Some(ConnectTarget::DiscoveryUrl),
                    "{code}"
                );
                assert!(machine.session().is_none(), "{code}");
            }
            CloseAction::Fatal(reason) => {
                assert_eq!(connect, None, "fatal code {code} must not reconnect");
                assert_eq!(machine.state(), ShardState::Failed(reason));
                assert!(notices(&actions).contains(&Lifecycle::Failed(reason)));
                // Nothing brings a failed shard back.
                machine.on_closed(None);
                machine.on_connect_failed();
                assert_eq!(connect_action(&drain(&mut machine)), None);
            }
        }
    }
}

#[test]
fn transport_drop_resumes() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_closed(None);
    let actions = drain(&mut machine);
    assert_eq!(
        connect_action(&actions),
        Some((Duration::ZERO, ConnectTarget::ResumeUrl))
    );
    assert!(notices(&actions).contains(&Lifecycle::Disconnected {
        code: None,
        by_client: false
    }));
}

#[test]
fn repeated_failures_back_off_exponentially_up_to_the_cap() {
    let mut machine = Machine::new(config(), None, 3);
    machine.start();
    drain(&mut machine);
    let mut ceilings = Vec::new();
    for _ in 0..8 {
        machine.on_connect_failed();
        let (delay, _) = connect_action(&drain(&mut machine)).expect("retries");
        ceilings.push(delay);
    }
    // Each delay lies in [ceiling/2, ceiling] with ceilings 100, 200, ... 1600.
    let expected = [100u64, 200, 400, 800, 1600, 1600, 1600, 1600];
    for (delay, ceiling) in ceilings.iter().zip(expected) {
        let ceiling = Duration::from_millis(ceiling);
        assert!(
            *delay >= ceiling / 2 && *delay <= ceiling,
            "{delay:?} vs {ceiling:?}"
        );
    }
}

#[test]
fn a_healthy_session_resets_the_backoff() {
    let now = Instant::now();
    let mut machine = active(now);
    for _ in 0..4 {
        machine.on_closed(None);
        drain(&mut machine);
        machine.on_connect_failed();
        drain(&mut machine);
    }
    assert!(machine.consecutive_failures() >= 4);
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    machine.on_resumed(6);
    assert!(
        machine.consecutive_failures() >= 4,
        "RESUMED alone proves nothing: a gateway may close right after it"
    );
    let beat = machine.next_deadline().expect("scheduled");
    machine.on_timer(beat, false);
    machine.on_heartbeat_ack(beat);
    assert_eq!(machine.consecutive_failures(), 0);
}

/// Every way a connection can end before it proved healthy counts toward
/// the backoff: op 7 (also in place of Hello), op 9 either way, a
/// resumable close, a refused upgrade. The first attempt after a healthy
/// connection goes at once; then the delays grow to the cap.
#[test]
fn every_reconnect_path_counts_toward_the_backoff() {
    type End = fn(&mut Machine);
    let paths: [(&str, End); 6] = [
        ("op 7", |m| m.on_reconnect_request()),
        ("op 9 resumable", |m| m.on_invalid_session(true)),
        ("op 9 not resumable", |m| m.on_invalid_session(false)),
        ("resumable close", |m| m.on_closed(Some(4000))),
        ("transport drop", |m| m.on_closed(None)),
        ("protocol error", |m| m.on_protocol_error(false)),
    ];
    for (name, end) in paths {
        let now = Instant::now();
        let mut machine = active(now);
        let mut delays = Vec::new();
        for _ in 0..7 {
            end(&mut machine);
            let (delay, _) = connect_action(&drain(&mut machine)).expect("reconnects");
            delays.push(delay);
            // The next connection gets as far as it can without proving
            // itself: open, Hello, and (when it has a session) RESUMED.
            machine.on_connected(now);
            machine.on_hello(INTERVAL, now);
            if machine.session().is_some() {
                machine.on_resumed(6);
            }
            drain(&mut machine);
        }
        let backoff = config().backoff;
        if name == "op 9 not resumable" {
            // Never sooner than the 1–5 s op 9 wait, nor the backoff.
            assert!(
                delays.iter().all(|d| *d >= Duration::from_secs(1)),
                "{name}: {delays:?}"
            );
        } else {
            assert_eq!(delays[0], Duration::ZERO, "{name}: first attempt at once");
        }
        for (attempt, delay) in delays.iter().enumerate().skip(1) {
            let ceiling = backoff
                .base
                .saturating_mul(1 << (attempt - 1))
                .min(backoff.cap);
            assert!(
                *delay >= ceiling / 2,
                "{name}: attempt {attempt}: {delays:?}"
            );
        }
        assert!(machine.consecutive_failures() >= 6, "{name}");
    }
}

/// A gateway that answers every connection with op 7 where Hello belongs
/// gets connections at a growing interval, not a flood.
#[test]
fn op_7_instead_of_hello_backs_off() {
    let now = Instant::now();
    let mut machine = Machine::new(config(), None, 1);
    machine.start();
    drain(&mut machine);
    let mut total = Duration::ZERO;
    let mut attempts = 0;
    while total < Duration::from_secs(10) && attempts < 1000 {
        machine.on_connected(now);
        machine.on_reconnect_request();
        let (delay, _) = connect_action(&drain(&mut machine)).expect("reconnects");
        total += delay;
        attempts += 1;
    }
    // 100 ms doubling to 1.6 s: about a dozen attempts in ten seconds.
    assert!(attempts <= 16, "{attempts} connections in {total:?}");
}

#[test]
fn unreachable_resume_url_gives_up_the_session_after_the_attempts() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_closed(None);
    let mut targets = vec![connect_action(&drain(&mut machine)).expect("connects").1];
    for _ in 0..3 {
        machine.on_connect_failed();
        targets.push(connect_action(&drain(&mut machine)).expect("connects").1);
    }
    // Resumes only ever go to the resume URL; after two failures (this
    // test's `resume_url_attempts`) the session is given up.
    assert_eq!(
        targets,
        [
            ConnectTarget::ResumeUrl,
            ConnectTarget::ResumeUrl,
            ConnectTarget::DiscoveryUrl,
            ConnectTarget::DiscoveryUrl
        ]
    );
    assert!(machine.session().is_none());
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    assert_eq!(
        without_notices(drain(&mut machine)),
        [Action::RequestIdentify]
    );
}

#[test]
fn missing_hello_times_out_and_reconnects_with_backoff() {
    let now = Instant::now();
    let mut machine = Machine::new(config(), None, 1);
    machine.start();
    drain(&mut machine);
    machine.on_connected(now);
    assert_eq!(notices(&drain(&mut machine)), [Lifecycle::Connected]);
    assert_eq!(
        machine.next_deadline(),
        Some(now + Duration::from_millis(500))
    );
    machine.on_timer(now + Duration::from_millis(499), false);
    assert!(drain(&mut machine).is_empty());
    machine.on_timer(now + Duration::from_millis(500), false);
    let actions = drain(&mut machine);
    assert!(actions.contains(&Action::Close {
        code: RESUMABLE_CLOSE
    }));
    let (delay, _) = connect_action(&actions).expect("reconnects");
    assert!(delay >= Duration::from_millis(50));
}

#[test]
fn start_from_a_saved_session_resumes_instead_of_identifying() {
    let now = Instant::now();
    let saved = Session::new("saved", 42, Some("wss://resume".into()));
    let mut machine = Machine::new(config(), Some(saved), 1);
    machine.start();
    assert_eq!(
        connect_action(&drain(&mut machine)),
        Some((Duration::ZERO, ConnectTarget::ResumeUrl))
    );
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    assert_eq!(
        without_notices(drain(&mut machine)),
        [Action::SendResume {
            session_id: "saved".into(),
            sequence: 42
        }]
    );
    let due = machine.next_deadline().expect("heartbeats");
    machine.on_timer(due, false);
    assert_eq!(drain(&mut machine), [Action::SendHeartbeat(Some(42))]);
}

#[test]
fn hand_off_closes_resumably_and_returns_the_session() {
    let now = Instant::now();
    let mut machine = active(now);
    let session = machine.stop(StopMode::HandOff);
    assert_eq!(session.map(|s| (s.id, s.sequence)), Some(("s1".into(), 5)));
    let actions = drain(&mut machine);
    assert_eq!(actions[0], Action::Close { code: 4000 });
    assert_eq!(machine.state(), ShardState::Stopped);
    machine.on_closed(Some(1000));
    assert_eq!(
        connect_action(&drain(&mut machine)),
        None,
        "a stopped shard stays stopped"
    );
}

#[test]
fn graceful_stop_ends_the_session() {
    let now = Instant::now();
    let mut machine = active(now);
    assert_eq!(machine.stop(StopMode::End), None);
    assert_eq!(drain(&mut machine)[0], Action::Close { code: 1000 });
    assert!(machine.session().is_none());
}

#[test]
fn identify_permit_is_void_after_the_connection_changed() {
    let now = Instant::now();
    let mut machine = Machine::new(config(), None, 1);
    machine.start();
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    drain(&mut machine);
    machine.on_closed(None);
    assert!(!machine.identify_permitted());
}

#[test]
fn sequence_survives_reconnects_until_a_new_session() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_closed(Some(4000));
    drain(&mut machine);
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    assert!(matches!(
        without_notices(drain(&mut machine)).as_slice(),
        [Action::SendResume { sequence: 5, .. }]
    ));
    // Heartbeats on the resuming connection still carry 5, not null.
    let due = machine.next_deadline().expect("scheduled");
    machine.on_timer(due, false);
    assert_eq!(drain(&mut machine), [Action::SendHeartbeat(Some(5))]);
}

#[test]
fn protocol_error_resumes_on_a_fresh_connection() {
    let now = Instant::now();
    let mut machine = active(now);
    machine.on_protocol_error(false);
    let actions = without_notices(drain(&mut machine));
    assert_eq!(
        actions[0],
        Action::Close {
            code: RESUMABLE_CLOSE
        }
    );
    assert_eq!(
        connect_action(&actions),
        Some((Duration::ZERO, ConnectTarget::ResumeUrl))
    );
    assert!(machine.session().is_some());
    // A second error on the same, already closed, connection changes nothing.
    machine.on_protocol_error(false);
    assert!(drain(&mut machine).is_empty());
}

#[test]
fn ready_without_session_identifies_anew() {
    let now = Instant::now();
    let mut machine = Machine::new(config(), None, 1);
    machine.start();
    machine.on_connected(now);
    machine.on_hello(INTERVAL, now);
    drain(&mut machine);
    machine.on_protocol_error(true);
    let actions = drain(&mut machine);
    assert_eq!(
        connect_action(&actions).map(|c| c.1),
        Some(ConnectTarget::DiscoveryUrl)
    );
    assert!(machine.session().is_none());
    assert_eq!(machine.consecutive_failures(), 1);
}
