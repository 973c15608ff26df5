//! Slot ids in key order: the memory table's index for prefix and range
//! scans, at about five bytes per key.
//!
//! A B-tree of keys would store every key a second time (an inline key plus
//! node overhead came to about 50 bytes per key); this index stores only the
//! 4-byte slot id and compares keys through the table, which the caller
//! passes in as `key_of`. Ids live in sorted chunks of at most [`CHUNK`]: a
//! lookup is a binary search over the chunks' last keys and then within one
//! chunk, an insert shifts at most one chunk.
//!
//! Each chunk's last key is also kept here, copied (its *fence*): the search
//! over the chunks compares fences instead of reaching each key through its
//! slot, a cache miss per comparison with a large table. Sweeping a million
//! expired keys spent a quarter of an instance's CPU in these searches.
//! Fences cost a key's bytes (and 16) per chunk of 256 to 512 ids: under a
//! byte per key for keys up to about 240 bytes.
//!
//! Invariants: every chunk is non-empty; ids are in strictly increasing key
//! order across the concatenation of the chunks; each id appears once;
//! `fences[c]` is the key of `chunks[c]`'s last id.

use std::{cmp::Ordering, ops::Bound};

/// Most ids per chunk. Small enough that shifting a chunk on insert is a
/// short memmove, large enough that the chunk list stays short.
const CHUNK: usize = 512;

#[derive(Debug, Default)]
pub(super) struct SortedIds {
    chunks: Vec<Vec<u32>>,
    /// The key of each chunk's last id.
    fences: Vec<Box<[u8]>>,
}

impl SortedIds {
    /// Inserts `id`, whose key is `key`; the key must not be present.
    pub(super) fn insert<'a>(&mut self, id: u32, key: &[u8], key_of: impl Fn(u32) -> &'a [u8]) {
        if self.chunks.is_empty() {
            let mut chunk = Vec::with_capacity(CHUNK);
            chunk.push(id);
            self.chunks.push(chunk);
            self.fences.push(key.into());
            return;
        }
        // The first chunk whose last key is not below `key`, or the last chunk
        // when `key` is beyond every key.
        let mut c = self
            .fences
            .partition_point(|fence| &**fence < key)
            .min(self.chunks.len() - 1);
        // Split a full chunk before inserting, so no chunk ever grows past
        // its capacity (a reallocation would double it for good).
        if self.chunks[c].len() == CHUNK {
            let tail = self.chunks[c].split_off(CHUNK / 2);
            self.chunks.insert(c + 1, tail);
            let head_fence: Box<[u8]> = key_of(*self.chunks[c].last().expect("non-empty")).into();
            self.fences.insert(c, head_fence);
            if &*self.fences[c] < key {
                c += 1;
            }
        }
        let chunk = &mut self.chunks[c];
        let at = chunk.partition_point(|other| key_of(*other) < key);
        debug_assert!(
            at == chunk.len() || key_of(chunk[at]) != key,
            "key already indexed"
        );
        chunk.insert(at, id);
        if at + 1 == chunk.len() {
            set_fence(&mut self.fences[c], key);
        }
    }

    /// Removes the id indexed under `key`, if any.
    pub(super) fn remove<'a>(&mut self, key: &[u8], key_of: impl Fn(u32) -> &'a [u8]) {
        let Some((c, at)) = self.find(Bound::Included(key), &key_of) else {
            return;
        };
        let chunk = &mut self.chunks[c];
        if key_of(chunk[at]) != key {
            return;
        }
        chunk.remove(at);
        if chunk.is_empty() {
            self.chunks.remove(c);
            self.fences.remove(c);
        } else if at == chunk.len() {
            set_fence(
                &mut self.fences[c],
                key_of(*chunk.last().expect("non-empty")),
            );
        }
    }

    /// Ids in key order from `lower` on.
    pub(super) fn range_from<'s, 'a>(
        &'s self,
        lower: Bound<&[u8]>,
        key_of: impl Fn(u32) -> &'a [u8],
    ) -> impl Iterator<Item = u32> + 's {
        let (c, at) = self.find(lower, &key_of).unwrap_or((self.chunks.len(), 0));
        let first = self.chunks.get(c).map(|chunk| &chunk[at..]).unwrap_or(&[]);
        let rest = self.chunks.get(c + 1..).unwrap_or(&[]);
        first.iter().chain(rest.iter().flatten()).copied()
    }

    /// The position of the first id at or after `lower`, if there is one.
    fn find<'a>(
        &self,
        lower: Bound<&[u8]>,
        key_of: &impl Fn(u32) -> &'a [u8],
    ) -> Option<(usize, usize)> {
        let before = |key: &[u8]| match lower {
            Bound::Included(bound) => key.cmp(bound) == Ordering::Less,
            Bound::Excluded(bound) => key.cmp(bound) != Ordering::Greater,
            Bound::Unbounded => false,
        };
        let c = self.fences.partition_point(|fence| before(fence));
        let chunk = self.chunks.get(c)?;
        Some((c, chunk.partition_point(|id| before(key_of(*id)))))
    }

    /// Heap bytes held, for the memory figures.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<u32>>()
            + self
                .chunks
                .iter()
                .map(|c| c.capacity() * size_of::<u32>())
                .sum::<usize>()
            + self.fences.capacity() * size_of::<Box<[u8]>>()
            + self.fences.iter().map(|fence| fence.len()).sum::<usize>()
    }
}

/// Makes `fence` a copy of `key`, in place when their lengths match (a
/// load in key order moves the last chunk's fence on every insert).
fn set_fence(fence: &mut Box<[u8]>, key: &[u8]) {
    if fence.len() == key.len() {
        fence.copy_from_slice(key);
    } else {
        *fence = key.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Against a BTreeSet: any mix of inserts and removes leaves the same
        /// keys in the same order, and ranges agree from any bound.
        #[test]
        fn behaves_like_an_ordered_set(
            ops in prop::collection::vec((any::<bool>(), 0u16..3000), 0..4000),
            bound in 0u16..3100,
        ) {
            let keys: Vec<Vec<u8>> = (0..3000u16).map(|k| k.to_be_bytes().to_vec()).collect();
            let key_of = |id: u32| keys[id as usize].as_slice();
            let mut index = SortedIds::default();
            let mut model = BTreeSet::new();
            for (insert, k) in ops {
                let key = keys[k as usize].as_slice();
                if insert && model.insert(k) {
                    index.insert(k as u32, key, key_of);
                } else if !insert && model.remove(&k) {
                    index.remove(key, key_of);
                }
            }
            let all: Vec<u16> = index.range_from(Bound::Unbounded, key_of).map(|id| id as u16).collect();
            prop_assert_eq!(&all, &model.iter().copied().collect::<Vec<_>>());
            let bound_key = bound.to_be_bytes();
            let from: Vec<u16> = index.range_from(Bound::Included(&bound_key), key_of).map(|id| id as u16).collect();
            prop_assert_eq!(from, model.range(bound..).copied().collect::<Vec<_>>());
            let after: Vec<u16> = index.range_from(Bound::Excluded(&bound_key), key_of).map(|id| id as u16).collect();
            prop_assert_eq!(after, model.range(bound + 1..).copied().collect::<Vec<_>>());
            prop_assert!(index.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            prop_assert_eq!(index.fences.len(), index.chunks.len());
            for (chunk, fence) in index.chunks.iter().zip(&index.fences) {
                prop_assert_eq!(&**fence, key_of(*chunk.last().expect("non-empty")));
            }
        }
    }

    #[test]
    fn costs_a_few_bytes_per_key() {
        let keys: Vec<Vec<u8>> = (0..100_000u32)
            .map(|k| k.wrapping_mul(2_654_435_761).to_be_bytes().to_vec())
            .collect();
        let key_of = |id: u32| keys[id as usize].as_slice();
        let mut index = SortedIds::default();
        for (id, key) in keys.iter().enumerate() {
            index.insert(id as u32, key, key_of);
        }
        let per_key = index.heap_bytes() as f64 / keys.len() as f64;
        assert!(per_key < 8.0, "{per_key} bytes per key");
    }
}
