//! The relay between one shard and the user's recipients.
//!
//! Every shard of the fleet delivers to its own relay, which runs on the
//! same arbiter and fans each event out to the recipients whose filter wants
//! it. The shard is subscribed with the union of those filters, so an event
//! nobody wants is never deserialized. The relay is where the manager
//! switches delivery during a zero-downtime re-sharding: the old fleet's
//! relays record what they deliver, the new fleet's relays hold their events
//! back, and at the switch the old relays fall silent while the new ones
//! deliver what the old ones did not (see [`crate::align`]).

use crate::align::{
    Aligner, Drained, Drainer, History, Key, KnownGuilds, Recorder, Verdict, guild_change, heads,
    kind_of,
};
use actix::{
    Actor, AsyncContext as _, Context, Handler, Message, MessageResult, Recipient, ResponseFuture,
};
use discore_gateway::{Dispatch, EventFilter, GatewayEvent};
use discore_protocol::ShardId;
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::Arc,
    time::Duration,
};
use tokio::sync::oneshot;

/// A recipient of events with its filter.
#[derive(Clone, Debug)]
pub(crate) struct Subscriber {
    pub(crate) recipient: Recipient<GatewayEvent>,
    pub(crate) filter: EventFilter,
}

/// What a relay does with the events it receives.
pub(crate) enum Mode {
    /// Deliver.
    Live,
    /// Deliver and record (the old fleet while a new one starts).
    Recording(Recorder),
    /// Hold back (the new fleet before the switch).
    Staging(VecDeque<GatewayEvent>),
    /// Deliver up to where the new fleet's streams begin, then fall silent
    /// and hand the record over (the old fleet during the switch).
    Draining(Box<Draining>),
    /// Deliver what the old fleet did not (the new fleet after the switch).
    Aligning(Aligner),
    /// Drop (the old fleet after the switch, until it stops).
    Muted,
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Live => "Live",
            Self::Recording(_) => "Recording",
            Self::Staging(_) => "Staging",
            Self::Draining(_) => "Draining",
            Self::Aligning(_) => "Aligning",
            Self::Muted => "Muted",
        })
    }
}

/// An old relay during the switch.
pub(crate) struct Draining {
    recorder: Recorder,
    drainer: Drainer,
    reply: Option<oneshot::Sender<History>>,
}

/// The relay actor of one shard.
pub(crate) struct Relay {
    shard: ShardId,
    subscribers: Arc<[Subscriber]>,
    mode: Mode,
    known: Arc<KnownGuilds>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("shard", &self.shard)
            .field("mode", &self.mode)
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}

impl Relay {
    pub(crate) fn new(
        shard: ShardId,
        subscribers: Arc<[Subscriber]>,
        mode: Mode,
        known: Arc<KnownGuilds>,
    ) -> Self {
        Self {
            shard,
            subscribers,
            mode,
            known,
        }
    }

    /// Hands the event to every recipient that wants it.
    fn deliver(&self, event: &GatewayEvent) {
        let kind = kind_of(&event.event);
        for subscriber in self.subscribers.iter() {
            if subscriber.filter.wants(kind) && subscriber.recipient.connected() {
                subscriber.recipient.do_send(event.clone());
            }
        }
        if let Some(change) = guild_change(&event.event) {
            self.known.apply(change);
        }
    }

    fn deliver_aligned(&mut self, event: &GatewayEvent) {
        let Mode::Aligning(aligner) = &mut self.mode else {
            return;
        };
        let known = &self.known;
        match aligner.decide(event.sequence, &event.event, |guild| known.contains(guild)) {
            Verdict::Deliver => self.deliver(event),
            verdict => log::trace!(
                "shard {}: skipping {} #{} ({verdict:?})",
                self.shard,
                event.name(),
                event.sequence
            ),
        }
    }
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Relay {
    type Result = ();

    /// Delivers, records, holds or drops one event, as the mode says.
    fn handle(&mut self, event: GatewayEvent, _ctx: &mut Context<Self>) {
        match &mut self.mode {
            Mode::Live => self.deliver(&event),
            Mode::Recording(recorder) => {
                recorder.record(&event.event);
                self.deliver(&event);
            }
            Mode::Staging(held) => held.push_back(event),
            Mode::Draining(draining) => {
                if draining.drainer.decide(&event.event) == Drained::Deliver {
                    draining.recorder.record(&event.event);
                    self.deliver(&event);
                }
                if matches!(&self.mode, Mode::Draining(d) if d.drainer.is_complete()) {
                    self.finish_draining();
                }
            }
            Mode::Aligning(_) => self.deliver_aligned(&event),
            Mode::Muted => {}
        }
    }
}

impl Relay {
    /// Falls silent and hands the record over.
    fn finish_draining(&mut self) {
        if let Mode::Draining(draining) = std::mem::replace(&mut self.mode, Mode::Muted) {
            let Draining {
                recorder, reply, ..
            } = *draining;
            if recorder.forgotten() > 0 {
                log::warn!(
                    "shard {}: the re-sharding record overflowed by {} events; some may be delivered twice",
                    self.shard,
                    recorder.forgotten()
                );
            }
            if let Some(reply) = reply {
                let _ = reply.send(recorder.into_history());
            }
        }
    }
}

/// Replaces the recipients.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetSubscribers(pub(crate) Arc<[Subscriber]>);

impl Handler<SetSubscribers> for Relay {
    type Result = ();

    /// Replaces the recipients.
    fn handle(&mut self, SetSubscribers(subscribers): SetSubscribers, _: &mut Context<Self>) {
        self.subscribers = subscribers;
    }
}

/// Starts recording deliveries (a re-sharding began), with this capacity.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartRecording(pub(crate) usize);

impl Handler<StartRecording> for Relay {
    type Result = ();

    /// Starts recording, unless already recording.
    fn handle(&mut self, StartRecording(capacity): StartRecording, _: &mut Context<Self>) {
        if matches!(self.mode, Mode::Live) {
            self.mode = Mode::Recording(Recorder::new(capacity));
        }
    }
}

/// Stops recording and delivers normally (a re-sharding was abandoned).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopRecording;

impl Handler<StopRecording> for Relay {
    type Result = ();

    /// Back to live delivery.
    fn handle(&mut self, _: StopRecording, _: &mut Context<Self>) {
        if matches!(self.mode, Mode::Recording(_)) {
            self.mode = Mode::Live;
        }
    }
}

/// The switch, on an old relay: deliver until every guild's stream
/// reaches `heads` (where the new fleet's streams begin), then fall silent
/// and answer what was delivered. After `timeout` it gives up waiting.
#[derive(Message)]
#[rtype(result = "History")]
pub(crate) struct Drain {
    pub(crate) heads: HashMap<Key, Arc<Dispatch>>,
    pub(crate) timeout: Duration,
}

impl Handler<Drain> for Relay {
    type Result = ResponseFuture<History>;

    /// Starts draining; answers when done.
    fn handle(&mut self, Drain { heads, timeout }: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let recorder = match std::mem::replace(&mut self.mode, Mode::Muted) {
            Mode::Recording(recorder) => recorder,
            // Restarted during the re-sharding without a record, or live.
            Mode::Live => Recorder::new(1),
            other => {
                self.mode = other;
                return Box::pin(async { History::new() });
            }
        };
        let drainer = Drainer::new(heads, recorder.history());
        let (reply, answer) = oneshot::channel();
        self.mode = Mode::Draining(Box::new(Draining {
            recorder,
            drainer,
            reply: Some(reply),
        }));
        if matches!(&self.mode, Mode::Draining(d) if d.drainer.is_complete()) {
            self.finish_draining();
        } else {
            ctx.run_later(timeout, |relay, _| {
                if matches!(relay.mode, Mode::Draining(_)) {
                    log::warn!(
                        "shard {}: did not reach the new fleet's position in time; switching anyway",
                        relay.shard
                    );
                    relay.finish_draining();
                }
            });
        }
        Box::pin(async move { answer.await.unwrap_or_default() })
    }
}

/// The relay's shard is gone: whatever it was draining is complete.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Finish;

impl Handler<Finish> for Relay {
    type Result = ();

    /// Ends draining.
    fn handle(&mut self, _: Finish, _: &mut Context<Self>) {
        self.finish_draining();
    }
}

/// Where each guild's stream begins among the held-back events.
#[derive(Message)]
#[rtype(result = "HashMap<Key, Arc<Dispatch>>")]
pub(crate) struct TakeHeads;

impl Handler<TakeHeads> for Relay {
    type Result = MessageResult<TakeHeads>;

    /// The first held event of each guild, session artifacts left out.
    fn handle(&mut self, _: TakeHeads, _: &mut Context<Self>) -> Self::Result {
        let found = match &self.mode {
            Mode::Staging(held) => heads(held.iter().map(|e| (e.sequence, &e.event))),
            _ => HashMap::new(),
        };
        MessageResult(found)
    }
}

/// Delivers what was held back, minus what the old fleet delivered, then
/// keeps aligning for `window` before delivering everything.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Release {
    pub(crate) history: History,
    pub(crate) window: Duration,
}

impl Handler<Release> for Relay {
    type Result = ();

    /// Releases the held events through an aligner.
    fn handle(&mut self, Release { history, window }: Release, ctx: &mut Context<Self>) {
        let held = match std::mem::replace(&mut self.mode, Mode::Aligning(Aligner::new(history))) {
            Mode::Staging(held) => held,
            other => {
                // Not staging: nothing held, and nothing to align.
                self.mode = other;
                return;
            }
        };
        log::debug!("shard {}: releasing {} held events", self.shard, held.len());
        for event in held {
            self.deliver_aligned(&event);
        }
        // Aligning goes on for a while even when every record has been
        // walked past: the sessions' initial GUILD_CREATEs may still come.
        ctx.run_later(window, |relay, _| {
            if matches!(relay.mode, Mode::Aligning(_)) {
                log::debug!("shard {}: alignment window over", relay.shard);
                relay.mode = Mode::Live;
            }
        });
    }
}
