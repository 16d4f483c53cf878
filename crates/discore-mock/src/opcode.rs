//! Gateway opcodes, as Discord documents them
//! (<https://discord.com/developers/docs/topics/opcodes-and-status-codes#gateway-gateway-opcodes>)
//! that a client sends. The payloads the emulator sends are written with
//! their opcode in place (`{"op":11,…}`); every other opcode a client sends
//! is an invalid one (4001).

/// Send and receive: a heartbeat, or the server asking for one.
pub(crate) const HEARTBEAT: u64 = 1;

/// Send: start a session.
pub(crate) const IDENTIFY: u64 = 2;

/// Send: update the presence.
pub(crate) const PRESENCE_UPDATE: u64 = 3;

/// Send: join, move or leave a voice channel.
pub(crate) const VOICE_STATE_UPDATE: u64 = 4;

/// Send: resume a session.
pub(crate) const RESUME: u64 = 6;

/// Send: request guild members.
pub(crate) const REQUEST_GUILD_MEMBERS: u64 = 8;

/// Send: request a guild's soundboard sounds.
pub(crate) const REQUEST_SOUNDBOARD_SOUNDS: u64 = 31;

/// Send: request voice channel information.
pub(crate) const REQUEST_CHANNEL_INFO: u64 = 43;
