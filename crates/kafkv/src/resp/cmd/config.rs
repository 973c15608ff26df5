//! `CONFIG GET pattern [pattern ...]`: the parameters clients and
//! redis-benchmark ask for, read-only.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::glob;

pub const SPECS: &[Spec] = &[Spec {
    name: "config",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    kind: Kind::Read,
    before_auth: false,
}];

pub struct Config {
    patterns: Vec<bytes::Bytes>,
}

impl Config {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sub = args.bytes()?;
        if !sub.eq_ignore_ascii_case(b"GET") {
            return Err(Frame::error(format!(
                "ERR CONFIG {} is not supported by kafkv: its configuration is set at start-up \
                 (kafkv serve --help)",
                String::from_utf8_lossy(&sub).to_ascii_uppercase()
            )));
        }
        let patterns = args.rest();
        if patterns.is_empty() {
            return Err(args.wrong_arity());
        }
        Ok(Self { patterns })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let config = &session.server.config;
        let parameters = [
            ("save", String::new()),
            ("appendonly", "no".to_owned()),
            ("databases", "1".to_owned()),
            ("maxclients", config.max_connections.to_string()),
            ("proto-max-bulk-len", config.limits.max_bulk.to_string()),
            ("timeout", "0".to_owned()),
            (
                "notify-keyspace-events",
                crate::resp::pubsub::NOTIFY_KEYSPACE_EVENTS.to_owned(),
            ),
        ];
        Frame::Map(
            parameters
                .into_iter()
                .filter(|(name, _)| {
                    self.patterns
                        .iter()
                        .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .map(|(name, value)| (Frame::bulk(name), Frame::bulk(value)))
                .collect(),
        )
    }
}
