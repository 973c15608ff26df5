//! The wire format of a kafkv record, in both directions: what the writer
//! produces for a put or a delete, and what a consumed Kafka message means to
//! the view. Nothing else in kafkv knows how a record is laid out on the topic.
//!
//! Today's format is plain Kafka: the key and value are the user's bytes
//! exactly, a delete is a record with a null value (a tombstone), and kafkv
//! writes no headers, so any Kafka client can read and write a kafkv topic.
//! A message without a key is skipped: kafkv cannot address it.
//!
//! **Headers.** The names under [`HEADER_PREFIX`] (`kafkv.`) are reserved for
//! what later versions will carry beside a record (a condition, an expiry, a
//! writer epoch; see docs/design.md, "Layout"). This version defines none, so
//! it writes none, ignores every header outside the prefix (other
//! applications' headers), and refuses to apply a record that carries one
//! inside it: such a record was written by a newer kafkv whose meaning this
//! version cannot honour, and applying it as a plain put could make this
//! instance disagree with the ones that understand it. The record is skipped
//! with an error naming the header (see [`Decoded::Unsupported`]); upgrading
//! every instance is the fix.

use rdkafka::{Message, Timestamp, message::Headers, producer::FutureRecord};

/// The prefix of every record header name kafkv reserves for itself.
pub const HEADER_PREFIX: &str = "kafkv.";

/// A put or a delete as it goes to the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub key: &'a [u8],
    /// `None`: a tombstone.
    pub value: Option<&'a [u8]>,
}

impl<'a> Outgoing<'a> {
    /// The Kafka record for `topic`: key and value verbatim, no headers.
    pub fn to_kafka(self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let record = FutureRecord::to(topic).key(self.key);
        match self.value {
            Some(value) => record.payload(value),
            None => record,
        }
    }
}

/// One applied-to-be record as the view receives it: the key and value in
/// one allocation, which the memory table keeps as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create or log-append time), where the
    /// broker gave one.
    pub timestamp: Option<i64>,
    /// key ‖ value.
    data: Box<[u8]>,
    key_len: u32,
    tombstone: bool,
}

impl Record {
    pub fn put(partition: i32, offset: i64, key: &[u8], value: &[u8]) -> Self {
        let mut data = Vec::with_capacity(key.len() + value.len());
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        Self {
            partition,
            offset,
            timestamp: None,
            data: data.into_boxed_slice(),
            key_len: key_len(key),
            tombstone: false,
        }
    }

    pub fn tombstone(partition: i32, offset: i64, key: &[u8]) -> Self {
        Self {
            partition,
            offset,
            timestamp: None,
            data: key.into(),
            key_len: key_len(key),
            tombstone: true,
        }
    }

    pub fn with_timestamp(mut self, timestamp: Option<i64>) -> Self {
        self.timestamp = timestamp;
        self
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    /// `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        (!self.tombstone).then(|| &self.data[self.key_len as usize..])
    }

    pub fn is_tombstone(&self) -> bool {
        self.tombstone
    }

    /// The key ‖ value allocation and the key's length, for a table that
    /// keeps the allocation rather than copying it.
    pub(crate) fn into_data(self) -> (Box<[u8]>, u32) {
        (self.data, self.key_len)
    }
}

fn key_len(key: &[u8]) -> u32 {
    u32::try_from(key.len()).expect("Kafka keys are under 4 GiB")
}

/// What a consumed message means to kafkv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A put or a tombstone for the view.
    Record(Record),
    /// A message without a key: nothing to apply, but its offset counts as read.
    NoKey { partition: i32, offset: i64 },
    /// A record carrying a kafkv header this version does not know (written
    /// by a newer kafkv): not applied; its offset counts as read.
    Unsupported {
        partition: i32,
        offset: i64,
        header: String,
    },
}

/// Decodes a consumed message.
pub fn decode(message: &impl Message) -> Decoded {
    let (partition, offset) = (message.partition(), message.offset());
    let Some(key) = message.key() else {
        return Decoded::NoKey { partition, offset };
    };
    if let Some(headers) = message.headers() {
        let reserved = headers
            .iter()
            .find(|header| header.key.starts_with(HEADER_PREFIX));
        if let Some(header) = reserved {
            return Decoded::Unsupported {
                partition,
                offset,
                header: header.key.to_owned(),
            };
        }
    }
    let timestamp = match message.timestamp() {
        Timestamp::NotAvailable => None,
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
    };
    let record = match message.payload() {
        Some(value) => Record::put(partition, offset, key, value),
        None => Record::tombstone(partition, offset, key),
    };
    Decoded::Record(record.with_timestamp(timestamp))
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    use super::*;

    fn message(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> OwnedMessage {
        OwnedMessage::new(
            value.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "t".into(),
            Timestamp::CreateTime(1_700_000_000_000),
            3,
            42,
            headers,
        )
    }

    #[test]
    fn plain_puts_and_deletes_are_the_bytes_with_no_headers() {
        let put = Outgoing {
            key: b"k",
            value: Some(b"v"),
        }
        .to_kafka("t");
        assert_eq!((put.key, put.payload), (Some(&b"k"[..]), Some(&b"v"[..])));
        assert!(put.headers.is_none());
        let delete = Outgoing {
            key: b"k",
            value: None,
        }
        .to_kafka("t");
        assert_eq!((delete.key, delete.payload), (Some(&b"k"[..]), None));
        assert!(delete.headers.is_none());
    }

    #[test]
    fn decoding_gives_key_value_position_and_time() {
        let Decoded::Record(put) = decode(&message(Some(b"k"), Some(b"v"), None)) else {
            panic!("a put")
        };
        assert_eq!(put.key(), b"k");
        assert_eq!(put.value(), Some(&b"v"[..]));
        assert_eq!((put.partition, put.offset), (3, 42));
        assert_eq!(put.timestamp, Some(1_700_000_000_000));
        let Decoded::Record(delete) = decode(&message(Some(b"k"), None, None)) else {
            panic!("a tombstone")
        };
        assert!(delete.is_tombstone());
        assert_eq!(delete.value(), None);
        // An empty value is a value, not a delete.
        let Decoded::Record(empty) = decode(&message(Some(b"k"), Some(b""), None)) else {
            panic!("a put")
        };
        assert_eq!(empty.value(), Some(&b""[..]));
    }

    #[test]
    fn a_record_without_a_key_is_skipped() {
        assert_eq!(
            decode(&message(None, Some(b"v"), None)),
            Decoded::NoKey {
                partition: 3,
                offset: 42
            }
        );
    }

    #[test]
    fn other_applications_headers_are_ignored_and_reserved_ones_refused() {
        let theirs = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some("abc"),
        });
        assert!(matches!(
            decode(&message(Some(b"k"), Some(b"v"), Some(theirs))),
            Decoded::Record(_)
        ));
        let ours = OwnedHeaders::new().insert(Header {
            key: "kafkv.if-version",
            value: Some("7"),
        });
        assert_eq!(
            decode(&message(Some(b"k"), Some(b"v"), Some(ours))),
            Decoded::Unsupported {
                partition: 3,
                offset: 42,
                header: "kafkv.if-version".into()
            }
        );
    }
}
