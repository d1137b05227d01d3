//! What a version's deltas changed over its base, as the state holds it: the overlay's
//! segments (the rows deltas wrote, with their own indexes) and the bitmap of rows a newer
//! delta replaced or deleted. [`crate::build::apply`] makes new overlays.

use std::sync::Arc;

use super::Layer;

/// Rows per bitmap block: a delta copies the blocks it touches, not the whole bitmap.
const BLOCK_BITS: usize = 1 << 16;
const BLOCK_WORDS: usize = BLOCK_BITS / 64;

/// Base row ids that deltas replaced or deleted (copy-on-write blocks of 64Ki bits).
#[derive(Clone, Default)]
pub struct Deleted {
    blocks: Vec<Option<Arc<[u64; BLOCK_WORDS]>>>,
    len: usize,
}

impl Deleted {
    /// How many rows are deleted.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, id: u32) -> bool {
        let id = id as usize;
        match self.blocks.get(id / BLOCK_BITS) {
            Some(Some(block)) => block[(id % BLOCK_BITS) / 64] & (1 << (id % 64)) != 0,
            _ => false,
        }
    }

    /// Marks `id` deleted (copying its block if another version shares it).
    pub(crate) fn insert(&mut self, id: u32) {
        let id = id as usize;
        let b = id / BLOCK_BITS;
        if self.blocks.len() <= b {
            self.blocks.resize(b + 1, None);
        }
        let block = self.blocks[b].get_or_insert_with(|| Arc::new([0; BLOCK_WORDS]));
        let word = &mut Arc::make_mut(block)[(id % BLOCK_BITS) / 64];
        let bit = 1 << (id % 64);
        if *word & bit == 0 {
            *word |= bit;
            self.len += 1;
        }
    }

    /// Forgets every deleted id from `start` on (those rows were dropped by a merge).
    pub(crate) fn clear_from(&mut self, start: u32) {
        for id in start as usize..self.blocks.len() * BLOCK_BITS {
            let (b, w, bit) = (id / BLOCK_BITS, (id % BLOCK_BITS) / 64, 1u64 << (id % 64));
            let Some(block) = &mut self.blocks[b] else {
                continue;
            };
            if block[w] & bit != 0 {
                Arc::make_mut(block)[w] &= !bit;
                self.len -= 1;
            }
        }
    }

    /// Whether any of the `len` rows from `start` is deleted.
    pub fn any_in(&self, start: u32, len: usize) -> bool {
        (start as usize..start as usize + len).any(|id| self.contains(id as u32))
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.blocks.iter().flatten().count() * BLOCK_WORDS * 8
    }
}

/// What a version's deltas changed over its base.
pub struct Overlay {
    /// The rows deltas wrote, oldest first; row ids continue after the base's.
    pub segments: Vec<Segment>,
    /// Rows (base or overlay) a newer delta replaced or deleted.
    pub deleted: Deleted,
    /// The delta files of the version, all applied, in sequence order.
    pub applied: Vec<Applied>,
}

/// A delta file an overlay applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub seq: u64,
    pub path: String,
}

/// Rows written by one or more consecutive deltas, in (sequence, key) order.
#[derive(Clone)]
pub struct Segment {
    pub layer: Arc<Layer>,
    /// Row id of the segment's first row.
    pub offset: u32,
}
