//! `INFO [section ...]`: server, clients, keyspace, and a `kafka` section with
//! the topic, partitions, applied offsets and lag.

use std::{fmt::Write, sync::atomic::Ordering};

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "info",
    arity: -1,
    flags: &["loading", "stale"],
    kind: Kind::Read,
    before_auth: false,
}];

/// The Redis version kafkv's command set and replies follow.
pub const REDIS_VERSION: &str = "7.2.0";

pub struct Info {
    sections: Vec<String>,
}

impl Info {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sections = args
            .rest()
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
            .collect();
        Ok(Self { sections })
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let wants = |name: &str| {
            self.sections.is_empty()
                || self
                    .sections
                    .iter()
                    .any(|s| s == name || s == "all" || s == "everything" || s == "default")
        };
        let server = &session.server;
        let store = &session.store;
        let mut text = String::new();
        if wants("server") {
            let _ = write!(
                text,
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nkafkv_version:{}\r\nredis_mode:standalone\r\n\
                 process_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                server.port,
                server.started.elapsed().as_secs(),
            );
        }
        if wants("clients") {
            let _ = write!(
                text,
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
                server.connections.load(Ordering::Relaxed),
                server.config.max_connections,
            );
        }
        let status = store.status();
        if wants("keyspace") {
            text.push_str("# Keyspace\r\n");
            let keys = status.keys;
            if keys > 0 {
                let _ = write!(text, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
            }
            text.push_str("\r\n");
        }
        if wants("kafka") {
            let _ = write!(
                text,
                "# Kafka\r\ntopic:{}\r\npartitions:{}\r\nbootstrapped:{}\r\nrecords_applied:{}\r\n",
                status.topic,
                status.partitions.len(),
                u8::from(status.ready),
                status.records_applied,
            );
            for (p, partition) in status.partitions.iter().enumerate() {
                let _ = write!(
                    text,
                    "partition{p}:applied_offset={},lag={}\r\n",
                    partition.position, partition.lag
                );
            }
            text.push_str("\r\n");
        }
        Frame::bulk(text)
    }
}
