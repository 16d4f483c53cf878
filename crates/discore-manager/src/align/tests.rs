use super::{
    Aligner, Drained, Drainer, GuildChange, History, Recorder, Verdict, guild_change, guild_of,
    heads, same_event, union_filter,
};
use discore_gateway::{Dispatch, EventFilter, EventType};
use serde_json::value::RawValue;
use std::{collections::VecDeque, sync::Arc};

fn dispatch(name: &str, json: &str) -> Arc<Dispatch> {
    let data = RawValue::from_string(json.to_owned()).expect("valid json");
    Arc::new(Dispatch::parse(name, EventType::try_from(name).ok(), &data))
}

/// A typed event of `guild`; `n` makes it unique.
fn typing(guild: u64, n: u64) -> Arc<Dispatch> {
    dispatch(
        "TYPING_START",
        &format!(r#"{{"channel_id":"1","guild_id":"{guild}","user_id":"3","timestamp":{n}}}"#),
    )
}

fn guild_create(guild: u64) -> Arc<Dispatch> {
    dispatch(
        "GUILD_CREATE",
        &format!(r#"{{"id":"{guild}","unavailable":true}}"#),
    )
}

fn history(entries: &[(u64, &[Arc<Dispatch>])]) -> History {
    entries
        .iter()
        .map(|(guild, events)| {
            (
                Some(*guild),
                events.iter().cloned().collect::<VecDeque<_>>(),
            )
        })
        .collect()
}

/// Runs `events` (with sequences from 2 on) through an aligner.
fn verdicts(aligner: &mut Aligner, known: &[u64], events: &[Arc<Dispatch>]) -> Vec<Verdict> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| aligner.decide(i as u64 + 2, e, |g| known.contains(&g)))
        .collect()
}

#[test]
fn guilds_of_typed_raw_and_guildless_events() {
    assert_eq!(guild_of(&typing(42, 1)), Some(42));
    assert_eq!(guild_of(&guild_create(7)), Some(7));
    let raw = dispatch(
        "SOUNDBOARD_SOUNDS",
        r#"{"guild_id":"99","soundboard_sounds":[]}"#,
    );
    assert!(matches!(*raw, Dispatch::Raw(_)));
    assert_eq!(guild_of(&raw), Some(99));
    let dm = dispatch(
        "TYPING_START",
        r#"{"channel_id":"1","user_id":"3","timestamp":5}"#,
    );
    assert_eq!(guild_of(&dm), None);
    let mismatch = dispatch("GUILD_UPDATE", r#"{"id":"8","broken":true}"#);
    assert!(matches!(*mismatch, Dispatch::Raw(_)));
    assert_eq!(guild_of(&mismatch), Some(8));
}

#[test]
fn guild_changes() {
    assert_eq!(guild_change(&guild_create(7)), Some(GuildChange::Known(7)));
    let left = dispatch("GUILD_DELETE", r#"{"id":"7"}"#);
    assert_eq!(guild_change(&left), Some(GuildChange::Left(7)));
    let outage = dispatch("GUILD_DELETE", r#"{"id":"7","unavailable":true}"#);
    assert_eq!(guild_change(&outage), None);
    assert_eq!(guild_change(&typing(7, 1)), None);
}

#[test]
fn equal_content_is_the_same_event() {
    assert!(same_event(&typing(1, 5), &typing(1, 5)));
    assert!(!same_event(&typing(1, 5), &typing(1, 6)));
    let a = dispatch("X_EVENT", r#"{"guild_id":"1","n":1}"#);
    let b = dispatch("X_EVENT", r#"{"guild_id":"1","n":1}"#);
    let c = dispatch("Y_EVENT", r#"{"guild_id":"1","n":1}"#);
    assert!(same_event(&a, &b));
    assert!(!same_event(&a, &c));
}

#[test]
fn overlap_is_skipped_and_the_rest_delivered() {
    let (a, b, c, d) = (typing(1, 1), typing(1, 2), typing(1, 3), typing(1, 4));
    let mut aligner = Aligner::new(history(&[(1, &[a, b.clone(), c.clone()])]));
    let stream = [guild_create(1), b, c, d];
    assert_eq!(
        verdicts(&mut aligner, &[1], &stream),
        [
            Verdict::Artifact,
            Verdict::Duplicate,
            Verdict::Duplicate,
            Verdict::Deliver
        ]
    );
    assert!(aligner.is_exhausted());
}

#[test]
fn a_lagging_new_fleet_keeps_skipping_as_it_catches_up() {
    let (a, b, c, d) = (typing(1, 1), typing(1, 2), typing(1, 3), typing(1, 4));
    let mut aligner = Aligner::new(history(&[(1, &[a, b.clone(), c.clone()])]));
    // At the switch the new shard had only received b ...
    assert_eq!(aligner.decide(2, &b, |_| true), Verdict::Duplicate);
    assert!(!aligner.is_exhausted());
    // ... c and d arrive later.
    assert_eq!(aligner.decide(3, &c, |_| true), Verdict::Duplicate);
    assert_eq!(aligner.decide(4, &d, |_| true), Verdict::Deliver);
}

#[test]
fn without_overlap_everything_is_new() {
    let mut aligner = Aligner::new(history(&[(1, &[typing(1, 1)])]));
    let stream = [typing(1, 2), typing(1, 1)];
    // Once one event is new, the guild is past the old record: even an
    // equal event later is a new one.
    assert_eq!(
        verdicts(&mut aligner, &[], &stream),
        [Verdict::Deliver, Verdict::Deliver]
    );
}

#[test]
fn guilds_are_aligned_independently() {
    let (a1, a2) = (typing(1, 1), typing(1, 2));
    let (b1, b2) = (typing(2, 1), typing(2, 2));
    let mut aligner = Aligner::new(history(&[
        (1, std::slice::from_ref(&a1)),
        (2, std::slice::from_ref(&b1)),
    ]));
    let stream = [b1, a1, a2, typing(3, 1), b2];
    assert_eq!(
        verdicts(&mut aligner, &[], &stream),
        [
            Verdict::Duplicate,
            Verdict::Duplicate,
            Verdict::Deliver,
            Verdict::Deliver,
            Verdict::Deliver
        ]
    );
}

#[test]
fn guild_create_of_an_unknown_guild_is_delivered() {
    let mut aligner = Aligner::new(History::new());
    let stream = [guild_create(5), guild_create(6)];
    assert_eq!(
        verdicts(&mut aligner, &[6], &stream),
        [Verdict::Deliver, Verdict::Artifact]
    );
}

#[test]
fn a_new_session_starts_its_guild_creates_again() {
    let mut aligner = Aligner::new(History::new());
    let ready = dispatch("RESUMED", "{}");
    assert_eq!(
        aligner.decide(1, &guild_create(5), |_| true),
        Verdict::Artifact
    );
    // A second GUILD_CREATE in the same session is a real event.
    assert_eq!(
        aligner.decide(2, &guild_create(5), |_| true),
        Verdict::Deliver
    );
    assert_eq!(aligner.decide(3, &ready, |_| true), Verdict::Artifact);
    // The sequence falls back: a new session, whose GUILD_CREATE is an artifact.
    assert_eq!(
        aligner.decide(2, &guild_create(5), |_| true),
        Verdict::Artifact
    );
}

#[test]
fn the_recorder_forgets_the_oldest_past_its_capacity() {
    let mut recorder = Recorder::new(2);
    for n in 1..=3 {
        recorder.record(&typing(1, n));
    }
    recorder.record(&typing(2, 9));
    assert_eq!(recorder.forgotten(), 2);
    let history = recorder.into_history();
    assert_eq!(history[&Some(1)].len(), 1);
    assert!(same_event(&history[&Some(1)][0], &typing(1, 3)));
    assert_eq!(history[&Some(2)].len(), 1);
}

#[test]
fn union_of_filters() {
    let none = union_filter([]);
    assert!(!none.wants(Some(EventType::MessageCreate)));
    assert!(!none.wants(None));
    let a = EventFilter::only([EventType::MessageCreate]);
    let b = EventFilter::only([EventType::GuildCreate]).with_unknown();
    let union = union_filter([&a, &b]);
    assert!(union.wants(Some(EventType::MessageCreate)));
    assert!(union.wants(Some(EventType::GuildCreate)));
    assert!(union.wants(None));
    assert!(!union.wants(Some(EventType::TypingStart)));
    let all = union_filter([&a, &EventFilter::all()]);
    assert!(all.wants(Some(EventType::TypingStart)));
    assert!(all.wants(None));
}

#[test]
fn heads_skip_session_artifacts() {
    let ready = dispatch("READY", "{}");
    let stream = [
        ready,
        guild_create(1),
        guild_create(2),
        typing(2, 7),
        typing(1, 5),
        typing(1, 6),
    ];
    let found = heads(stream.iter().enumerate().map(|(i, e)| (i as u64 + 1, e)));
    assert_eq!(found.len(), 2);
    assert!(same_event(&found[&Some(1)], &typing(1, 5)));
    assert!(same_event(&found[&Some(2)], &typing(2, 7)));
}

#[test]
fn the_old_relay_delivers_up_to_the_new_streams_head() {
    let (a, b, c, d) = (typing(1, 1), typing(1, 2), typing(1, 3), typing(1, 4));
    let heads = [(Some(1), c.clone())].into_iter().collect();
    let mut drainer = Drainer::new(heads, &History::new());
    assert!(!drainer.is_complete());
    // a and b were sent before the new session began: only the old one has them.
    assert_eq!(drainer.decide(&a), Drained::Deliver);
    assert_eq!(drainer.decide(&b), Drained::Deliver);
    // c is where the new stream begins: the new fleet takes over.
    assert_eq!(drainer.decide(&c), Drained::Drop);
    assert!(drainer.is_complete());
    assert_eq!(drainer.decide(&d), Drained::Drop);
    // Guilds without a head keep being delivered (and aligned later).
    assert_eq!(drainer.decide(&typing(2, 1)), Drained::Deliver);
}

#[test]
fn a_head_already_delivered_is_reached() {
    let c = typing(1, 3);
    let delivered = history(&[(1, &[typing(1, 2), c.clone()])]);
    let mut drainer = Drainer::new([(Some(1), c)].into_iter().collect(), &delivered);
    assert!(drainer.is_complete());
    assert_eq!(drainer.decide(&typing(1, 4)), Drained::Drop);
}
