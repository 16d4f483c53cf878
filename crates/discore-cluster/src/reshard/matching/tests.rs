use super::{
    Drained, Drainer, Kind, Mark, OldGeneration, Record, RecordWire, Seen, Verdict, heads,
    parse_head,
};
use std::collections::HashSet;

fn message(guild: u64, id: u64) -> Seen {
    Seen::of(
        "MESSAGE_CREATE",
        format!(r#"{{"guild_id":"{guild}","id":"{id}","content":"hi"}}"#).as_bytes(),
    )
}

fn guild_create(guild: u64) -> Seen {
    Seen::of("GUILD_CREATE", format!(r#"{{"id":"{guild}"}}"#).as_bytes())
}

fn ready() -> Seen {
    Seen::of("READY", br#"{"session_id":"new","guilds":[]}"#)
}

#[test]
fn the_same_content_has_the_same_mark_whatever_the_layout() {
    let a = Mark::of("X", br#"{"a":1,"b":{"c":"2","d":[1,2]}}"#);
    let b = Mark::of("X", br#"{ "b" : {"d":[1, 2],"c":"2"}, "a":1 }"#);
    assert_eq!(a, b);
    assert_ne!(a, Mark::of("Y", br#"{"a":1,"b":{"c":"2","d":[1,2]}}"#));
    assert_ne!(Mark::of("X", br#"{"a":"1"}"#), Mark::of("X", br#"{"a":1}"#));
    // Not JSON: digested as bytes, no panic.
    assert_eq!(Mark::of("X", b"\xff{"), Mark::of("X", b"\xff{"));
}

#[test]
fn guilds_and_kinds_are_read() {
    assert_eq!(message(7, 1).key, Some(7));
    assert_eq!(guild_create(9).kind, Kind::GuildCreate(9));
    assert_eq!(guild_create(9).key, Some(9));
    assert_eq!(ready().kind, Kind::SessionStart);
    assert_eq!(Seen::of("TYPING_START", b"{}").key, None);
    assert_eq!(
        Seen::of("X", br#"{"guild_id":12}"#).key,
        Some(12),
        "numbers too"
    );
}

#[test]
fn heads_skip_the_session_start() {
    let events = [ready(), guild_create(1), guild_create(2), message(1, 10)];
    let heads = heads(events.iter().enumerate().map(|(i, s)| (i as u64 + 1, s)));
    assert_eq!(heads, vec![(Some(1), message(1, 10).mark)]);
}

#[test]
fn the_new_shard_skips_what_the_old_one_published_then_publishes_the_rest() {
    let mut record = Record::new(100);
    for id in 1..=3 {
        record.push(&message(1, id));
    }
    record.push(&message(2, 50));
    let mut old = OldGeneration::new(1);
    old.add(0, RecordWire::new(&record, Some(&HashSet::from([1, 2]))));
    let mut aligner = old.aligner_for(0, 1);
    let knows = |g| old.knows(g);
    // The new session began after message 1.
    let held = [
        (1, ready(), Verdict::Artifact),
        (2, guild_create(1), Verdict::Artifact),
        (3, guild_create(3), Verdict::Publish),
        (4, message(1, 2), Verdict::Duplicate),
        (5, message(1, 3), Verdict::Duplicate),
        (6, message(1, 4), Verdict::Publish),
        (7, message(2, 51), Verdict::Publish),
        (8, message(1, 5), Verdict::Publish),
    ];
    for (sequence, seen, verdict) in held {
        assert_eq!(
            aligner.decide(sequence, &seen, knows),
            verdict,
            "#{sequence}"
        );
    }
    assert!(aligner.is_done());
}

#[test]
fn a_shard_taken_over_knows_every_guild_of_its_own() {
    let mut old = OldGeneration::new(2);
    old.add(1, RecordWire::new(&Record::new(4), None));
    let guild = (0..100u64)
        .map(|g| g << 22)
        .find(|g| discore_protocol::shard_for_guild(*g, 2) == 1)
        .expect("a guild of shard 1");
    assert!(old.knows(guild));
    assert!(!old.knows(guild + (1 << 22)), "shard 0's guilds are listed");
}

#[test]
fn the_old_shard_publishes_until_the_head_then_drops() {
    let record = Record::new(10);
    let mut drainer = Drainer::new([(Some(1), message(1, 3).mark)], &record);
    assert!(!drainer.is_complete());
    assert_eq!(drainer.decide(&message(1, 2)), Drained::Publish);
    assert_eq!(drainer.decide(&message(2, 9)), Drained::Publish);
    assert_eq!(drainer.decide(&message(1, 3)), Drained::Drop);
    assert!(drainer.is_complete());
    assert_eq!(drainer.decide(&message(1, 4)), Drained::Drop);
    let mut published = Record::new(10);
    published.push(&message(1, 3));
    assert!(Drainer::new([(Some(1), message(1, 3).mark)], &published).is_complete());
}

#[test]
fn a_full_record_forgets_the_oldest() {
    let mut record = Record::new(2);
    for id in 1..=3 {
        record.push(&message(1, id));
    }
    assert_eq!(record.forgotten(), 1);
    assert!(!record.contains(Some(1), message(1, 1).mark));
    assert!(record.contains(Some(1), message(1, 3).mark));
}

#[test]
fn heads_round_trip_through_their_text() {
    let mark = message(1, 1).mark;
    assert_eq!(
        parse_head(&super::head_field(Some(5)), &super::head_value(mark)),
        Some((Some(5), mark))
    );
    assert_eq!(
        parse_head(&super::head_field(None), &super::head_value(mark)),
        Some((None, mark))
    );
    assert_eq!(parse_head("x", "zz"), None);
}
