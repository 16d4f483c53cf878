//! What a process holds in one lease pool, between its ticks: the leases,
//! their fencing tokens and the instant each must be given up by.
//!
//! Both lease users (the gateway node, for shards, and the worker's event
//! source, for event partitions) hold leases the same way; only what they
//! run under a lease differs. The holder decides; the actor that owns it
//! starts and stops what the decisions name.

use crate::{
    error::ClusterError,
    lease::{LeaseClient, Tick, Want},
};
use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, Instant},
};

/// What a process asks for once it is registered.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Claim {
    /// These resources, waiting for any another process still holds.
    Fixed(Vec<u32>),
    /// A fair share of all resources among the live members.
    Share,
    /// Nothing more: renew what is held and stay a member.
    Hold,
}

/// One lease held.
#[derive(Clone, Copy, Debug)]
struct Held {
    token: u64,
    /// What runs under the lease stops at this instant unless the lease is
    /// renewed: a margin before it could expire in Redis.
    stop_by: Instant,
}

/// What a tick changed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Leases that are gone (expired, or taken): stop at once.
    pub(crate) lost: Vec<u32>,
    /// Leases just claimed, with their fencing tokens: start.
    pub(crate) claimed: Vec<(u32, u64)>,
}

/// The leases of one process in one pool.
#[derive(Debug)]
pub(crate) struct LeaseHolder {
    client: LeaseClient,
    held: BTreeMap<u32, Held>,
    registered: bool,
    ticking: bool,
    target: u32,
    members: u32,
}

impl LeaseHolder {
    pub(crate) fn new(client: LeaseClient) -> Self {
        Self {
            client,
            held: BTreeMap::new(),
            registered: false,
            ticking: false,
            target: 0,
            members: 0,
        }
    }

    /// Renewals happen every third of it.
    pub(crate) fn ttl(&self) -> Duration {
        self.client.ttl()
    }

    /// How many this process should hold (its fair share, or its list).
    pub(crate) fn target(&self) -> u32 {
        self.target
    }

    /// Live members of the pool at the last tick, this one included.
    pub(crate) fn members(&self) -> u32 {
        self.members
    }

    /// The fencing token of a lease held.
    pub(crate) fn token(&self, id: u32) -> Option<u64> {
        self.held.get(&id).map(|h| h.token)
    }

    /// Whether `(id, token)` is still held.
    pub(crate) fn holds(&self, id: u32, token: u64) -> bool {
        self.token(id) == Some(token)
    }

    /// The next tick's call, unless one is under way. The first tick only
    /// registers, so processes that start together see each other before
    /// claiming; `leaving` renews what is held and leaves the pool.
    pub(crate) fn start_tick(
        &mut self,
        claim: &Claim,
        leaving: bool,
    ) -> Option<impl Future<Output = (Instant, Result<Tick, ClusterError>)> + 'static> {
        if self.ticking {
            return None;
        }
        self.ticking = true;
        let held: Vec<(u32, u64)> = self.held.iter().map(|(id, h)| (*id, h.token)).collect();
        let want = if leaving {
            Want::Leave
        } else if !self.registered {
            Want::Register
        } else {
            match claim {
                Claim::Fixed(ids) => Want::Fixed(ids.clone()),
                Claim::Share => Want::Share,
                Claim::Hold => Want::Register,
            }
        };
        let client = self.client.clone();
        let sent = Instant::now();
        Some(async move { (sent, client.tick(&held, &want).await) })
    }

    /// Applies a tick's answer. Leases claimed while `leaving` are released
    /// again at once and not reported.
    ///
    /// # Errors
    ///
    /// The tick's error: nothing changed, the deadlines keep running.
    pub(crate) fn finish_tick(
        &mut self,
        sent: Instant,
        result: Result<Tick, ClusterError>,
        leaving: bool,
    ) -> Result<Changes, ClusterError> {
        self.ticking = false;
        let tick = result?;
        self.registered = true;
        self.target = tick.target;
        self.members = tick.members;
        // Measured from when the renewal was sent: Redis extended the lease
        // at some instant after that.
        let ttl = self.ttl();
        let stop_by = sent + ttl - ttl / 5;
        for id in &tick.renewed {
            if let Some(held) = self.held.get_mut(id) {
                held.stop_by = stop_by;
            }
        }
        let mut changes = Changes::default();
        for id in tick.lost {
            if self.held.remove(&id).is_some() {
                changes.lost.push(id);
            }
        }
        for (id, token) in tick.claimed {
            if leaving {
                self.spawn_release(id, token);
                continue;
            }
            self.held.insert(id, Held { token, stop_by });
            changes.claimed.push((id, token));
        }
        Ok(changes)
    }

    /// Leases whose deadline passed, forgotten: stop what runs under them.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<u32> {
        let expired: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| now >= h.stop_by)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.held.remove(id);
        }
        expired
    }

    /// Forgets a lease without touching Redis (it is lost, or its holder
    /// gave up on it).
    pub(crate) fn forget(&mut self, id: u32) -> Option<u64> {
        self.held.remove(&id).map(|h| h.token)
    }

    /// Forgets a lease and deletes it in Redis if it is still this one, so
    /// the next holder need not wait for its TTL.
    pub(crate) fn release(&mut self, id: u32) {
        if let Some(token) = self.forget(id) {
            self.spawn_release(id, token);
        }
    }

    fn spawn_release(&self, id: u32, token: u64) {
        let client = self.client.clone();
        actix_rt::spawn(async move {
            if let Err(error) = client.release(&[(id, token)]).await {
                log::warn!("lease {id}: release failed, it expires instead: {error}");
            }
        });
    }

    /// The call that leaves the pool (after everything was released).
    pub(crate) fn leave(&self) -> impl Future<Output = Result<Tick, ClusterError>> + 'static {
        let client = self.client.clone();
        async move { client.tick(&[], &Want::Leave).await }
    }
}
