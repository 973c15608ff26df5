//! `INFO [section ...]`: server, clients, keyspace, and a `kafka` section with
//! the topic, partitions, applied offsets and lag.

use std::{fmt::Write, sync::atomic::Ordering};

use super::{Args, Frame, Session};

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
        if wants("keyspace") {
            text.push_str("# Keyspace\r\n");
            let keys = store.len();
            if keys > 0 {
                let _ = write!(text, "db0:keys={keys},expires=0,avg_ttl=0\r\n");
            }
            text.push_str("\r\n");
        }
        if wants("kafka") {
            let progress = store.progress();
            let high = store.high_watermarks();
            let _ = write!(
                text,
                "# Kafka\r\ntopic:{}\r\npartitions:{}\r\nbootstrapped:{}\r\nrecords_applied:{}\r\n",
                store.config().topic,
                store.partitions(),
                u8::from(progress.bootstrap.is_done()),
                progress.records_applied,
            );
            for (p, position) in progress.positions.iter().enumerate() {
                let lag = high
                    .iter()
                    .find(|(partition, _)| *partition as usize == p)
                    .map_or(0, |(_, hw)| (hw - position).max(0));
                let _ = write!(text, "partition{p}:applied_offset={position},lag={lag}\r\n");
            }
            text.push_str("\r\n");
        }
        Frame::bulk(text)
    }
}
