//! What every ecosystem test shares: polling with a deadline, and a
//! recorder of the events a fleet delivers.

use actix::{Actor, Context, Handler, Message};
use discore::{Dispatch, GatewayEvent};
use discore_ecosystem::{Answers, GetAnswers};
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Generous: a busy 2-core machine delays everything, and a passing test
/// never waits this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `check` every 10 ms until it returns `Some`, or panics naming
/// `what` (with the last `Err` reason) after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(reason) if Instant::now() >= deadline => {
                panic!("{what}: not within {PATIENCE:?}: {reason}")
            }
            Err(_) => actix_rt::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One delivered event: the shard's id and total, and the event.
pub type Seen = (u32, u32, Arc<Dispatch>);

/// Keeps every event it receives (the event, not the message, so no
/// delivery credit is held).
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// A copy of what it received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("recorder lock").clone()
    }
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for Recorder {
    type Result = ();

    fn handle(&mut self, message: GatewayEvent, _: &mut Context<Self>) {
        self.seen.lock().expect("recorder lock").push((
            message.shard.number(),
            message.shard.total(),
            Arc::clone(&message.event),
        ));
    }
}

/// Asks an actor, failing the test if it stopped.
pub async fn ask<A, M>(addr: &actix::Addr<A>, message: M) -> M::Result
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    addr.send(message).await.expect("the actor is running")
}

/// Waits until every answer a REST-answering bot started has ended, and
/// returns the counts.
pub async fn settled_answers(bot: &actix::Recipient<GetAnswers>) -> Answers {
    eventually("every started answer ends", || async {
        let answers = bot.send(GetAnswers).await.expect("the bot is running");
        answers
            .settled()
            .then_some(answers)
            .ok_or(format!("{answers:?}"))
    })
    .await
}
