//! The engine-wide budget of bytes held for client messages that have not
//! completed yet (a WebSocket frame or fragmented message on its way, a
//! polling request body being read).
//!
//! Each connection is bounded by `maxPayload`; this bounds them together
//! (`max_partial_bytes`), so that many connections each sending most of a
//! large message and stopping cannot hold `connections × maxPayload`. Past
//! the budget, the connection holding the most is closed: the one costing
//! the most, and, when one client is to blame, most likely its connection.
//!
//! Only connections holding something are in the registry; an idle
//! connection costs nothing here and takes no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::packet::Frame;
use crate::socket::{CloseReason, Socket};

/// The budget, shared by every connection of one engine.
pub(crate) struct PartialBudget {
    limit: usize,
    next_id: AtomicU64,
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    total: usize,
    holders: HashMap<u64, Holder>,
}

struct Holder {
    bytes: usize,
    socket: Weak<Socket>,
}

/// The budget said no: this connection holds the most and must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted;

impl PartialBudget {
    pub(crate) fn new(limit: usize) -> PartialBudget {
        PartialBudget {
            limit,
            next_id: AtomicU64::new(0),
            inner: Mutex::new(Registry::default()),
        }
    }

    /// Bytes held now, all connections together.
    pub(crate) fn total(&self) -> usize {
        self.inner.lock().total
    }

    /// A connection's share, for the session `socket`.
    pub(crate) fn hold(self: &Arc<Self>, socket: &Arc<Socket>) -> PartialHold {
        PartialHold {
            budget: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            bytes: 0,
            socket: Arc::downgrade(socket),
        }
    }
}

/// One connection's share of the budget: what it holds now. Dropping it
/// gives the bytes back.
pub(crate) struct PartialHold {
    budget: Arc<PartialBudget>,
    id: u64,
    bytes: usize,
    socket: Weak<Socket>,
}

impl PartialHold {
    /// Records that the connection now holds `bytes`. Past the budget, the
    /// connection holding the most is closed: `Err` if that is this one
    /// (its caller closes it), otherwise its session is closed here.
    pub(crate) fn set(&mut self, bytes: usize) -> Result<(), Evicted> {
        if bytes == self.bytes {
            return Ok(());
        }
        let mut registry = self.budget.inner.lock();
        let registered = registry.holders.contains_key(&self.id);
        if self.bytes > 0 && !registered {
            // Evicted by another connection while it held bytes: they were
            // given back then, and this connection is closing.
            self.bytes = 0;
            return Err(Evicted);
        }
        registry.total = registry.total + bytes - self.bytes;
        self.bytes = bytes;
        if bytes == 0 {
            registry.holders.remove(&self.id);
        } else {
            registry
                .holders
                .entry(self.id)
                .or_insert_with(|| Holder {
                    bytes: 0,
                    socket: self.socket.clone(),
                })
                .bytes = bytes;
        }
        let victim = take_largest_if_over(self.budget.limit, registry);
        match victim {
            None => Ok(()),
            Some((id, _)) if id == self.id => {
                self.bytes = 0;
                Err(Evicted)
            }
            Some((_, holder)) => {
                if let Some(socket) = holder.socket.upgrade() {
                    tracing::info!(
                        sid = %socket.log_id(),
                        bytes = holder.bytes,
                        "incomplete messages over engine.max_partial_bytes: closing the largest"
                    );
                    // Its transport wakes, closes the connection and frees it.
                    socket.close_now(CloseReason::PayloadTooLarge, Frame::CLOSE);
                }
                Ok(())
            }
        }
    }
}

/// Past the budget: takes the largest holder out of the registry (its
/// bytes count as given back: they are freed as its connection closes).
fn take_largest_if_over(
    limit: usize,
    mut registry: parking_lot::MutexGuard<'_, Registry>,
) -> Option<(u64, Holder)> {
    if registry.total <= limit {
        return None;
    }
    let id = *registry.holders.iter().max_by_key(|(_, h)| h.bytes)?.0;
    let holder = registry.holders.remove(&id)?;
    registry.total -= holder.bytes;
    Some((id, holder))
}

impl Drop for PartialHold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut registry = self.budget.inner.lock();
            if let Some(holder) = registry.holders.remove(&self.id) {
                registry.total -= holder.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(budget: &Arc<PartialBudget>, id: u64) -> PartialHold {
        PartialHold {
            budget: budget.clone(),
            id,
            bytes: 0,
            socket: Weak::new(),
        }
    }

    #[test]
    fn past_the_budget_the_largest_holder_goes() {
        let budget = Arc::new(PartialBudget::new(100));
        let (mut a, mut b, mut c) = (hold(&budget, 1), hold(&budget, 2), hold(&budget, 3));
        assert_eq!(a.set(60), Ok(()));
        assert_eq!(b.set(30), Ok(()));
        assert_eq!(budget.total(), 90);
        // `c` pushes past the budget: `a`, the largest, is taken out.
        assert_eq!(c.set(20), Ok(()));
        assert_eq!(budget.total(), 50);
        // `a` learns it at its next step, and does not give its bytes twice.
        assert_eq!(a.set(70), Err(Evicted));
        assert_eq!(budget.total(), 50);
        drop(a);
        assert_eq!(budget.total(), 50);
        // The largest may be the one growing.
        assert_eq!(b.set(90), Err(Evicted));
        assert_eq!(budget.total(), 20);
        assert_eq!(c.set(0), Ok(()));
        assert_eq!(budget.total(), 0);
        drop((b, c));
        assert_eq!(budget.total(), 0);
        assert!(budget.inner.lock().holders.is_empty());
    }
}
