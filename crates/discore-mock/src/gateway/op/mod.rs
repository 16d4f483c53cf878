//! One handler per opcode a client sends, each an `impl Connection` block.

mod channel_info;
mod heartbeat;
mod identify;
mod presence;
mod request_members;
mod resume;
mod soundboard;
mod voice_state;
