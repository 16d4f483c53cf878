//! Gateway intent bits and the application flags that grant the privileged
//! ones, as Discord documents them
//! (<https://discord.com/developers/docs/events/gateway#gateway-intents>,
//! <https://discord.com/developers/docs/resources/application#application-object-application-flags>).
//!
//! The emulator keeps its own copy: it judges what a client asks for, so it
//! does not take the numbers from the client it judges.

pub(crate) const GUILDS: u64 = 1;
pub(crate) const GUILD_MEMBERS: u64 = 1 << 1;
pub(crate) const GUILD_MODERATION: u64 = 1 << 2;
pub(crate) const GUILD_EXPRESSIONS: u64 = 1 << 3;
pub(crate) const GUILD_INTEGRATIONS: u64 = 1 << 4;
pub(crate) const GUILD_WEBHOOKS: u64 = 1 << 5;
pub(crate) const GUILD_INVITES: u64 = 1 << 6;
pub(crate) const GUILD_VOICE_STATES: u64 = 1 << 7;
pub(crate) const GUILD_PRESENCES: u64 = 1 << 8;
pub(crate) const GUILD_MESSAGES: u64 = 1 << 9;
pub(crate) const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
pub(crate) const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
pub(crate) const DIRECT_MESSAGES: u64 = 1 << 12;
pub(crate) const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
pub(crate) const DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
pub(crate) const MESSAGE_CONTENT: u64 = 1 << 15;
pub(crate) const GUILD_SCHEDULED_EVENTS: u64 = 1 << 16;
pub(crate) const AUTO_MODERATION_CONFIGURATION: u64 = 1 << 20;
pub(crate) const AUTO_MODERATION_EXECUTION: u64 = 1 << 21;
pub(crate) const GUILD_MESSAGE_POLLS: u64 = 1 << 24;
pub(crate) const DIRECT_MESSAGE_POLLS: u64 = 1 << 25;

/// Every documented intent; an Identify with any other bit closes 4013.
pub(crate) const DOCUMENTED: u64 = GUILDS
    | GUILD_MEMBERS
    | GUILD_MODERATION
    | GUILD_EXPRESSIONS
    | GUILD_INTEGRATIONS
    | GUILD_WEBHOOKS
    | GUILD_INVITES
    | GUILD_VOICE_STATES
    | GUILD_PRESENCES
    | GUILD_MESSAGES
    | GUILD_MESSAGE_REACTIONS
    | GUILD_MESSAGE_TYPING
    | DIRECT_MESSAGES
    | DIRECT_MESSAGE_REACTIONS
    | DIRECT_MESSAGE_TYPING
    | MESSAGE_CONTENT
    | GUILD_SCHEDULED_EVENTS
    | AUTO_MODERATION_CONFIGURATION
    | AUTO_MODERATION_EXECUTION
    | GUILD_MESSAGE_POLLS
    | DIRECT_MESSAGE_POLLS;

/// The privileged intents: asked for without being granted, they close 4014.
pub(crate) const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;

/// Application flag: the app may receive presence updates (GUILD_PRESENCES).
pub(crate) const APP_GATEWAY_PRESENCE: u64 = 1 << 12;
/// Application flag: the app may receive member events (GUILD_MEMBERS).
pub(crate) const APP_GATEWAY_GUILD_MEMBERS: u64 = 1 << 14;
/// Application flag: the app may read message content (MESSAGE_CONTENT).
pub(crate) const APP_GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;

/// The application flags READY and `/applications/@me` carry for the
/// privileged intents in `granted`.
pub(crate) fn application_flags(granted: u64) -> u64 {
    [
        (GUILD_PRESENCES, APP_GATEWAY_PRESENCE),
        (GUILD_MEMBERS, APP_GATEWAY_GUILD_MEMBERS),
        (MESSAGE_CONTENT, APP_GATEWAY_MESSAGE_CONTENT),
    ]
    .into_iter()
    .filter(|(intent, _)| granted & intent != 0)
    .fold(0, |flags, (_, flag)| flags | flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_masks() {
        // The sums Discord's intent table gives.
        assert_eq!(DOCUMENTED, 53_608_447);
        assert_eq!(DOCUMENTED & !PRIVILEGED, 53_575_421);
        assert_eq!(
            application_flags(PRIVILEGED),
            (1 << 12) | (1 << 14) | (1 << 18)
        );
        assert_eq!(application_flags(GUILD_MEMBERS), 1 << 14);
    }
}
