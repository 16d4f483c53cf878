//! The Discord Gateway wire layer shared by discore's client and its
//! emulator: the envelope, opcodes, close codes with the policy that follows
//! each, the limits Discord enforces, the frames a client sends, sessions and
//! shard routing. No IO happens here.
//!
//! ```
//! use discore_protocol::{CloseAction, CloseCode, Envelope, OpCode};
//!
//! let envelope = Envelope::peek(r#"{"op":0,"s":3,"t":"TYPING_START","d":{}}"#)?;
//! assert_eq!(envelope.op, OpCode::Dispatch);
//! assert_eq!(envelope.sequence, Some(3));
//! assert_eq!(CloseCode::from(4009).action(), CloseAction::NewSession);
//! # Ok::<(), discore_protocol::EnvelopeError>(())
//! ```

mod close_code;
pub mod commands;
mod envelope;
mod error_chain;
pub mod inbound;
pub mod intents;
pub mod limits;
mod opcode;
mod routing;
mod session;
mod token;

pub use close_code::{CloseAction, CloseCode, ShardFailureReason};
pub use envelope::{Envelope, EnvelopeError, PayloadData};
pub use error_chain::ErrorChain;
pub use opcode::OpCode;
pub use routing::{guild_of_dispatch, guild_of_dispatch_value, shard_for_guild};
pub use session::Session;
pub use token::{InvalidToken, Token};
pub use twilight_model::gateway::{Intents, ShardId};
