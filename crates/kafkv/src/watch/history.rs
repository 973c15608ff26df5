//! Reads a stretch of the topic for a watch whose token is older than the
//! recent window: a consumer of its own (the tailing one never rewinds), on a
//! thread of its own (librdkafka's poll blocks), handing the changes over a
//! bounded channel so a slow watcher slows only this reader.

use std::time::Duration;

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};
use tokio::sync::mpsc;

use crate::{
    config::StoreConfig,
    log::client::{assign_only_consumer, client_config},
    record::{self, Decoded},
    state::Change,
};

/// Why the stretch cannot be read as changes.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// An operation record's value is an operation, not the key's value,
    /// and this reader has no state to evaluate it on (docs/rmw.md): the
    /// watch ends `lagged`, and its client starts again from a snapshot.
    #[error(
        "partition {partition} offset {offset} is a read-modify-write operation, which only the \
         view can evaluate"
    )]
    Operation { partition: i32, offset: i64 },
}

/// Changes read ahead of the watcher.
const READ_AHEAD: usize = 1024;
const POLL: Duration = Duration::from_millis(100);

/// Every change in `[from[p], to[p])` of each partition, in log order within
/// a partition; the channel closes after the last, or after an error.
pub fn read_range(
    config: &StoreConfig,
    from: Vec<i64>,
    to: Vec<i64>,
) -> Result<mpsc::Receiver<Result<Change, HistoryError>>, KafkaError> {
    let consumer: BaseConsumer = client_config(config, &assign_only_consumer(config)).create()?;
    let mut assignment = TopicPartitionList::new();
    for (p, (from, to)) in from.iter().zip(&to).enumerate() {
        if from < to {
            assignment.add_partition_offset(&config.topic, p as i32, Offset::Offset(*from))?;
        }
    }
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    if assignment.count() == 0 {
        return Ok(receiver);
    }
    consumer.assign(&assignment)?;
    std::thread::Builder::new()
        .name("kafkv-watch-log".into())
        .spawn(move || read(consumer, &from, &to, &sender))
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
    Ok(receiver)
}

fn read(
    consumer: BaseConsumer,
    from: &[i64],
    to: &[i64],
    sender: &mpsc::Sender<Result<Change, HistoryError>>,
) {
    let mut done: Vec<bool> = from.iter().zip(to).map(|(f, t)| f >= t).collect();
    while !done.iter().all(|d| *d) {
        if sender.is_closed() {
            return;
        }
        let Some(polled) = consumer.poll(POLL) else {
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            // Compaction may have removed the stretch's last records: the
            // partition's end then says the stretch is over.
            Err(KafkaError::PartitionEOF(p)) => {
                if let Some(d) = done.get_mut(p as usize) {
                    *d = true;
                }
                continue;
            }
            Err(error) => {
                let _ = sender.blocking_send(Err(error.into()));
                return;
            }
        };
        let Decoded::Record(record) = record::decode(&message) else {
            // No key, or a newer kafkv's record: nothing for a watch.
            mark(&mut done, message_position(&message), to);
            continue;
        };
        let (p, offset) = (record.partition as usize, record.offset);
        if done.get(p).copied().unwrap_or(true) || offset >= to[p] {
            // Past the stretch: the live feed has it.
            if let Some(d) = done.get_mut(p) {
                *d = true;
            }
            continue;
        }
        if let record::Kind::Op(_) = record.kind {
            let _ = sender.blocking_send(Err(HistoryError::Operation {
                partition: record.partition,
                offset,
            }));
            return;
        }
        // A plain record or a repair: either states the key's value, so the
        // change is a `set` or a `del` (an operation's own name comes with
        // its evaluation, which only the view does). A SWEEP is `expired`:
        // a delete, as any consumer of the topic takes it; one that lost to
        // a rewrite is followed by the repair restating the key's value.
        if sender.blocking_send(Ok(Change::from(&record))).is_err() {
            return;
        }
        mark(&mut done, (p, offset), to);
    }
}

fn message_position(message: &rdkafka::message::BorrowedMessage<'_>) -> (usize, i64) {
    use rdkafka::Message;
    (message.partition() as usize, message.offset())
}

fn mark(done: &mut [bool], (p, offset): (usize, i64), to: &[i64]) {
    if let (Some(d), Some(to)) = (done.get_mut(p), to.get(p))
        && offset + 1 >= *to
    {
        *d = true;
    }
}
