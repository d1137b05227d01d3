//! The engine's memory pool: DataFusion's fair spill pool, except that operators which can
//! spill share only half of it, so the other half is always there for what cannot spill.
//!
//! Why: under DataFusion's pools a spilling operator may grow into the whole pool when it is
//! the only spiller registered yet, and an unspillable reservation that comes after it (the
//! merge buffer of a sort's other partition, a top-K heap, a join's build side, possibly of
//! another request) then fails its request even though the spiller could have made room. The
//! differential test hit it with a 32 MiB pool: a whole-table sort's second partition could
//! not reserve its merge buffer (503 `resources_exhausted`).
//!
//! Invariants: nothing grows past the pool; a spillable reservation grows only within an
//! equal share of half the pool (as `FairSpillPool` shares the whole; shares shrink as
//! spillers register, and one past its share spills before it grows again); unspillable ones
//! are first come, first served, within what the others leave.

use std::fmt;
use std::sync::Mutex;

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};

#[derive(Debug)]
pub struct HalfSpillPool {
    size: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Consumers that can spill, registered now.
    spillers: usize,
    spillable: usize,
    unspillable: usize,
}

impl HalfSpillPool {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is one field's arithmetic: a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Display for HalfSpillPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queryd.query_memory_bytes ({} bytes)", self.size)
    }
}

impl MemoryPool for HalfSpillPool {
    fn name(&self) -> &str {
        "half-spill"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.state().spillers += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut state = self.state();
            state.spillers = state.spillers.saturating_sub(1);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        let mut state = self.state();
        if reservation.consumer().can_spill() {
            state.spillable += additional;
        } else {
            state.unspillable += additional;
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let mut state = self.state();
        if reservation.consumer().can_spill() {
            state.spillable = state.spillable.saturating_sub(shrink);
        } else {
            state.unspillable = state.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut state = self.state();
        let free = self
            .size
            .saturating_sub(state.spillable + state.unspillable);
        let fits = if reservation.consumer().can_spill() {
            let share = (self.size / 2) / state.spillers.max(1);
            reservation.size() + additional <= share && additional <= free
        } else {
            additional <= free
        };
        if !fits {
            return Err(resources_datafusion_err!(
                "{} needs {additional} more bytes (holding {}); {free} of {self} are free",
                reservation.consumer().name(),
                reservation.size()
            ));
        }
        if reservation.consumer().can_spill() {
            state.spillable += additional;
        } else {
            state.unspillable += additional;
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        let state = self.state();
        state.spillable + state.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.size)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn spillers_share_half_and_the_other_half_waits_for_what_cannot_spill() {
        let pool: Arc<dyn MemoryPool> = Arc::new(HalfSpillPool::new(100));
        let sort = MemoryConsumer::new("sort")
            .with_can_spill(true)
            .register(&pool);
        // Alone, a spiller gets half the pool, not all of it.
        assert!(sort.try_grow(50).is_ok());
        assert!(sort.try_grow(1).is_err());
        // A second spiller: each may hold a quarter; the first must spill down to it.
        let other = MemoryConsumer::new("other sort")
            .with_can_spill(true)
            .register(&pool);
        assert!(other.try_grow(26).is_err());
        assert!(other.try_grow(25).is_ok());
        // What cannot spill still finds the rest.
        let merge = MemoryConsumer::new("merge").register(&pool);
        assert!(merge.try_grow(25).is_ok());
        assert!(merge.try_grow(1).is_err(), "the pool is full");
        sort.shrink(30);
        assert!(merge.try_grow(30).is_ok());
        assert_eq!(pool.reserved(), 100);
        drop((sort, other, merge));
        assert_eq!(pool.reserved(), 0);
    }
}
