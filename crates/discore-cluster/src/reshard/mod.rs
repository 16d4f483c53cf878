//! Re-sharding a running cluster without downtime (`docs/cluster.md`,
//! "Re-sharding"): the generation record and the shared progress in Redis
//! (`state.rs`), the IO-free matching of the two generations' events
//! (`matching.rs`), and the publisher's per-shard gates that apply it
//! (`gate.rs`). The node drives the steps (`node/reshard.rs`).

pub(crate) mod gate;
pub(crate) mod matching;
pub(crate) mod state;
