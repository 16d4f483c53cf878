//! The actor that feeds voice events into the calls.

use crate::{calls::VoiceCalls, route::VoiceRoute};
use actix::{
    Actor, ActorFutureExt as _, Addr, AsyncContext as _, Context, Handler, WrapFuture as _,
};
use discore_gateway::{EventFilter, EventType, GatewayEvent};
use std::sync::Arc;

/// Receives VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE and applies them to
/// the calls of a [`VoiceCalls`], one at a time and in order, on its own
/// task (so a join waiting for them never blocks their delivery).
#[derive(Debug)]
pub struct VoiceEvents {
    calls: Arc<VoiceCalls>,
    applied: u64,
}

impl VoiceEvents {
    /// A feeder for `calls`; start it and subscribe it with
    /// [`filter`](Self::filter), or use [`start`](Self::start).
    pub fn new(calls: Arc<VoiceCalls>) -> Self {
        Self { calls, applied: 0 }
    }

    /// The two voice events (anything else the actor would ignore).
    pub fn filter() -> EventFilter {
        EventFilter::only([EventType::VoiceStateUpdate, EventType::VoiceServerUpdate])
    }

    /// Starts a feeder for `calls` on the current arbiter, subscribed to
    /// the voice events of every shard of the calls' route.
    pub fn start(calls: Arc<VoiceCalls>) -> Addr<Self> {
        let route: VoiceRoute = calls.sharder().route().clone();
        let feeder = Self::new(calls).start();
        route.subscribe(feeder.clone().recipient(), Self::filter());
        feeder
    }
}

impl Actor for VoiceEvents {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for VoiceEvents {
    type Result = ();

    /// Applies one voice event before the next one is handled.
    fn handle(&mut self, message: GatewayEvent, ctx: &mut Context<Self>) {
        // Keep the event, not the message: the shard's credit goes back now.
        let event = Arc::clone(&message.event);
        let calls = Arc::clone(&self.calls);
        ctx.wait(
            async move { calls.process(&event).await }
                .into_actor(self)
                .map(|applied, feeder: &mut Self, _| {
                    if applied {
                        feeder.applied += 1;
                    }
                }),
        );
    }
}

/// How many events the feeder applied to a call.
#[derive(Clone, Copy, Debug, actix::Message)]
#[rtype(result = "u64")]
pub struct GetApplied;

impl Handler<GetApplied> for VoiceEvents {
    type Result = u64;

    /// Answers the count of events applied to a call.
    fn handle(&mut self, _: GetApplied, _: &mut Context<Self>) -> u64 {
        self.applied
    }
}
