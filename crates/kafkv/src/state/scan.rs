//! Ordered scans (`GET /v1/kv`, `KEYS`) and the `SCAN` cursor, over the
//! table merged with the overlay of acknowledged writes.

use std::ops::Bound;

use bytes::Bytes;

use super::{StateError, Versioned, View, now_ms, table::Live};

impl View {
    /// Up to `limit` live keys after `start_after` (exclusive) that begin with
    /// `prefix`, in order, stopping early once the keys and values copied
    /// reach `max_bytes` (at least one entry is returned), so that a page of
    /// large values never holds the lock for long.
    pub fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Bytes, Versioned)>, StateError> {
        let lower: Bound<&[u8]> = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0;
        self.visit_live(prefix, lower, |live| {
            if out.len() >= limit || bytes >= max_bytes {
                return false;
            }
            bytes += live.key.len() + live.value.len();
            out.push(live.to_owned_entry());
            true
        })?;
        Ok(out)
    }

    /// Every live key beginning with `prefix`, in byte order, without
    /// copying values.
    pub fn keys(&self, prefix: &[u8]) -> Result<Vec<Bytes>, StateError> {
        let mut keys = Vec::new();
        self.visit_live(prefix, Bound::Included(prefix), |live| {
            keys.push(Bytes::copy_from_slice(&live.key));
            true
        })?;
        Ok(keys)
    }

    /// Hands live entries beginning with `prefix`, from `lower` on, in key
    /// order to `visit` until it returns `false`: the table merged with
    /// acknowledged writes, which win on equal keys (an acknowledged delete
    /// hides the key).
    fn visit_live(
        &self,
        prefix: &[u8],
        lower: Bound<&[u8]>,
        mut visit: impl FnMut(Live<'_>) -> bool,
    ) -> Result<(), StateError> {
        let inner = self.inner.read();
        let mut acked = inner
            .overlay
            .range_from(lower)
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        // Called with each table entry in order (`None` at the end): first
        // hands over the acknowledged writes sorting before it.
        let mut merge = |entry: Option<Live<'_>>| -> bool {
            while let Some((key, write)) = acked.peek() {
                if entry.as_ref().is_some_and(|e| e.key.as_ref() < *key) {
                    break;
                }
                let (key, write) = (*key, *write);
                acked.next();
                let shadows = entry.as_ref().is_some_and(|e| e.key.as_ref() == key);
                if let Some(value) = &write.value {
                    let live = Live {
                        key: key.into(),
                        value: value[..].into(),
                        partition: write.partition,
                        offset: write.offset,
                        expires_at: None,
                        ty: write.ty,
                    };
                    if !visit(live) {
                        return false;
                    }
                }
                if shadows {
                    return true;
                }
            }
            match entry {
                Some(entry) => visit(entry),
                None => true,
            }
        };
        // `false` once the visitor asked to stop (not when the prefix ended).
        let mut wanted = true;
        let now = now_ms();
        self.table.visit(lower, &mut |entry| {
            if !entry.key.starts_with(prefix) {
                return false;
            }
            if entry.is_expired_at(now) {
                // Gone for reads the moment it expires; its SWEEP follows.
                return true;
            }
            wanted = merge(Some(entry));
            wanted
        })?;
        if wanted {
            merge(None);
        }
        Ok(())
    }

    /// Up to `count` live keys from `cursor` on, and the cursor for the rest
    /// (0 when there is none); 0 starts a scan.
    ///
    /// The cursor is a position in the table that a key keeps for as long as
    /// it is live (its slot in memory, its sequence number on disk), so a key
    /// present from the first call to the last is returned at least once
    /// (twice only if this instance's unapplied write of it crosses another
    /// record for it).
    /// Keys written or deleted meanwhile may or may not be returned, as in
    /// Redis; acknowledged writes the consumer has not applied yet come with
    /// the last page. A cursor means nothing to another instance, and after
    /// a restart only with the disk backend.
    pub fn scan_from(&self, cursor: u64, count: usize) -> Result<(Vec<Bytes>, u64), StateError> {
        let count = count.max(1);
        let inner = self.inner.read();
        let (page, next) = self.table.cursor_page(cursor, count, now_ms())?;
        // An acknowledged delete hides a key the consumer has not removed yet.
        let mut keys: Vec<Bytes> = page
            .into_iter()
            .filter(|key| inner.overlay.get(key).is_none_or(|w| w.value.is_some()))
            .collect();
        if next.is_none() {
            for (key, write) in inner.overlay.iter() {
                if write.value.is_some() && !self.table.contains(key)? {
                    keys.push(Bytes::copy_from_slice(key));
                }
            }
        }
        Ok((keys, next.unwrap_or(0)))
    }

    /// A live key picked at random, `None` when there is none, as Redis's
    /// `RANDOMKEY` does: random places in the table until one holds a live
    /// key (every live key equally likely). After [`RANDOM_PICKS`] misses
    /// the table is sparse: with at most [`EXACT_PICK_UP_TO`] live keys
    /// (after a FLUSHDB, say) one is drawn from all of them, as Redis's
    /// resized hash table would; with more, the first live key after a
    /// random place (a key after a long run of freed places is then
    /// likelier, as one in a sparse hash bucket is in Redis). Acknowledged
    /// writes the consumer has not applied yet are candidates too, each as
    /// likely as a key of the table.
    pub fn random_key(&self) -> Result<Option<Bytes>, StateError> {
        let now = now_ms();
        let inner = self.inner.read();
        let live = |key: &Bytes| inner.overlay.get(key).is_none_or(|w| w.value.is_some());
        let mut unapplied = Vec::new();
        for (key, write) in inner.overlay.iter() {
            if write.value.is_some() && !self.table.contains(key)? {
                unapplied.push(key);
            }
        }
        let pick = fastrand::usize(..self.table.len() + unapplied.len().max(1));
        if let Some(key) = unapplied.get(pick) {
            return Ok(Some(Bytes::copy_from_slice(key)));
        }
        let bound = self.table.cursor_bound()?;
        if bound > 0 {
            for _ in 0..RANDOM_PICKS {
                if let Some(key) = self.table.key_at(fastrand::u64(..bound), now)?
                    && live(&key)
                {
                    return Ok(Some(key));
                }
            }
            if self.table.len() <= EXACT_PICK_UP_TO {
                // "The first live key after a random place" picked the lower
                // of two keys after a long freed run nearly every time
                // (Redis's suite: RANDOMKEY after FLUSHDB saw one of two).
                let mut live_keys = self.live_in_order(now, &live, usize::MAX)?;
                if live_keys.is_empty() {
                    return Ok(unapplied.first().map(|key| Bytes::copy_from_slice(key)));
                }
                return Ok(Some(
                    live_keys.swap_remove(fastrand::usize(..live_keys.len())),
                ));
            }
            for _ in 0..RANDOM_PICKS {
                let (mut page, _) = self.table.cursor_page(fastrand::u64(..bound), 1, now)?;
                if page.is_empty() {
                    page = self.table.cursor_page(0, 1, now)?.0;
                }
                if let Some(key) = page.into_iter().find(live) {
                    return Ok(Some(key));
                }
            }
        }
        // Every pick hit a key an acknowledged delete hides: walk in order.
        match self.live_in_order(now, &live, 1)?.pop() {
            Some(key) => Ok(Some(key)),
            None => Ok(unapplied.first().map(|key| Bytes::copy_from_slice(key))),
        }
    }

    /// Up to `limit` keys of the table that `live` accepts, in cursor
    /// order, unexpired at `now`.
    fn live_in_order(
        &self,
        now: i64,
        live: &impl Fn(&Bytes) -> bool,
        limit: usize,
    ) -> Result<Vec<Bytes>, StateError> {
        let mut keys = Vec::new();
        let mut cursor = Some(0);
        while let Some(from) = cursor
            && keys.len() < limit
        {
            let (page, next) = self.table.cursor_page(from, 1024, now)?;
            keys.extend(page.into_iter().filter(live).take(limit - keys.len()));
            cursor = next;
        }
        Ok(keys)
    }
}

/// Random places `RANDOMKEY` tries before settling for the next live key.
const RANDOM_PICKS: usize = 64;

/// Most live keys a sparse table's `RANDOMKEY` draws from all at once.
const EXACT_PICK_UP_TO: usize = 4096;
