//! Redis keyspace notifications, fed by the store's change hook: a
//! connection's subscriptions ([`Subscriptions`]), the messages one applied
//! batch makes for them, and the server-wide count of subscribers per
//! channel and pattern that `PUBSUB` reports ([`Registry`]).
//!
//! kafkv has no message bus: the only channels that carry anything are
//! Redis's keyspace channels, `__keyspace@0__:<key>` (message: the event,
//! e.g. `set`, `del`, `incrby`, `rename_from`) and `__keyevent@0__:<event>`
//! (message: the key), with Redis 7's event names ([`ChangeOp::name`]). Like
//! a watch, they follow what the consumer applies, so every instance
//! notifies of every instance's writes, in log order per partition, and a
//! record that changed nothing (a refused `SET NX`, a repair restating the
//! value) notifies nothing. Like Redis's, they are fire-and-forget: a
//! subscriber that falls behind the change feed is disconnected (Redis does
//! the same past its pub/sub output buffer limit).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

use super::{frame::Frame, glob};
use crate::{
    collection::Type,
    state::{ChangeBatch, ChangeOp, ChangeReceiver},
};

const KEYSPACE: &[u8] = b"__keyspace@0__:";

/// What `CONFIG GET notify-keyspace-events` answers: generic (`g`: `del`,
/// `rename_from`, `rename_to`, `copy_to`, `expire`, `persist`), string (`$`:
/// `set`, `incrby`, `incrbyfloat`, `append`, `setrange`, `setbit`), list
/// (`l`), set (`s`), hash (`h`), sorted set (`z`) and expired (`x`:
/// `expired`) events, on keyspace (`K`) and keyevent (`E`) channels, in
/// Redis's canonical order. Always on: they cost nothing unless someone
/// subscribes.
pub const NOTIFY_KEYSPACE_EVENTS: &str = "g$lshzxKE";

/// The `notify-keyspace-events` class Redis files an event under.
fn class(op: ChangeOp) -> u8 {
    match op {
        ChangeOp::Del
        | ChangeOp::RenameFrom
        | ChangeOp::RenameTo
        | ChangeOp::CopyTo
        | ChangeOp::Expire
        | ChangeOp::Persist => b'g',
        ChangeOp::Expired => b'x',
        ChangeOp::Collection { ty, .. } => match ty {
            Type::List => b'l',
            Type::Set => b's',
            Type::Hash => b'h',
            Type::ZSet => b'z',
            Type::String => b'$',
        },
        ChangeOp::Set
        | ChangeOp::IncrBy
        | ChangeOp::IncrByFloat
        | ChangeOp::Append
        | ChangeOp::SetRange
        | ChangeOp::SetBit => b'$',
    }
}

/// Whether `flag` (a class, `K` or `E`) is on.
fn notifies(flag: u8) -> bool {
    NOTIFY_KEYSPACE_EVENTS.as_bytes().contains(&flag)
}

/// `__keyevent@0__:<event>`.
fn keyevent_channel(op: ChangeOp) -> Bytes {
    if let ChangeOp::Collection { event, .. } = op {
        return Bytes::from(format!("__keyevent@0__:{event}"));
    }
    Bytes::from_static(match op {
        ChangeOp::Set => b"__keyevent@0__:set",
        ChangeOp::Del => b"__keyevent@0__:del",
        ChangeOp::IncrBy => b"__keyevent@0__:incrby",
        ChangeOp::IncrByFloat => b"__keyevent@0__:incrbyfloat",
        ChangeOp::Append => b"__keyevent@0__:append",
        ChangeOp::SetRange => b"__keyevent@0__:setrange",
        ChangeOp::SetBit => b"__keyevent@0__:setbit",
        ChangeOp::RenameFrom => b"__keyevent@0__:rename_from",
        ChangeOp::RenameTo => b"__keyevent@0__:rename_to",
        ChangeOp::CopyTo => b"__keyevent@0__:copy_to",
        ChangeOp::Expire => b"__keyevent@0__:expire",
        ChangeOp::Persist => b"__keyevent@0__:persist",
        ChangeOp::Expired => b"__keyevent@0__:expired",
        ChangeOp::Collection { .. } => unreachable!("named above"),
    })
}

/// Subscriber counts across every connection of this front end.
#[derive(Debug, Default)]
pub struct Registry {
    channels: Mutex<HashMap<Bytes, usize>>,
    patterns: Mutex<HashMap<Bytes, usize>>,
}

impl Registry {
    /// Channels with at least one subscriber, matching `pattern` if given.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut found: Vec<Bytes> = self
            .channels
            .lock()
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect();
        found.sort();
        found
    }

    /// Subscribers of `channel` (patterns not counted, as in Redis).
    pub fn subscribers(&self, channel: &[u8]) -> usize {
        self.channels.lock().get(channel).copied().unwrap_or(0)
    }

    /// Distinct patterns subscribed to.
    pub fn patterns(&self) -> usize {
        self.patterns.lock().len()
    }

    fn add(map: &Mutex<HashMap<Bytes, usize>>, name: &Bytes) {
        *map.lock().entry(name.clone()).or_default() += 1;
    }

    fn remove(map: &Mutex<HashMap<Bytes, usize>>, name: &[u8]) {
        let mut map = map.lock();
        if let Some(count) = map.get_mut(name) {
            *count -= 1;
            if *count == 0 {
                map.remove(name);
            }
        }
    }
}

/// Which list a subscription command works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
}

impl Kind {
    /// The list a command works on, from the name it was sent by: the
    /// `P`-prefixed ones (`PSUBSCRIBE`, `PUNSUBSCRIBE`) work on patterns.
    pub fn of_command(name: &[u8]) -> Kind {
        if name.first().is_some_and(|c| c.eq_ignore_ascii_case(&b'p')) {
            Kind::Pattern
        } else {
            Kind::Channel
        }
    }
}

/// One connection's subscriptions, and its feed of applied changes. It
/// exists only while the connection has at least one subscription.
pub struct Subscriptions {
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    changes: ChangeReceiver,
    registry: Arc<Registry>,
}

impl Subscriptions {
    pub fn new(changes: ChangeReceiver, registry: Arc<Registry>) -> Self {
        Self {
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            changes,
            registry,
        }
    }

    /// Channels plus patterns: the count Redis puts in each confirmation.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Subscribes to `name`; the confirmation reply.
    pub fn subscribe(&mut self, kind: Kind, name: Bytes) -> Frame {
        let (set, registry, verb) = self.list(kind, "subscribe", "psubscribe");
        if set.insert(name.clone()) {
            Registry::add(registry, &name);
        }
        confirmation(verb, Frame::Bulk(name), self.count())
    }

    /// Unsubscribes from each of `names`, or from every subscription of
    /// `kind` when there are none; the confirmation replies.
    pub fn unsubscribe(&mut self, kind: Kind, names: Vec<Bytes>) -> Vec<Frame> {
        let names = if names.is_empty() {
            let (set, _, _) = self.list(kind, "", "");
            set.iter().cloned().collect()
        } else {
            names
        };
        let mut replies = Vec::with_capacity(names.len());
        for name in names {
            let (set, registry, verb) = self.list(kind, "unsubscribe", "punsubscribe");
            if set.remove(&name) {
                Registry::remove(registry, &name);
            }
            replies.push(confirmation(verb, Frame::Bulk(name), self.count()));
        }
        replies
    }

    fn list(
        &mut self,
        kind: Kind,
        channel_verb: &'static str,
        pattern_verb: &'static str,
    ) -> (
        &mut BTreeSet<Bytes>,
        &Mutex<HashMap<Bytes, usize>>,
        &'static str,
    ) {
        match kind {
            Kind::Channel => (&mut self.channels, &self.registry.channels, channel_verb),
            Kind::Pattern => (&mut self.patterns, &self.registry.patterns, pattern_verb),
        }
    }

    /// Waits for the next applied batch; `None` when this subscriber fell
    /// too far behind (or the store closed).
    pub async fn next_batch(&mut self) -> Option<Arc<ChangeBatch>> {
        self.changes.recv().await.ok()
    }

    /// The messages `batch` makes for these subscriptions, in log order:
    /// per change, the keyspace message, then the keyevent one (as Redis
    /// sends them).
    pub fn messages(&self, batch: &ChangeBatch) -> Vec<Frame> {
        let mut out = Vec::new();
        for change in &batch.changes {
            // `SET … EX` is a `set` and then an `expire`, as Redis sends it.
            let then_expire = change.sets_expiry.then_some(ChangeOp::Expire);
            for op in std::iter::once(change.op).chain(then_expire) {
                self.event(&change.key, op, &mut out);
            }
        }
        out
    }

    /// The keyspace message of `op` on `key`, then its keyevent one.
    fn event(&self, key: &Bytes, op: ChangeOp, out: &mut Vec<Frame>) {
        if !notifies(class(op)) {
            return;
        }
        if notifies(b'K') {
            let mut keyspace = BytesMut::with_capacity(KEYSPACE.len() + key.len());
            keyspace.put_slice(KEYSPACE);
            keyspace.put_slice(key);
            let event = Bytes::from_static(op.name().as_bytes());
            self.deliver(&keyspace.freeze(), &event, out);
        }
        if notifies(b'E') {
            let keyevent = keyevent_channel(op);
            self.deliver(&keyevent, key, out);
        }
    }

    fn deliver(&self, channel: &Bytes, message: &Bytes, out: &mut Vec<Frame>) {
        if self.channels.contains(channel) {
            out.push(Frame::Push(vec![
                Frame::bulk("message"),
                Frame::Bulk(channel.clone()),
                Frame::Bulk(message.clone()),
            ]));
        }
        for pattern in &self.patterns {
            if glob::matches(pattern, channel) {
                out.push(Frame::Push(vec![
                    Frame::bulk("pmessage"),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]));
            }
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for channel in &self.channels {
            Registry::remove(&self.registry.channels, channel);
        }
        for pattern in &self.patterns {
            Registry::remove(&self.registry.patterns, pattern);
        }
    }
}

/// `[verb, name, count]`, as a push in RESP3.
pub fn confirmation(verb: &str, name: Frame, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk(verb.to_owned()),
        name,
        Frame::Integer(count as i64),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Change;

    /// Every event kafkv sends is in a class `notify-keyspace-events` has
    /// on, under its Redis name on both kinds of channel.
    #[test]
    fn every_event_is_on_and_its_keyevent_channel_carries_its_name() {
        for op in ChangeOp::ALL {
            assert!(notifies(class(op)), "{op:?}");
            assert_eq!(
                keyevent_channel(op),
                [&b"__keyevent@0__:"[..], op.name().as_bytes()].concat(),
                "{op:?}"
            );
        }
        assert_eq!(class(ChangeOp::IncrBy), b'$');
        assert_eq!(class(ChangeOp::RenameFrom), b'g');
    }

    fn change(key: &str, value: Option<&str>, op: ChangeOp) -> Change {
        Change {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            ty: Type::String,
            expires_at: None,
            sets_expiry: false,
            op,
            partition: 0,
            offset: 0,
            timestamp: None,
        }
    }

    /// `(channel, message)` of each `message` push, `(pattern, channel,
    /// message)` rendered with the pattern first for `pmessage`.
    fn rendered(frames: &[Frame]) -> Vec<Vec<String>> {
        frames
            .iter()
            .map(|frame| match frame {
                Frame::Push(parts) => parts
                    .iter()
                    .map(|part| match part {
                        Frame::Bulk(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
                        other => panic!("a bulk string, not {other:?}"),
                    })
                    .collect(),
                other => panic!("a push, not {other:?}"),
            })
            .collect()
    }

    #[test]
    fn notifications_name_the_operation_on_both_channels() {
        let (_sender, receiver) = tokio::sync::broadcast::channel(1);
        let mut subs = Subscriptions::new(receiver, Arc::default());
        subs.subscribe(Kind::Pattern, Bytes::from_static(b"__keyspace@0__:*"));
        subs.subscribe(Kind::Channel, Bytes::from_static(b"__keyevent@0__:incrby"));
        subs.subscribe(
            Kind::Pattern,
            Bytes::from_static(b"__keyevent@0__:rename_*"),
        );
        let batch = ChangeBatch {
            changes: vec![
                change("n", Some("1"), ChangeOp::IncrBy),
                change("a", None, ChangeOp::RenameFrom),
                change("b", Some("v"), ChangeOp::RenameTo),
            ],
            positions: vec![3],
        };
        let ks = "__keyspace@0__:*";
        let rename = "__keyevent@0__:rename_*";
        assert_eq!(
            rendered(&subs.messages(&batch)),
            [
                vec!["pmessage", ks, "__keyspace@0__:n", "incrby"],
                vec!["message", "__keyevent@0__:incrby", "n"],
                vec!["pmessage", ks, "__keyspace@0__:a", "rename_from"],
                vec!["pmessage", rename, "__keyevent@0__:rename_from", "a"],
                vec!["pmessage", ks, "__keyspace@0__:b", "rename_to"],
                vec!["pmessage", rename, "__keyevent@0__:rename_to", "b"],
            ]
        );
    }

    #[test]
    fn a_set_with_an_expiry_notifies_set_then_expire() {
        let (_sender, receiver) = tokio::sync::broadcast::channel(1);
        let mut subs = Subscriptions::new(receiver, Arc::default());
        subs.subscribe(Kind::Pattern, Bytes::from_static(b"__keyspace@0__:*"));
        let expiring = Change {
            sets_expiry: true,
            expires_at: Some(1),
            ..change("e", Some("v"), ChangeOp::Set)
        };
        let kept = Change {
            expires_at: Some(1),
            ..change("k", Some("v"), ChangeOp::Set)
        };
        let batch = ChangeBatch {
            changes: vec![expiring, kept],
            positions: vec![2],
        };
        let ks = "__keyspace@0__:*";
        assert_eq!(
            rendered(&subs.messages(&batch)),
            [
                vec!["pmessage", ks, "__keyspace@0__:e", "set"],
                vec!["pmessage", ks, "__keyspace@0__:e", "expire"],
                vec!["pmessage", ks, "__keyspace@0__:k", "set"],
            ]
        );
    }
}
