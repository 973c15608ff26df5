//! The overlay: this instance's writes the broker acknowledged and the
//! consumer has not applied yet, so that they are readable the moment they
//! are acknowledged (read-your-writes) without waiting for the consumer.
//!
//! Invariant: an entry is newer than anything the table holds for its key.
//! It is dropped as soon as the consumer applies its offset (or a later one
//! for the same key), and never inserted for an offset already applied.
//! Reads consult the overlay first.

use std::{collections::BTreeMap, ops::Bound};

use bytes::Bytes;

use crate::state::Versioned;

/// One acknowledged write.
#[derive(Debug)]
pub(super) struct Acked {
    /// `None` is an acknowledged delete.
    pub value: Option<Bytes>,
    pub partition: i32,
    pub offset: i64,
    /// The write's expiry as this instance estimates it until the consumer
    /// applies the record: a relative TTL counted from the local time of
    /// the acknowledgement, which is no earlier than the broker's timestamp
    /// the record resolves against, so the estimate is late by the produce
    /// latency at most, never early.
    pub expires_at: Option<i64>,
    /// A put's type (a string) or, for an operation the fast path answered
    /// at acknowledgement, the type it left the key with.
    pub ty: crate::collection::Type,
}

impl Acked {
    /// What a read answers for this write: the value, or nothing for a delete.
    pub fn versioned(&self) -> Option<Versioned> {
        self.value.as_ref().map(|value| Versioned {
            value: value.clone(),
            partition: self.partition,
            offset: self.offset,
            expires_at: self.expires_at,
            ty: self.ty,
        })
    }
}

/// Acknowledged writes by key, ordered so scans can merge them with the table.
#[derive(Debug, Default)]
pub(super) struct Overlay(BTreeMap<Box<[u8]>, Acked>);

impl Overlay {
    pub fn get(&self, key: &[u8]) -> Option<&Acked> {
        self.0.get(key)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.0.contains_key(key)
    }

    /// Records `write` for `key` unless the overlay already holds a newer
    /// write of it. The caller has checked that the consumer has not applied
    /// `write.offset` yet.
    pub fn insert(&mut self, key: &[u8], write: Acked) {
        if self
            .0
            .get(key)
            .is_some_and(|existing| existing.offset > write.offset)
        {
            return;
        }
        self.0.insert(key.into(), write);
    }

    /// Drops the write of `key` that the record applied at `offset`
    /// supersedes (its own, or an older one).
    pub fn forget(&mut self, key: &[u8], offset: i64) {
        if self.0.get(key).is_some_and(|w| w.offset <= offset) {
            self.0.remove(key);
        }
    }

    /// Writes with keys from `lower` on, in key order.
    pub fn range_from<'a>(
        &'a self,
        lower: Bound<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a Acked)> + 'a {
        self.0
            .range::<[u8], _>((lower, Bound::Unbounded))
            .map(|(k, w)| (&k[..], w))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Acked)> {
        self.0.iter().map(|(k, w)| (&k[..], w))
    }
}
