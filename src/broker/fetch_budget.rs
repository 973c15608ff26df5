//! The byte budget of one storage fetch, counted as the client counts it.
//!
//! tansu 0.6's SQLite fetch (`record_fetch.sql`) stops when the sum of the
//! records' *keys and values* reaches `max_bytes`; headers, and each record's
//! framing, are not counted. kafkv's SWEEPs, repairs and operations are
//! mostly headers with a short key and no value, so a run of them came back
//! as one batch several times the budget: a 5 MiB fetch returned 28 MB, more
//! than librdkafka accepts in one response (`receive.message.max.bytes`), and
//! a consumer reading from the beginning failed on that response forever.
//!
//! [`within`] cuts a fetch's batches to the budget by their encoded size,
//! the size tansu's fetch handler then subtracts from its remaining budget,
//! so a whole response stays within the client's `fetch.max.bytes`. As in
//! Kafka, the first record is returned even when it alone is larger than the
//! budget, so a large record can never stall a consumer.

use tansu_sans_io::{
    primitive::ByteSize as _,
    record::{deflated, inflated},
};
use tansu_storage::Result;

/// The batches of one storage fetch cut to `max_bytes` of record data:
/// whole batches while they fit, then the records of the next batch that
/// fit (at least one record in all).
pub fn within(batches: Vec<deflated::Batch>, max_bytes: u32) -> Result<Vec<deflated::Batch>> {
    let budget = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut kept = Vec::with_capacity(batches.len());
    let mut used = 0usize;
    for batch in batches {
        let size = batch.record_data.len();
        if used + size <= budget || batch.record_count == 0 {
            used += size;
            kept.push(batch);
            continue;
        }
        let room = if kept.is_empty() {
            budget.max(1)
        } else {
            budget - used
        };
        if let Some(head) = head_within(batch, room, kept.is_empty())? {
            kept.push(head);
        }
        break;
    }
    Ok(kept)
}

/// The leading records of `batch` whose encoded size fits `room`, as a
/// batch of their own (offsets, timestamps and CRC recomputed); the first
/// record is kept regardless when `at_least_one`.
fn head_within(
    batch: deflated::Batch,
    room: usize,
    at_least_one: bool,
) -> Result<Option<deflated::Batch>> {
    let mut batch = inflated::Batch::try_from(batch)?;
    let mut used = 0usize;
    let mut fit = 0usize;
    for record in &batch.records {
        used += record.size_in_bytes()?;
        if used > room && !(at_least_one && fit == 0) {
            break;
        }
        fit += 1;
    }
    if fit == 0 {
        return Ok(None);
    }
    batch.records.truncate(fit);
    let last = batch.records.last().expect("fit > 0");
    batch.last_offset_delta = last.offset_delta;
    batch.max_timestamp = batch.base_timestamp
        + batch
            .records
            .iter()
            .map(|record| record.timestamp_delta)
            .max()
            .unwrap_or(0);
    Ok(Some(deflated::Batch::try_from(batch)?))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tansu_sans_io::record::{Header, Record};

    use super::*;

    /// A batch of `count` records from `base_offset`, each a 16-byte key, no
    /// value and one `header_bytes` header: the shape of a run of SWEEPs.
    fn header_heavy(base_offset: i64, count: i32, header_bytes: usize) -> deflated::Batch {
        let mut builder = inflated::Batch::builder()
            .base_offset(base_offset)
            .base_timestamp(1_000)
            .last_offset_delta(count - 1);
        for delta in 0..count {
            builder = builder.record(
                Record::builder()
                    .offset_delta(delta)
                    .timestamp_delta(i64::from(delta))
                    .key(Some(Bytes::from(format!("key-{delta:012}"))))
                    .value(None)
                    .header(
                        Header::builder()
                            .key(Bytes::from_static(b"kafkv.sweep"))
                            .value(Bytes::from(vec![b'h'; header_bytes])),
                    ),
            );
        }
        builder
            .build()
            .and_then(deflated::Batch::try_from)
            .expect("a valid batch")
    }

    fn offsets(batches: &[deflated::Batch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|batch| {
                let records = Vec::<Record>::try_from(batch).expect("decodes");
                records
                    .into_iter()
                    .map(|record| batch.base_offset + i64::from(record.offset_delta))
            })
            .collect()
    }

    fn data_bytes(batches: &[deflated::Batch]) -> usize {
        batches.iter().map(|batch| batch.record_data.len()).sum()
    }

    #[test]
    fn a_header_heavy_batch_is_cut_to_the_budget_by_encoded_size() {
        // tansu counts 16 bytes of key per record here, so a 4 KiB budget
        // let it return all 300 records: about 160 KB.
        let batch = header_heavy(100, 300, 500);
        assert!(batch.record_data.len() > 30 * 4096);
        let cut = within(vec![batch], 4096).expect("cuts");
        assert!(data_bytes(&cut) <= 4096, "{} bytes", data_bytes(&cut));
        let kept = offsets(&cut);
        assert_eq!(kept, (100..100 + kept.len() as i64).collect::<Vec<_>>());
        assert!(kept.len() >= 4096 / 600, "only {} records kept", kept.len());
        // The cut batch is a valid batch a client can check: its fields
        // describe the records it holds.
        let batch = &cut[0];
        assert_eq!(batch.record_count as usize, kept.len());
        assert_eq!(batch.last_offset_delta as usize, kept.len() - 1);
        assert_eq!(batch.max_timestamp, 1_000 + kept.len() as i64 - 1);
        let reread =
            deflated::Batch::try_from(Bytes::from(batch.clone())).expect("encodes and decodes");
        assert_eq!(&reread, batch);
    }

    #[test]
    fn whole_batches_are_kept_while_they_fit_and_the_next_one_is_cut() {
        let first = header_heavy(0, 4, 100);
        let first_size = first.record_data.len();
        let second = header_heavy(4, 50, 100);
        let cut = within(vec![first.clone(), second], first_size as u32 + 500).expect("cuts");
        assert_eq!(cut[0], first);
        assert_eq!(cut.len(), 2);
        assert!(data_bytes(&cut) <= first_size + 500);
        assert_eq!(
            offsets(&cut),
            (0..offsets(&cut).len() as i64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_fetch_within_the_budget_is_returned_unchanged() {
        let batches = vec![header_heavy(0, 3, 10), header_heavy(3, 3, 10)];
        assert_eq!(within(batches.clone(), 1 << 20).expect("fits"), batches);
    }

    #[test]
    fn the_first_record_is_returned_even_when_it_alone_exceeds_the_budget() {
        let cut = within(vec![header_heavy(7, 3, 2_000)], 100).expect("cuts");
        assert_eq!(offsets(&cut), vec![7]);
        // Later batches add nothing once the budget is spent.
        let cut =
            within(vec![header_heavy(0, 1, 10), header_heavy(1, 3, 2_000)], 100).expect("cuts");
        assert_eq!(offsets(&cut), vec![0]);
    }
}
