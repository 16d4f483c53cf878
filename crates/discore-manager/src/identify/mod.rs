//! The identify queue (protocol digest §9.2, §9.3): one Identify per bucket
//! `shard_id % max_concurrency` per window, buckets in order, and the daily
//! session start budget with a reserve.
//!
//! The trait and the in-memory implementation live in `discore-gateway`
//! (every shard asks its queue before identifying) and are re-exported here
//! with the [`conformance`] suite any implementation must pass. The manager
//! builds an [`InMemoryIdentifyQueue`] from `GET /gateway/bot` unless it is
//! given another (a distributed one, for several processes).

pub mod conformance;
mod ordered;

pub use discore_gateway::identify::{
    IdentifyFuture, IdentifyQueue, InMemoryIdentifyQueue, SessionStartLimit,
};
pub(crate) use ordered::{OrderedIdentifyQueue, Spacing};

#[cfg(test)]
mod tests {
    use super::{InMemoryIdentifyQueue, conformance};
    use std::sync::Arc;

    #[actix_rt::test]
    async fn the_in_memory_queue_conforms() {
        conformance::run(|spec| {
            let queue = InMemoryIdentifyQueue::with_window(spec.max_concurrency, spec.window);
            Arc::new(match spec.session_start_limit {
                Some(limit) => queue.with_session_start_limit(limit),
                None => queue,
            })
        })
        .await
        .expect("the in-memory queue passes the conformance suite");
    }
}
