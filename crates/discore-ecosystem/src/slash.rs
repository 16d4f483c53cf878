//! Slash commands: INTERACTION_CREATE over the gateway, the answer over
//! REST with twilight-http's interaction client.

use crate::Answers;
pub use crate::GetAnswers;
use actix::{Actor, ActorFutureExt as _, AsyncContext as _, Context, Handler, WrapFuture as _};
use discore::{DispatchEvent, EventFilter, EventType, GatewayEvent};
use std::sync::Arc;
use twilight_model::{
    application::{
        command::{CommandOption, CommandOptionType},
        interaction::{
            InteractionData,
            application_command::{CommandData, CommandOptionValue},
        },
    },
    http::interaction::{InteractionResponse, InteractionResponseData, InteractionResponseType},
    id::{Id, marker::ApplicationMarker},
};

/// What the bot says to a command: `/ping` → `pong`, `/echo text` → `text`;
/// `None` for a command it does not know.
pub fn answer(command: &CommandData) -> Option<String> {
    match command.name.as_str() {
        "ping" => Some("pong".to_owned()),
        "echo" => command
            .options
            .iter()
            .find(|o| o.name == "text")
            .and_then(|o| match &o.value {
                CommandOptionValue::String(text) => Some(text.clone()),
                _ => None,
            }),
        _ => None,
    }
}

/// Registers `/ping` and `/echo text` as global commands. Discord needs
/// this once per application; the emulator dispatches any command without
/// it (and has no command routes), so the example calls it on Discord only.
///
/// # Errors
///
/// twilight-http's error for a failed request.
pub async fn register(
    http: &twilight_http::Client,
    application: Id<ApplicationMarker>,
) -> Result<(), twilight_http::Error> {
    let commands = http.interaction(application);
    commands
        .create_global_command()
        .chat_input("ping", "Answers pong")
        .await?;
    let text = CommandOption {
        autocomplete: None,
        channel_types: None,
        choices: None,
        description: "What to say".to_owned(),
        description_localizations: None,
        file_types: None,
        kind: CommandOptionType::String,
        max_length: None,
        max_value: None,
        min_length: None,
        min_value: None,
        name: "text".to_owned(),
        name_localizations: None,
        options: None,
        required: Some(true),
    };
    commands
        .create_global_command()
        .chat_input("echo", "Says it back")
        .command_options(&[text])
        .await?;
    Ok(())
}

/// Answers slash commands with a message.
#[derive(Debug)]
pub struct SlashBot {
    http: Arc<twilight_http::Client>,
    answers: Answers,
}

impl SlashBot {
    /// A bot answering through `http`.
    pub fn new(http: Arc<twilight_http::Client>) -> Self {
        Self {
            http,
            answers: Answers::default(),
        }
    }

    /// The events it needs (INTERACTION_CREATE needs no intent).
    pub fn filter() -> EventFilter {
        EventFilter::only([EventType::InteractionCreate])
    }
}

impl Actor for SlashBot {
    type Context = Context<Self>;
}

impl Handler<GatewayEvent> for SlashBot {
    type Result = ();

    /// Answers a command it knows, in the background.
    fn handle(&mut self, message: GatewayEvent, ctx: &mut Context<Self>) {
        let Some(DispatchEvent::InteractionCreate(interaction)) = message.typed() else {
            return;
        };
        let Some(InteractionData::ApplicationCommand(command)) = &interaction.data else {
            return;
        };
        let Some(content) = answer(command) else {
            log::info!("unknown command /{}", command.name);
            return;
        };
        let response = InteractionResponse {
            kind: InteractionResponseType::ChannelMessageWithSource,
            data: Some(InteractionResponseData {
                content: Some(content),
                ..InteractionResponseData::default()
            }),
        };
        let (application, id, token) = (
            interaction.application_id,
            interaction.id,
            interaction.token.clone(),
        );
        let http = Arc::clone(&self.http);
        let respond = async move {
            http.interaction(application)
                .create_response(id, &token, &response)
                .await
                .map(drop)
        };
        self.answers.started += 1;
        ctx.spawn(
            respond
                .into_actor(self)
                .map(move |result, bot: &mut Self, _| match result {
                    Ok(()) => bot.answers.answered += 1,
                    Err(error) => {
                        bot.answers.failed += 1;
                        log::warn!("interaction {id}: response failed: {error}");
                    }
                }),
        );
    }
}

impl Handler<GetAnswers> for SlashBot {
    type Result = actix::MessageResult<GetAnswers>;

    /// Answers the counts.
    fn handle(&mut self, _: GetAnswers, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.answers)
    }
}
