//! `UNSUBSCRIBE [channel ...]` and `PUNSUBSCRIBE [pattern ...]`: without
//! arguments, from every channel (pattern). Each is confirmed with its own
//! reply carrying the subscriptions left; at none, the connection leaves
//! subscribe mode.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::pubsub::{self, confirmation};

const FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

pub const SPECS: &[Spec] = &[
    Spec {
        name: "unsubscribe",
        arity: -1,
        flags: FLAGS,
        kind: Kind::Session,
        before_auth: false,
    },
    Spec {
        name: "punsubscribe",
        arity: -1,
        flags: FLAGS,
        kind: Kind::Session,
        before_auth: false,
    },
];

pub struct Unsubscribe {
    kind: pubsub::Kind,
    names: Vec<bytes::Bytes>,
}

impl Unsubscribe {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let kind = pubsub::Kind::of_command(args.name());
        Ok(Self {
            kind,
            names: args.rest(),
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let verb = match self.kind {
            pubsub::Kind::Channel => "unsubscribe",
            pubsub::Kind::Pattern => "punsubscribe",
        };
        let mut replies = match &mut session.pubsub {
            Some(subscriptions) => subscriptions.unsubscribe(self.kind, self.names),
            None => self
                .names
                .into_iter()
                .map(|name| confirmation(verb, Frame::Bulk(name), 0))
                .collect(),
        };
        let left = session.pubsub.as_ref().map_or(0, |s| s.count());
        if replies.is_empty() {
            // Nothing to unsubscribe from: Redis still answers once.
            replies.push(confirmation(verb, Frame::Null, left));
        }
        if left == 0 {
            session.pubsub = None;
        }
        Frame::Sequence(replies)
    }
}
