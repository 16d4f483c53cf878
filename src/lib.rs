//! discore: an actor-model framework for Discord's Gateway, on actix.
//!
//! This facade re-exports the crates a bot needs. See `docs/` for the guides.

pub use discore_protocol as protocol;
pub use twilight_model as model;
