//! A bot that answers `!ping` with `pong` through twilight-http.
//!
//! The gateway brings MESSAGE_CREATE; the answer is a REST call,
//! `POST /channels/{id}/messages`, made by twilight-http. Pointed at the
//! emulator or at Discord, the code is the same: only the REST base URL
//! and the token differ ([`Environment`](crate::setup::Environment)).

use crate::Answers;
pub use crate::GetAnswers;
use actix::{Actor, ActorFutureExt as _, AsyncContext as _, Context, Handler, WrapFuture as _};
use discore::{DispatchEvent, EventFilter, EventType, GatewayEvent};
use std::sync::Arc;

/// The command the bot answers.
pub const PING: &str = "!ping";

/// Answers `!ping` from members with `pong`, as a reply.
#[derive(Debug)]
pub struct PingBot {
    http: Arc<twilight_http::Client>,
    answers: Answers,
}

impl PingBot {
    /// A bot answering through `http`.
    pub fn new(http: Arc<twilight_http::Client>) -> Self {
        Self {
            http,
            answers: Answers::default(),
        }
    }

    /// The events it needs: messages only.
    pub fn filter() -> EventFilter {
        EventFilter::only([EventType::MessageCreate])
    }
}

impl Actor for PingBot {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for PingBot {
    type Result = ();

    /// Answers a `!ping` by a member, in the background.
    fn handle(&mut self, message: GatewayEvent, ctx: &mut Context<Self>) {
        let Some(DispatchEvent::MessageCreate(created)) = message.typed() else {
            return;
        };
        if created.author.bot || created.content.trim() != PING {
            return;
        }
        let (channel, id) = (created.channel_id, created.id);
        let http = Arc::clone(&self.http);
        let answer = async move {
            http.create_message(channel)
                .content("pong")
                .reply(id)
                .await
                .map(drop)
        };
        self.answers.started += 1;
        ctx.spawn(
            answer
                .into_actor(self)
                .map(move |result, bot: &mut Self, _| match result {
                    Ok(()) => bot.answers.answered += 1,
                    Err(error) => {
                        bot.answers.failed += 1;
                        log::warn!("channel {channel}: pong failed: {error}");
                    }
                }),
        );
    }
}

impl Handler<GetAnswers> for PingBot {
    type Result = actix::MessageResult<GetAnswers>;

    /// Answers the counts.
    fn handle(&mut self, _: GetAnswers, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.answers)
    }
}
