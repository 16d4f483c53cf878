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

use crate::align::{Aligner, History, KnownGuilds, Recorder, Verdict, guild_change, kind_of};
use actix::{Actor, AsyncContext as _, Context, Handler, Message, MessageResult, Recipient};
use discore_gateway::{EventFilter, GatewayEvent};
use discore_protocol::ShardId;
use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

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
            Self::Aligning(_) => "Aligning",
            Self::Muted => "Muted",
        })
    }
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
            Mode::Aligning(_) => self.deliver_aligned(&event),
            Mode::Muted => {}
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

/// Falls silent and answers what was recorded (the switch).
#[derive(Message)]
#[rtype(result = "History")]
pub(crate) struct MuteAndTakeHistory;

impl Handler<MuteAndTakeHistory> for Relay {
    type Result = MessageResult<MuteAndTakeHistory>;

    /// Mutes the relay and hands over its record.
    fn handle(&mut self, _: MuteAndTakeHistory, _: &mut Context<Self>) -> Self::Result {
        let history = match std::mem::replace(&mut self.mode, Mode::Muted) {
            Mode::Recording(recorder) => {
                if recorder.forgotten() > 0 {
                    log::warn!(
                        "shard {}: the re-sharding record overflowed by {} events; some may be delivered twice",
                        self.shard,
                        recorder.forgotten()
                    );
                }
                recorder.into_history()
            }
            _ => History::new(),
        };
        MessageResult(history)
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

/// Whether the relay holds events back (the manager counts them in status).
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct HeldEvents;

impl Handler<HeldEvents> for Relay {
    type Result = usize;

    /// Events held back.
    fn handle(&mut self, _: HeldEvents, _: &mut Context<Self>) -> usize {
        match &self.mode {
            Mode::Staging(held) => held.len(),
            _ => 0,
        }
    }
}
