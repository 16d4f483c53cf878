//! The conformance suite every [`SessionStore`] implementation must pass.
//!
//! ```
//! use discore_manager::session_store::{InMemorySessionStore, conformance};
//! use std::sync::Arc;
//!
//! # #[actix_rt::main]
//! # async fn main() {
//! conformance::run(Arc::new(InMemorySessionStore::new()))
//!     .await
//!     .expect("the in-memory store conforms");
//! # }
//! ```
//!
//! Give it an empty store; it leaves the store empty.

use super::{SavedSession, SessionStore, SessionStoreError};
use discore_protocol::{Session, ShardId};
use futures_util::future::join_all;
use std::{fmt, sync::Arc, time::SystemTime};

/// A check the store failed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ConformanceError {
    /// The check's name.
    pub check: &'static str,
    /// What went wrong.
    pub detail: String,
}

impl fmt::Display for ConformanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "session store check `{}` failed: {}",
            self.check, self.detail
        )
    }
}

impl std::error::Error for ConformanceError {}

fn fail(check: &'static str, detail: impl Into<String>) -> ConformanceError {
    ConformanceError {
        check,
        detail: detail.into(),
    }
}

fn store_error(check: &'static str) -> impl Fn(SessionStoreError) -> ConformanceError {
    move |error| fail(check, format!("the store failed: {error}"))
}

fn saved(number: u32, total: u32, id: &str, sequence: u64) -> SavedSession {
    SavedSession::at(
        ShardId::new(number, total),
        Session::new(
            id,
            sequence,
            number
                .is_multiple_of(2)
                .then(|| format!("wss://resume.example/{id}")),
        ),
        SystemTime::now(),
    )
}

/// Loads and sorts by `(total, id)` so comparisons ignore the store's order.
async fn load_sorted(
    check: &'static str,
    store: &dyn SessionStore,
) -> Result<Vec<SavedSession>, ConformanceError> {
    let mut all = store.load().await.map_err(store_error(check))?;
    all.sort_by_key(|s| (s.shard.total(), s.shard.number()));
    Ok(all)
}

/// Runs every check on `store`, which must start empty.
///
/// # Errors
///
/// The first check that failed.
pub async fn run(store: Arc<dyn SessionStore>) -> Result<(), ConformanceError> {
    let store = &*store;
    starts_empty(store).await?;
    saves_and_loads_every_field(store).await?;
    saving_again_replaces(store).await?;
    totals_are_part_of_the_key(store).await?;
    removes_only_what_is_named(store).await?;
    concurrent_saves_all_land(store).await?;
    Ok(())
}

async fn starts_empty(store: &dyn SessionStore) -> Result<(), ConformanceError> {
    const CHECK: &str = "an empty store loads nothing";
    let all = load_sorted(CHECK, store).await?;
    if all.is_empty() {
        Ok(())
    } else {
        Err(fail(
            CHECK,
            format!(
                "loaded {} sessions from a store that should be empty",
                all.len()
            ),
        ))
    }
}

async fn saves_and_loads_every_field(store: &dyn SessionStore) -> Result<(), ConformanceError> {
    const CHECK: &str = "saved sessions load back unchanged";
    let batch = vec![
        saved(0, 3, "a0", 10),
        saved(1, 3, "a1", 11),
        saved(2, 3, "a2", u64::MAX),
    ];
    store
        .save(batch.clone())
        .await
        .map_err(store_error(CHECK))?;
    let all = load_sorted(CHECK, store).await?;
    if all != batch {
        return Err(fail(CHECK, format!("saved {batch:?}, loaded {all:?}")));
    }
    Ok(())
}

async fn saving_again_replaces(store: &dyn SessionStore) -> Result<(), ConformanceError> {
    const CHECK: &str = "saving a shard again replaces its session";
    let newer = saved(1, 3, "b1", 99);
    store
        .save(vec![newer.clone()])
        .await
        .map_err(store_error(CHECK))?;
    let all = load_sorted(CHECK, store).await?;
    let ones: Vec<&SavedSession> = all.iter().filter(|s| s.shard == newer.shard).collect();
    if ones != [&newer] || all.len() != 3 {
        return Err(fail(
            CHECK,
            format!("after saving {newer:?}, loaded {all:?}"),
        ));
    }
    Ok(())
}

async fn totals_are_part_of_the_key(store: &dyn SessionStore) -> Result<(), ConformanceError> {
    const CHECK: &str = "shard 1 of 3 and shard 1 of 6 are different shards";
    let other_total = saved(1, 6, "c1", 5);
    store
        .save(vec![other_total.clone()])
        .await
        .map_err(store_error(CHECK))?;
    let all = load_sorted(CHECK, store).await?;
    if all.len() != 4 || !all.contains(&other_total) {
        return Err(fail(CHECK, format!("loaded {all:?}")));
    }
    Ok(())
}

async fn removes_only_what_is_named(store: &dyn SessionStore) -> Result<(), ConformanceError> {
    const CHECK: &str = "remove forgets exactly the named shards";
    store
        .remove(vec![ShardId::new(1, 3), ShardId::new(5, 9)])
        .await
        .map_err(store_error(CHECK))?;
    let all = load_sorted(CHECK, store).await?;
    let left: Vec<[u32; 2]> = all.iter().map(|s| s.shard.into()).collect();
    if left != [[0, 3], [2, 3], [1, 6]] {
        return Err(fail(CHECK, format!("left {left:?}")));
    }
    store
        .remove(all.iter().map(|s| s.shard).collect())
        .await
        .map_err(store_error(CHECK))?;
    let all = load_sorted(CHECK, store).await?;
    if !all.is_empty() {
        return Err(fail(
            CHECK,
            format!("left {all:?} after removing everything"),
        ));
    }
    Ok(())
}

async fn concurrent_saves_all_land(store: &dyn SessionStore) -> Result<(), ConformanceError> {
    const CHECK: &str = "concurrent saves of different shards all land";
    let sessions: Vec<SavedSession> = (0..16)
        .map(|n| saved(n, 16, &format!("d{n}"), u64::from(n)))
        .collect();
    let results = join_all(sessions.iter().map(|s| store.save(vec![s.clone()]))).await;
    for result in results {
        result.map_err(store_error(CHECK))?;
    }
    let all = load_sorted(CHECK, store).await?;
    if all != sessions {
        return Err(fail(
            CHECK,
            format!("saved 16 sessions concurrently, loaded {}", all.len()),
        ));
    }
    store
        .remove(sessions.iter().map(|s| s.shard).collect())
        .await
        .map_err(store_error(CHECK))
}
