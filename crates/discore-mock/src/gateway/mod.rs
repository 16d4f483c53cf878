//! The gateway: the WebSocket upgrade, then one task per connection that
//! reads the client's frames, judges them (Discord's rules, in this crate's
//! own code), writes dispatches from the session's outbox and applies faults.
//!
//! - `upgrade`: the HTTP upgrade, its URL forms and query;
//! - `socket`: the response body the frames go out through, and the frame
//!   reader;
//! - `connection`: the connection's loop, its timers and backpressure;
//! - `inbound`: the payloads clients send, as this crate reads them;
//! - `op`: one handler per opcode a client sends;
//! - `flood`: the benchmark's flood mode, paced by the socket;
//! - `faults`: faults and other control messages from the handle.

mod connection;
mod faults;
mod flood;
mod inbound;
mod op;
mod socket;
mod upgrade;

pub(crate) use upgrade::upgrade;
