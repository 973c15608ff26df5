//! Redis keyspace notifications, fed by the store's change hook: a
//! connection's subscriptions ([`Subscriptions`]), the messages one applied
//! batch makes for them, and the server-wide count of subscribers per
//! channel and pattern that `PUBSUB` reports ([`Registry`]).
//!
//! kafkv has no message bus: the only channels that carry anything are
//! Redis's keyspace channels, `__keyspace@0__:<key>` (message `set` or
//! `del`) and `__keyevent@0__:set|del` (message: the key). Like a watch,
//! they follow what the consumer applies, so every instance notifies of
//! every instance's writes, in log order per partition. Like Redis's, they
//! are fire-and-forget: a subscriber that falls behind the change feed is
//! disconnected (Redis does the same past its pub/sub output buffer limit).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

use super::{frame::Frame, glob};
use crate::state::{ChangeBatch, ChangeReceiver};

const KEYSPACE: &[u8] = b"__keyspace@0__:";
const KEYEVENT_SET: &[u8] = b"__keyevent@0__:set";
const KEYEVENT_DEL: &[u8] = b"__keyevent@0__:del";

/// What `CONFIG GET notify-keyspace-events` answers: generic (`g`: del) and
/// string (`$`: set) events, on keyspace (`K`) and keyevent (`E`) channels,
/// in Redis's canonical order. Always on: they cost nothing unless someone
/// subscribes.
pub const NOTIFY_KEYSPACE_EVENTS: &str = "g$KE";

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

    /// The messages `batch` makes for these subscriptions, in log order.
    pub fn messages(&self, batch: &ChangeBatch) -> Vec<Frame> {
        let mut out = Vec::new();
        for change in &batch.changes {
            let (event, keyevent) = match change.value {
                Some(_) => (&b"set"[..], KEYEVENT_SET),
                None => (&b"del"[..], KEYEVENT_DEL),
            };
            let mut keyspace = BytesMut::with_capacity(KEYSPACE.len() + change.key.len());
            keyspace.put_slice(KEYSPACE);
            keyspace.put_slice(&change.key);
            let keyspace = keyspace.freeze();
            let event = Bytes::from_static(event);
            self.deliver(&keyspace, &event, &mut out);
            self.deliver(&Bytes::from_static(keyevent), &change.key, &mut out);
        }
        out
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
