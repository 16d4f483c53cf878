//! Intent bit sets the gateway validates (`docs/protocol.md`, "Intents").

use twilight_model::gateway::Intents;

/// Every documented intent bit. Any other bit closes with 4013.
pub const DOCUMENTED_INTENT_BITS: u64 = 53_608_447;

/// The privileged intents; without a grant they close with 4014.
pub const PRIVILEGED_INTENTS: Intents = Intents::GUILD_MEMBERS
    .union(Intents::GUILD_PRESENCES)
    .union(Intents::MESSAGE_CONTENT);

#[cfg(test)]
mod tests {
    use super::{DOCUMENTED_INTENT_BITS, Intents, PRIVILEGED_INTENTS};

    #[test]
    fn documented_mask_matches_discords_table() {
        assert_eq!(
            DOCUMENTED_INTENT_BITS & !PRIVILEGED_INTENTS.bits(),
            53_575_421
        );
        assert_eq!(Intents::all().bits() & !DOCUMENTED_INTENT_BITS, 0);
    }
}
