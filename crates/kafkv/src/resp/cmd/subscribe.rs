//! `SUBSCRIBE channel [channel ...]` and `PSUBSCRIBE pattern [pattern ...]`:
//! keyspace notifications (see `resp/pubsub.rs`). Each channel or pattern
//! is confirmed with its own reply; in RESP2 the connection is then in
//! subscribe mode.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::pubsub::{self, Subscriptions};

const FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

pub const SPECS: &[Spec] = &[
    Spec {
        name: "subscribe",
        arity: -2,
        flags: FLAGS,
        kind: Kind::Session,
        before_auth: false,
    },
    Spec {
        name: "psubscribe",
        arity: -2,
        flags: FLAGS,
        kind: Kind::Session,
        before_auth: false,
    },
];

pub struct Subscribe {
    kind: pubsub::Kind,
    names: Vec<bytes::Bytes>,
}

impl Subscribe {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let kind = pubsub::Kind::of_command(args.name());
        Ok(Self {
            kind,
            names: args.one_or_more()?,
        })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let subscriptions = session.pubsub.get_or_insert_with(|| {
            Subscriptions::new(
                session.store.subscribe_changes().0,
                session.server.pubsub.clone(),
            )
        });
        Frame::Sequence(
            self.names
                .into_iter()
                .map(|name| subscriptions.subscribe(self.kind, name))
                .collect(),
        )
    }
}
