//! A record's headers kept in its own row (`record.kafkv_headers`), where
//! kafkv's produce path writes them, instead of one row each in tansu's
//! `header` table.
//!
//! **Why.** A row of the `header` table, and its entry in kafkv's index on
//! it, are two more B-tree pages in every transaction that writes a header,
//! and each is one more WAL frame at commit: a probe of the produce path put
//! an operation record at 54–67 µs against 36–47 µs for a put
//! (docs/design.md (n)). In the record's row the headers cost their bytes.
//!
//! **Format**, a blob: for each header in order, its key then its value,
//! each as a 4-byte little-endian length (`u32::MAX` for null) followed by
//! that many bytes. An empty list is stored as NULL, as a record without
//! headers has no `header` rows either.
//!
//! **Who reads it.** kafkv's read of stored records ([`super::stored_read`])
//! and the tail cache (which never needs to: it holds what was produced).
//! tansu's own fetch does not, so a database written by this version must
//! not be served by an older kafkv or by tansu alone (README, "Upgrading").
//! Rows written by tansu's produce path (`--broker-paths tansu`,
//! `kafkv-fetch`, transactional produces) keep their headers in the
//! `header` table, and the stored read takes them from there.

use bytes::Bytes;
use tansu_sans_io::record::Header;

use super::tail::octets;

/// The length that stands for a null key or value.
const NULL: u32 = u32::MAX;

/// `headers` as stored in the row; `None` for none.
pub fn encode(headers: &[Header]) -> Option<Vec<u8>> {
    if headers.is_empty() {
        return None;
    }
    let size: usize = headers
        .iter()
        .map(|header| 8 + octets(&header.key) + octets(&header.value))
        .sum();
    let mut encoded = Vec::with_capacity(size);
    for header in headers {
        for part in [&header.key, &header.value] {
            match part {
                Some(bytes) => {
                    // A header longer than 4 GiB cannot reach here: a
                    // record batch's own length is an i32.
                    let length = u32::try_from(bytes.len()).unwrap_or(NULL - 1);
                    encoded.extend_from_slice(&length.to_le_bytes());
                    encoded.extend_from_slice(bytes);
                }
                None => encoded.extend_from_slice(&NULL.to_le_bytes()),
            }
        }
    }
    Some(encoded)
}

/// The headers `encoded` holds; `None` when it is not in the format above
/// (truncated, or a key without its value).
pub fn decode(encoded: &[u8]) -> Option<Vec<Header>> {
    let mut headers = Vec::new();
    let mut rest = encoded;
    while !rest.is_empty() {
        let key = part(&mut rest)?;
        let value = part(&mut rest)?;
        headers.push(Header { key, value });
    }
    Some(headers)
}

/// One length-prefixed part off the front of `rest`.
fn part(rest: &mut &[u8]) -> Option<Option<Bytes>> {
    let (length, tail) = rest.split_first_chunk::<4>()?;
    let length = u32::from_le_bytes(*length);
    if length == NULL {
        *rest = tail;
        return Some(None);
    }
    let length = usize::try_from(length).ok()?;
    if tail.len() < length {
        return None;
    }
    let (bytes, tail) = tail.split_at(length);
    *rest = tail;
    Some(Some(Bytes::copy_from_slice(bytes)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn part() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from))
    }

    proptest! {
        #[test]
        fn headers_come_back_as_they_went_in(
            parts in proptest::collection::vec((part(), part()), 0..6)
        ) {
            let headers: Vec<Header> = parts
                .into_iter()
                .map(|(key, value)| Header { key, value })
                .collect();
            match encode(&headers) {
                None => prop_assert!(headers.is_empty()),
                Some(encoded) => prop_assert_eq!(decode(&encoded), Some(headers)),
            }
        }

        #[test]
        fn a_truncated_blob_is_refused(
            parts in proptest::collection::vec((part(), part()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let headers: Vec<Header> = parts
                .into_iter()
                .map(|(key, value)| Header { key, value })
                .collect();
            let encoded = encode(&headers).expect("some headers");
            let cut = cut.index(encoded.len());
            // Every proper prefix ends inside a part or between a key and
            // its value, unless it ends exactly after a whole header.
            let whole = (0..headers.len()).any(|n| {
                encode(&headers[..n]).map_or(0, |prefix| prefix.len()) == cut
            });
            if !whole {
                prop_assert_eq!(decode(&encoded[..cut]), None);
            }
        }
    }
}
