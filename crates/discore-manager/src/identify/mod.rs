//! The identify queue (`docs/protocol.md`, "Identify rate limits"): one
//! Identify per bucket `shard_id % max_concurrency` per window, buckets in
//! order, and the daily session start budget with a reserve.
//!
//! The trait and the in-memory implementation live in `discore-gateway`
//! (every shard asks its queue before identifying); this module holds the
//! [`conformance`] suite any implementation must pass. The manager builds
//! an in-memory queue from `GET /gateway/bot` unless it is given another (a
//! distributed one, for several processes).

pub mod conformance;
mod ordered;

pub(crate) use ordered::OrderedIdentifyQueue;

#[cfg(test)]
mod tests {
    use super::conformance;
    use discore_gateway::InMemoryIdentifyQueue;
    use std::sync::Arc;

    #[actix_rt::test]
    async fn the_in_memory_queue_conforms() {
        conformance::run(|spec| {
            let queue = InMemoryIdentifyQueue::with_window(spec.max_concurrency, spec.window)
                .with_answer_timeout(spec.answer_timeout);
            Arc::new(match spec.session_start_limit {
                Some(limit) => queue.with_session_start_limit(limit),
                None => queue,
            })
        })
        .await
        .expect("the in-memory queue passes the conformance suite");
    }
}
