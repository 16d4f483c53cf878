//! Where shard actors run: arbiters (threads), one per core by default.

use crate::config::Placement;
use actix::{Arbiter, dev::ArbiterHandle};

/// The arbiters of a manager.
#[derive(Debug)]
pub(crate) struct Arbiters {
    handles: Vec<ArbiterHandle>,
    /// Arbiters the manager created and stops.
    owned: Vec<Arbiter>,
}

impl Arbiters {
    pub(crate) fn new(placement: &Placement) -> Self {
        match placement {
            Placement::Given(handles) => Self {
                handles: handles.clone(),
                owned: Vec::new(),
            },
            Placement::PerCore | Placement::Arbiters(_) => {
                let count = match placement {
                    Placement::Arbiters(count) => *count,
                    _ => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                };
                let owned: Vec<Arbiter> = (0..count.max(1)).map(|_| Arbiter::new()).collect();
                Self {
                    handles: owned.iter().map(Arbiter::handle).collect(),
                    owned,
                }
            }
        }
    }

    /// No arbiters (what a stopped manager keeps).
    pub(crate) fn empty() -> Self {
        Self {
            handles: Vec::new(),
            owned: Vec::new(),
        }
    }

    /// The arbiter for shard `number`: `number % len`, or the next one alive
    /// when that one has stopped. When none is alive, a new one is created.
    pub(crate) fn for_shard(&mut self, number: u32) -> (usize, ArbiterHandle) {
        let len = self.handles.len();
        let first = if len == 0 { 0 } else { number as usize % len };
        for offset in 0..len {
            let index = (first + offset) % len;
            if alive(&self.handles[index]) {
                return (index, self.handles[index].clone());
            }
        }
        log::warn!("every arbiter has stopped; starting a new one");
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        self.owned.push(arbiter);
        self.handles.push(handle.clone());
        (self.handles.len() - 1, handle)
    }

    /// Stops the arbiters the manager created.
    pub(crate) fn stop_owned(&mut self) {
        for arbiter in self.owned.drain(..) {
            arbiter.stop();
        }
    }
}

/// Whether an arbiter still runs: it accepts work only while it does.
fn alive(handle: &ArbiterHandle) -> bool {
    handle.spawn(async {})
}
