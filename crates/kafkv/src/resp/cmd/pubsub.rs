//! `PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT`: the
//! keyspace-notification subscriptions of every connection.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "pubsub",
    arity: -2,
    flags: &["pubsub", "loading", "stale"],
    kind: Kind::Read,
    before_auth: false,
}];

pub enum PubSub {
    Channels(Option<bytes::Bytes>),
    NumSub(Vec<bytes::Bytes>),
    NumPat,
}

impl PubSub {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sub = args.subcommand()?.to_ascii_uppercase();
        let parsed = match &sub[..] {
            b"CHANNELS" => PubSub::Channels(args.optional()),
            b"NUMSUB" => PubSub::NumSub(args.rest()),
            b"NUMPAT" => PubSub::NumPat,
            _ => {
                return Err(Frame::error(format!(
                    "ERR unknown subcommand '{}'. Try PUBSUB HELP.",
                    String::from_utf8_lossy(&sub).to_ascii_lowercase()
                )));
            }
        };
        if args.remaining() > 0 {
            return Err(Frame::error(format!(
                "ERR wrong number of arguments for 'pubsub|{}' command",
                String::from_utf8_lossy(&sub).to_ascii_lowercase()
            )));
        }
        Ok(parsed)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let registry = &session.server.pubsub;
        match self {
            PubSub::Channels(pattern) => Frame::Array(
                registry
                    .channels(pattern.as_deref())
                    .into_iter()
                    .map(Frame::Bulk)
                    .collect(),
            ),
            PubSub::NumSub(channels) => Frame::Map(
                channels
                    .into_iter()
                    .map(|c| {
                        let count = registry.subscribers(&c) as i64;
                        (Frame::Bulk(c), Frame::Integer(count))
                    })
                    .collect(),
            ),
            PubSub::NumPat => Frame::Integer(registry.patterns() as i64),
        }
    }
}
