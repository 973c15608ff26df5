//! The wire format of a kafkv record, in both directions: what the writer
//! produces, and what a consumed Kafka message means to the view. Nothing
//! else in kafkv knows how a record is laid out on the topic.
//!
//! A plain put or delete is plain Kafka: the key and value are the user's
//! bytes exactly, a delete is a record with a null value (a tombstone), and
//! no header is written, so any Kafka client can read and write those.
//! A message without a key is skipped: kafkv cannot address it.
//!
//! **Headers.** The names under [`HEADER_PREFIX`] (`kafkv.`) are kafkv's
//! (see docs/rmw.md for what each record means):
//! - `kafkv.op` (`1`, or `1:<id>` with the `kafkv.id` below folded in, which
//!   spares the embedded broker a header row per operation): an operation
//!   record; the value is the encoded [`Op`], evaluated by every instance at
//!   the record's offset.
//! - `kafkv.repair` (an offset, decimal) with `kafkv.version` (decimal,
//!   absent for a deleted key): a repair, restating the key's state as of
//!   that offset; its value is the key's value then (null: absent).
//! - `kafkv.id` (hex): which write of which instance this is, so the writer
//!   can be handed the record's outcome when its consumer applies it.
//! - `kafkv.ttl` (`<ms>:<writer>`) on a put: the key expires `ms` after the
//!   record's timestamp; `kafkv.expires-at` (`<ms since the epoch>`, with
//!   `:<writer>` on a put) on a put or a repair: at that time. `<writer>`
//!   (hex) names the instance that sweeps the key first (docs/expiry.md).
//! - `kafkv.expired` (`<sweeper>:<r>:<e>`) on a tombstone: a SWEEP, "delete
//!   the key if it expired", naming the sweeper's view (offset `r`, expiry
//!   `e`).
//! - `kafkv.type` (`list`, `set`, `hash` or `zset`) on a put or a repair:
//!   the value is that collection's encoding ([`crate::collection`]), not a
//!   string. Strings carry no type header, so plain Kafka clients' records
//!   stay strings.
//!
//! A record carrying any other header inside the prefix was written by a
//! newer kafkv whose meaning this version cannot honour; applying it as a
//! plain put could make this instance disagree with the ones that understand
//! it, so it is skipped with an error naming the header (see
//! [`Decoded::Unsupported`]); upgrading every instance is the fix. Headers
//! outside the prefix (other applications') are ignored.

use bytes::Bytes;
use rdkafka::{
    Message, Timestamp,
    message::{Header, Headers, OwnedHeaders},
    producer::FutureRecord,
};

use crate::{collection::Type, op::Op};

/// The prefix of every record header name kafkv reserves for itself.
pub const HEADER_PREFIX: &str = "kafkv.";
const OP_HEADER: &str = "kafkv.op";
const REPAIR_HEADER: &str = "kafkv.repair";
const VERSION_HEADER: &str = "kafkv.version";
const ID_HEADER: &str = "kafkv.id";
const TTL_HEADER: &str = "kafkv.ttl";
const EXPIRES_AT_HEADER: &str = "kafkv.expires-at";
const EXPIRED_HEADER: &str = "kafkv.expired";
const TYPE_HEADER: &str = "kafkv.type";
/// Keys at least this long are not applied (see [`decode`]).
pub const MAX_KEY_LEN: usize = 1 << 29;

/// What a record is, beyond its key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A put (the value) or a delete (no value): self-contained.
    Plain,
    /// An operation, evaluated where it lands.
    Op(Op),
    /// The key's state as of offset `restates`: the record's value (none:
    /// absent) with `version` (none when absent) and the record's expiry.
    Repair { restates: i64, version: Option<i64> },
    /// A SWEEP (a tombstone): delete the key if it has expired at the
    /// record's time, naming the sweeper's view — the newest offset it had
    /// applied in the partition (`restates`) and the key's expiry there.
    /// `sweeper` is the instance that wrote it (the top half of its
    /// `kafkv.id`s), for metrics and the tombstones-per-key test.
    Sweep {
        restates: i64,
        expires_at: i64,
        sweeper: u32,
    },
}

/// The expiry an outgoing put or repair carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub deadline: crate::op::Deadline,
    /// The writing instance (the top half of its `kafkv.id`s), which sweeps
    /// the key first; none on a repair.
    pub writer: Option<u32>,
}

/// A record as it goes to the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub key: Bytes,
    /// `None`: a tombstone (or a repair of an absent key).
    pub value: Option<Bytes>,
    pub kind: Kind,
    /// Set when the writer waits for the record's outcome (`kafkv.id`).
    pub id: Option<u64>,
    /// A put's or a repair's expiry.
    pub expiry: Option<Expiry>,
    /// The type of a put's or a repair's value.
    pub ty: Type,
}

impl Outgoing {
    /// A plain put (`Some`) or delete (`None`).
    pub fn plain(key: Bytes, value: Option<Bytes>) -> Self {
        Self {
            key,
            value,
            kind: Kind::Plain,
            id: None,
            expiry: None,
            ty: Type::String,
        }
    }

    /// A put of `key` that expires at `deadline`, swept first by `writer`.
    pub fn put_expiring(
        key: Bytes,
        value: Bytes,
        deadline: crate::op::Deadline,
        writer: u32,
    ) -> Self {
        Self {
            expiry: Some(Expiry {
                deadline,
                writer: Some(writer),
            }),
            ..Self::plain(key, Some(value))
        }
    }

    /// A SWEEP of `key` by `sweeper`, which had applied its partition up to
    /// `restates` and saw the key expire at `expires_at`.
    pub fn sweep(key: Bytes, restates: i64, expires_at: i64, sweeper: u32) -> Self {
        Self {
            kind: Kind::Sweep {
                restates,
                expires_at,
                sweeper,
            },
            ..Self::plain(key, None)
        }
    }

    /// An operation on `key`.
    pub fn op(key: Bytes, op: &Op) -> Self {
        Self {
            key,
            value: Some(op.encode()),
            kind: Kind::Op(op.clone()),
            id: None,
            expiry: None,
            ty: Type::String,
        }
    }

    /// A repair of `key`: its value and version as of offset `restates`.
    pub fn repair(key: Bytes, restates: i64, state: Option<crate::op::KeyState>) -> Self {
        let (value, version, expires_at, ty) = match state {
            Some(state) => (
                Some(state.value),
                Some(state.version),
                state.expires_at,
                state.ty,
            ),
            None => (None, None, None, Type::String),
        };
        Self {
            key,
            value,
            kind: Kind::Repair { restates, version },
            id: None,
            expiry: expires_at.map(|at| Expiry {
                deadline: crate::op::Deadline::At(at),
                writer: None,
            }),
            ty,
        }
    }

    /// The Kafka record for `topic`: key and value verbatim, kafkv's headers
    /// where the kind needs them.
    #[cfg(test)]
    pub fn to_kafka<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        self.to_kafka_with(topic, self.kafka_headers())
    }

    /// The Kafka record for `topic` with `headers` built beforehand by
    /// [`Self::kafka_headers`]: the writer builds them outside its send
    /// window's lock, which hands records to librdkafka in one burst.
    pub fn to_kafka_with<'a>(
        &'a self,
        topic: &'a str,
        headers: Option<OwnedHeaders>,
    ) -> FutureRecord<'a, [u8], [u8]> {
        let mut record = FutureRecord::to(topic).key(&self.key[..]);
        if let Some(value) = &self.value {
            record = record.payload(&value[..]);
        }
        match headers {
            Some(headers) => record.headers(headers),
            None => record,
        }
    }

    /// kafkv's headers for this record; none for a plain put or delete.
    pub fn kafka_headers(&self) -> Option<OwnedHeaders> {
        let mut headers: Option<OwnedHeaders> = None;
        let mut add = |key: &str, value: String| {
            let taken = headers
                .take()
                .unwrap_or_else(|| OwnedHeaders::new_with_capacity(3));
            headers = Some(taken.insert(Header {
                key,
                value: Some(value.as_bytes()),
            }));
        };
        let mut id = self.id;
        match &self.kind {
            Kind::Plain => {}
            Kind::Op(_) => match id.take() {
                Some(id) => add(OP_HEADER, format!("1:{id:x}")),
                None => add(OP_HEADER, "1".into()),
            },
            Kind::Repair { restates, version } => {
                add(REPAIR_HEADER, restates.to_string());
                if let Some(version) = version {
                    add(VERSION_HEADER, version.to_string());
                }
            }
            Kind::Sweep {
                restates,
                expires_at,
                sweeper,
            } => {
                add(
                    EXPIRED_HEADER,
                    format!("{sweeper:x}:{restates}:{expires_at}"),
                );
            }
        }
        if let Some(Expiry { deadline, writer }) = self.expiry {
            let (name, ms) = match deadline {
                crate::op::Deadline::In(ms) => (TTL_HEADER, ms),
                crate::op::Deadline::At(at) => (EXPIRES_AT_HEADER, at),
            };
            match writer {
                Some(writer) => add(name, format!("{ms}:{writer:x}")),
                None => add(name, ms.to_string()),
            }
        }
        if self.ty != Type::String {
            add(TYPE_HEADER, self.ty.name().into());
        }
        if let Some(id) = id {
            add(ID_HEADER, format!("{id:x}"));
        }
        headers
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
    pub kind: Kind,
    /// The writer's `kafkv.id`, when it waits for the outcome.
    pub id: Option<u64>,
    /// A put's or a repair's expiry, resolved against the record's
    /// timestamp (ms since the epoch).
    pub expires_at: Option<i64>,
    /// The instance named to sweep the key first (a put's `<writer>`).
    pub sweeper: Option<u32>,
    /// The type of a put's value (a string unless `kafkv.type` says).
    pub ty: Type,
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
            kind: Kind::Plain,
            id: None,
            expires_at: None,
            sweeper: None,
            ty: Type::String,
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
            kind: Kind::Plain,
            id: None,
            expires_at: None,
            sweeper: None,
            ty: Type::String,
            data: key.into(),
            key_len: key_len(key),
            tombstone: true,
        }
    }

    pub fn with_timestamp(mut self, timestamp: Option<i64>) -> Self {
        self.timestamp = timestamp;
        self
    }

    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_id(mut self, id: Option<u64>) -> Self {
        self.id = id;
        self
    }

    pub fn with_expiry(mut self, expires_at: Option<i64>) -> Self {
        self.expires_at = expires_at;
        self
    }

    pub fn with_type(mut self, ty: Type) -> Self {
        self.ty = ty;
        self
    }

    /// The state a plain put or delete leaves its key in: the value at
    /// this record's offset with its expiry, or absent.
    pub fn plain_state(&self) -> Option<crate::op::KeyState> {
        self.value().map(|value| crate::op::KeyState {
            value: Bytes::copy_from_slice(value),
            version: self.offset,
            expires_at: self.expires_at,
            ty: self.ty,
        })
    }

    /// The record's timestamp as evaluation uses it (0 without one).
    pub fn time(&self) -> i64 {
        self.timestamp.unwrap_or(0)
    }

    /// Where evaluation places this record.
    pub fn at(&self) -> crate::op::At {
        crate::op::At {
            offset: self.offset,
            time: self.time(),
        }
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
    // The view packs a key's length in 29 bits (beside its type); Redis's
    // own bound on a key is 512 MiB too.
    if key.len() >= MAX_KEY_LEN {
        return Decoded::Unsupported {
            partition,
            offset,
            header: format!(
                "a key of {} bytes (kafkv holds keys below 512 MiB)",
                key.len()
            ),
        };
    }
    let unsupported = |header: &str| Decoded::Unsupported {
        partition,
        offset,
        header: header.to_owned(),
    };
    let (mut op, mut repair, mut version, mut id) = (false, None, None, None);
    // (relative?, ms, writer)
    let mut expiry: Option<(bool, i64, Option<u32>)> = None;
    let mut sweep: Option<(u32, i64, i64)> = None;
    let mut ty: Option<Type> = None;
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            if !header.key.starts_with(HEADER_PREFIX) {
                continue;
            }
            let text = header.value.and_then(|v| std::str::from_utf8(v).ok());
            let parsed = match header.key {
                OP_HEADER => {
                    let (flag, hex) = match text.map(|t| t.split_once(':')) {
                        Some(Some((flag, hex))) => (Some(flag), Some(hex)),
                        Some(None) => (text, None),
                        None => (None, None),
                    };
                    op = flag == Some("1");
                    if let Some(hex) = hex {
                        id = u64::from_str_radix(hex, 16).ok();
                        op = op && id.is_some();
                    }
                    op
                }
                REPAIR_HEADER => {
                    repair = text.and_then(|t| t.parse::<i64>().ok());
                    repair.is_some()
                }
                VERSION_HEADER => {
                    version = text.and_then(|t| t.parse::<i64>().ok());
                    version.is_some()
                }
                ID_HEADER => {
                    id = text.and_then(|t| u64::from_str_radix(t, 16).ok());
                    id.is_some()
                }
                TTL_HEADER | EXPIRES_AT_HEADER if expiry.is_none() => {
                    expiry = text.and_then(parse_expiry).and_then(|(ms, writer)| {
                        let relative = header.key == TTL_HEADER;
                        // A relative TTL is always positive (the front ends
                        // refuse the rest) and always names its writer.
                        (!relative || (ms > 0 && writer.is_some()))
                            .then_some((relative, ms, writer))
                    });
                    expiry.is_some()
                }
                EXPIRED_HEADER if sweep.is_none() => {
                    sweep = text.and_then(parse_sweep);
                    sweep.is_some()
                }
                TYPE_HEADER if ty.is_none() => {
                    ty = text
                        .and_then(Type::from_name)
                        .filter(|ty| *ty != Type::String);
                    ty.is_some()
                }
                _ => false,
            };
            if !parsed {
                return unsupported(header.key);
            }
        }
    }
    let timestamp = match message.timestamp() {
        Timestamp::NotAvailable => None,
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
    };
    if let Some((sweeper, restates, expires_at)) = sweep {
        // A SWEEP is a bare tombstone with its one header.
        if op
            || repair.is_some()
            || version.is_some()
            || id.is_some()
            || expiry.is_some()
            || ty.is_some()
        {
            return unsupported(EXPIRED_HEADER);
        }
        if message.payload().is_some() {
            return unsupported(EXPIRED_HEADER);
        }
        let kind = Kind::Sweep {
            restates,
            expires_at,
            sweeper,
        };
        let record = Record::tombstone(partition, offset, key)
            .with_timestamp(timestamp)
            .with_kind(kind);
        return Decoded::Record(record);
    }
    let (expires_at, sweeper) = match expiry {
        None => (None, None),
        // Only a put carries an expiry, and a repair an absolute one.
        Some(_) if op || message.payload().is_none() => return unsupported(TTL_HEADER),
        Some((true, _, _)) if repair.is_some() => return unsupported(TTL_HEADER),
        Some((true, ms, writer)) => (Some(timestamp.unwrap_or(0).saturating_add(ms)), writer),
        Some((false, at, writer)) => (Some(at), writer),
    };
    // Only a value has a type: an operation's value is the operation.
    if ty.is_some() && (op || message.payload().is_none()) {
        return unsupported(TYPE_HEADER);
    }
    let kind = match (op, repair) {
        (false, None) if version.is_none() => Kind::Plain,
        // A repair of a present key states its version; of an absent one, none.
        (false, Some(restates)) if version.is_some() == message.payload().is_some() => {
            Kind::Repair { restates, version }
        }
        (true, None) if version.is_none() => match message.payload().map(Op::decode) {
            Some(Ok(decoded)) => Kind::Op(decoded),
            _ => return unsupported(OP_HEADER),
        },
        _ => return unsupported(VERSION_HEADER),
    };
    let record = match message.payload() {
        Some(value) => Record::put(partition, offset, key, value),
        None => Record::tombstone(partition, offset, key),
    };
    let record = record
        .with_timestamp(timestamp)
        .with_kind(kind)
        .with_id(id)
        .with_expiry(expires_at)
        .with_type(ty.unwrap_or_default());
    Decoded::Record(Record { sweeper, ..record })
}

/// `<ms>` or `<ms>:<writer hex>`.
fn parse_expiry(text: &str) -> Option<(i64, Option<u32>)> {
    match text.split_once(':') {
        None => Some((text.parse().ok()?, None)),
        Some((ms, writer)) => Some((
            ms.parse().ok()?,
            Some(u32::from_str_radix(writer, 16).ok()?),
        )),
    }
}

/// `<sweeper hex>:<r>:<e>`.
fn parse_sweep(text: &str) -> Option<(u32, i64, i64)> {
    let mut parts = text.splitn(3, ':');
    let sweeper = u32::from_str_radix(parts.next()?, 16).ok()?;
    let restates = parts.next()?.parse().ok()?;
    let expires_at = parts.next()?.parse().ok()?;
    Some((sweeper, restates, expires_at))
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
        let put = Outgoing::plain(Bytes::from_static(b"k"), Some(Bytes::from_static(b"v")));
        let put = put.to_kafka("t");
        assert_eq!((put.key, put.payload), (Some(&b"k"[..]), Some(&b"v"[..])));
        assert!(put.headers.is_none());
        let delete = Outgoing::plain(Bytes::from_static(b"k"), None);
        let delete = delete.to_kafka("t");
        assert_eq!((delete.key, delete.payload), (Some(&b"k"[..]), None));
        assert!(delete.headers.is_none());
    }

    /// What a consumer receives for `outgoing`, at partition 3, offset 42.
    fn round_trip(outgoing: &Outgoing) -> Decoded {
        let record = outgoing.to_kafka("t");
        decode(&message(record.key, record.payload, record.headers.clone()))
    }

    #[test]
    fn operations_repairs_and_ids_survive_the_wire() {
        use crate::op::{Condition, KeyState};
        let key = Bytes::from_static(b"k");
        let op = Op::Set {
            value: Bytes::from_static(b"v"),
            when: Condition::Absent,
        };
        let mut outgoing = Outgoing::op(key.clone(), &op);
        outgoing.id = Some(0xabc);
        // One header for both: the embedded broker stores a row per header.
        let headers = outgoing.to_kafka("t").headers.unwrap();
        assert_eq!(headers.count(), 1);
        assert_eq!(headers.get(0).value, Some(&b"1:abc"[..]));
        let Decoded::Record(record) = round_trip(&outgoing) else {
            panic!("an operation")
        };
        assert_eq!(
            (record.kind, record.id),
            (Kind::Op(op.clone()), Some(0xabc))
        );
        // As an earlier kafkv wrote it: the id in a header of its own.
        let earlier = OwnedHeaders::new()
            .insert(Header {
                key: "kafkv.op",
                value: Some("1"),
            })
            .insert(Header {
                key: "kafkv.id",
                value: Some("abc"),
            });
        let encoded = op.encode();
        let Decoded::Record(record) = decode(&message(Some(b"k"), Some(&encoded), Some(earlier)))
        else {
            panic!("an operation")
        };
        assert_eq!((record.kind, record.id), (Kind::Op(op), Some(0xabc)));
        let state = KeyState::new(Bytes::from_static(b"7"), 5);
        let repair = Outgoing::repair(key.clone(), 9, Some(state));
        let Decoded::Record(record) = round_trip(&repair) else {
            panic!("a repair")
        };
        assert_eq!(
            record.kind,
            Kind::Repair {
                restates: 9,
                version: Some(5)
            }
        );
        assert_eq!(record.value(), Some(&b"7"[..]));
        let absent = Outgoing::repair(key, 9, None);
        let Decoded::Record(record) = round_trip(&absent) else {
            panic!("a repair")
        };
        assert!(record.is_tombstone());
        assert_eq!(
            record.kind,
            Kind::Repair {
                restates: 9,
                version: None
            }
        );
    }

    #[test]
    fn a_collections_repair_carries_its_type_and_a_string_none() {
        use crate::op::KeyState;
        let key = Bytes::from_static(b"k");
        let list = KeyState {
            ty: Type::List,
            ..KeyState::new(Bytes::from_static(b"encoded"), 5)
        };
        let repair = Outgoing::repair(key.clone(), 9, Some(list));
        let headers = repair.to_kafka("t").headers.unwrap();
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert!(names.contains(&"kafkv.type"), "{names:?}");
        let Decoded::Record(record) = round_trip(&repair) else {
            panic!("a repair")
        };
        assert_eq!(record.ty, Type::List);
        assert_eq!(record.plain_state().unwrap().ty, Type::List);
        let string = Outgoing::repair(key, 9, Some(KeyState::new(Bytes::from_static(b"s"), 5)));
        let headers = string.to_kafka("t").headers.unwrap();
        assert!(headers.iter().all(|h| h.key != "kafkv.type"));
        let Decoded::Record(record) = round_trip(&string) else {
            panic!("a repair")
        };
        assert_eq!(record.ty, Type::String);
    }

    #[test]
    fn a_type_header_only_types_a_value() {
        let header = |key, value| Header {
            key,
            value: Some(value),
        };
        let typed = |headers: OwnedHeaders, value: Option<&[u8]>| {
            decode(&message(Some(b"k"), value, Some(headers)))
        };
        // A plain put with a type: a collection written whole.
        let put = typed(
            OwnedHeaders::new().insert(header("kafkv.type", "hash")),
            Some(b"v"),
        );
        assert!(matches!(put, Decoded::Record(r) if r.ty == Type::Hash && r.kind == Kind::Plain));
        // On a tombstone, an operation, or naming no type kafkv has (or
        // `string`, which is never written): refused.
        let op = Op::IncrBy(1).encode();
        for (headers, value) in [
            (
                OwnedHeaders::new().insert(header("kafkv.type", "list")),
                None,
            ),
            (
                OwnedHeaders::new()
                    .insert(header("kafkv.op", "1"))
                    .insert(header("kafkv.type", "list")),
                Some(&op[..]),
            ),
            (
                OwnedHeaders::new().insert(header("kafkv.type", "stream")),
                Some(&b"v"[..]),
            ),
            (
                OwnedHeaders::new().insert(header("kafkv.type", "string")),
                Some(&b"v"[..]),
            ),
        ] {
            assert!(
                matches!(typed(headers, value), Decoded::Unsupported { header, .. } if header == "kafkv.type"),
            );
        }
    }

    #[test]
    fn malformed_kafkv_headers_are_refused() {
        let header = |key, value| {
            OwnedHeaders::new().insert(Header {
                key,
                value: Some(value),
            })
        };
        // An operation whose value is not an operation.
        let bad_op = message(Some(b"k"), Some(b"junk"), Some(header("kafkv.op", "1")));
        assert!(matches!(decode(&bad_op), Decoded::Unsupported { .. }));
        // A repair of a present key without its version.
        let no_version = message(Some(b"k"), Some(b"v"), Some(header("kafkv.repair", "3")));
        assert!(matches!(decode(&no_version), Decoded::Unsupported { .. }));
        let bad_offset = message(Some(b"k"), None, Some(header("kafkv.repair", "x")));
        assert!(matches!(decode(&bad_offset), Decoded::Unsupported { .. }));
        let encoded = Op::IncrBy(1).encode();
        let bad_id = message(
            Some(b"k"),
            Some(&encoded),
            Some(header("kafkv.op", "1:xyz")),
        );
        assert!(matches!(decode(&bad_id), Decoded::Unsupported { .. }));
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

    #[test]
    fn expiries_and_sweeps_survive_the_wire_and_resolve_against_the_timestamp() {
        use crate::op::{Deadline, KeyState};
        let key = Bytes::from_static(b"k");
        // A relative TTL resolves against the record's timestamp
        // (1_700_000_000_000 in `message`), and names its writer.
        let put = Outgoing::put_expiring(
            key.clone(),
            Bytes::from_static(b"v"),
            Deadline::In(500),
            0xbeef,
        );
        let Decoded::Record(record) = round_trip(&put) else {
            panic!("a put")
        };
        assert_eq!(record.kind, Kind::Plain);
        assert_eq!(record.expires_at, Some(1_700_000_000_500));
        assert_eq!(record.sweeper, Some(0xbeef));
        let put =
            Outgoing::put_expiring(key.clone(), Bytes::from_static(b"v"), Deadline::At(42), 1);
        let Decoded::Record(record) = round_trip(&put) else {
            panic!("a put")
        };
        assert_eq!(record.expires_at, Some(42));
        // A repair restates an absolute expiry.
        let state = KeyState {
            expires_at: Some(77),
            ..KeyState::new(Bytes::from_static(b"v"), 5)
        };
        let Decoded::Record(record) = round_trip(&Outgoing::repair(key.clone(), 9, Some(state)))
        else {
            panic!("a repair")
        };
        assert_eq!(record.expires_at, Some(77));
        // A SWEEP names its sweeper's view.
        let Decoded::Record(record) = round_trip(&Outgoing::sweep(key.clone(), 41, 77, 0xabc))
        else {
            panic!("a sweep")
        };
        assert!(record.is_tombstone());
        assert_eq!(
            record.kind,
            Kind::Sweep {
                restates: 41,
                expires_at: 77,
                sweeper: 0xabc
            }
        );
        // Refused, never misapplied: an expiry on an operation or a
        // tombstone, a relative TTL without its writer or not positive, a
        // SWEEP with a value, an unparsable number.
        let header = |name: &'static str, value: &'static str| {
            Some(OwnedHeaders::new().insert(Header {
                key: name,
                value: Some(value),
            }))
        };
        for (value, headers) in [
            (None, header("kafkv.ttl", "5:1")),
            (Some(&b"v"[..]), header("kafkv.ttl", "5")),
            (Some(&b"v"[..]), header("kafkv.ttl", "0:1")),
            (Some(&b"v"[..]), header("kafkv.expires-at", "soon")),
            (Some(&b"v"[..]), header("kafkv.expired", "1:2:3")),
            (None, header("kafkv.expired", "1:2")),
        ] {
            let decoded = decode(&message(Some(b"k"), value, headers.clone()));
            assert!(
                matches!(decoded, Decoded::Unsupported { .. }),
                "{headers:?} on {value:?}: {decoded:?}"
            );
        }
    }
}
