//! The front door, checked.
//!
//! Everything a user copies from the repository — the examples in
//! `examples/`, the code of the guides in `docs/`, the README's — is built
//! here, in a crate whose only discore dependencies are the `discore`
//! facade and the `discore-mock` emulator. An example or guide that imports
//! an internal crate (`discore_gateway`, `discore_manager`, …) fails to
//! compile here, and `tests/front_door.rs` also checks the examples and
//! guides of the other crates, which compile elsewhere.

/// The guides' and READMEs' code blocks, compiled as doc tests.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../../README.md")]
    mod readme {}
    #[doc = include_str!("../../../docs/shards.md")]
    mod shards {}
    #[doc = include_str!("../../../docs/shard-manager.md")]
    mod shard_manager {}
    #[doc = include_str!("../../../docs/operations.md")]
    mod operations {}
    #[doc = include_str!("../../../docs/emulator.md")]
    mod emulator {}
    #[doc = include_str!("../../../docs/protocol.md")]
    mod protocol {}
    #[doc = include_str!("../../discore-gateway/README.md")]
    mod gateway_readme {}
    #[doc = include_str!("../../discore-manager/README.md")]
    mod manager_readme {}
    #[doc = include_str!("../../discore-protocol/README.md")]
    mod protocol_readme {}
    #[doc = include_str!("../../discore-http/README.md")]
    mod http_readme {}
    #[doc = include_str!("../../discore-admin/README.md")]
    mod admin_readme {}
    #[doc = include_str!("../../discore-mock/README.md")]
    mod mock_readme {}
}
