//! `INFO [section ...]`: server, clients, memory, persistence, stats,
//! replication, cpu, commandstats, errorstats, keyspace (the fields
//! `redis-cli --stat` and Redis's test suite read), and a `kafka` section
//! with the topic, partitions, applied offsets and lag. Sections are chosen
//! as in Redis 7: by name, `default`, `all` or `everything`, several at once.

use std::{fmt::Write, sync::atomic::Ordering};

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "info",
    arity: -1,
    flags: &["loading", "stale"],
    kind: Kind::Read,
    before_auth: false,
}];

/// What `INFO` and `INFO default` show; `all` and `everything` add
/// `commandstats`, as in Redis.
const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "errorstats",
    "keyspace",
    "kafka",
];

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
        // Each section at most once, in Redis's order, however often asked.
        let wants = |name: &str| {
            let default = DEFAULT_SECTIONS.contains(&name);
            if self.sections.is_empty() {
                return default;
            }
            self.sections.iter().any(|s| {
                s == name || s == "all" || s == "everything" || (s == "default" && default)
            })
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
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
                server.connections.load(Ordering::Relaxed),
                server.config.max_connections,
            );
        }
        // /proc is read only for the sections that show it.
        let process = if wants("memory") || wants("cpu") {
            ProcessUsage::read()
        } else {
            ProcessUsage::default()
        };
        if wants("memory") {
            // The process's resident memory: kafkv has no allocator
            // accounting of its own to report as used_memory.
            let _ = write!(
                text,
                "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{human}\r\n\
                 used_memory_rss:{rss}\r\nused_memory_peak:{rss}\r\nmaxmemory:0\r\n\
                 maxmemory_policy:noeviction\r\nmem_fragmentation_ratio:1.00\r\nmem_allocator:libc\r\n\r\n",
                rss = process.rss_bytes,
                human = human_bytes(process.rss_bytes),
            );
        }
        if wants("persistence") {
            // Every acknowledged write is already durable in Kafka: nothing
            // is ever waiting to be saved.
            let _ = write!(
                text,
                "# Persistence\r\nloading:{}\r\nasync_loading:0\r\nrdb_changes_since_last_save:0\r\n\
                 rdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\n\
                 aof_enabled:0\r\naof_rewrite_in_progress:0\r\n\r\n",
                u8::from(!store.is_ready()),
                super::lastsave::unix_seconds(),
            );
        }
        if wants("stats") {
            let _ = write!(
                text,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 instantaneous_ops_per_sec:0\r\nrejected_connections:{}\r\nexpired_keys:{}\r\n\
                 evicted_keys:0\r\nkeyspace_hits:0\r\nkeyspace_misses:0\r\n\
                 pubsub_channels:{}\r\npubsub_patterns:{}\r\ntotal_error_replies:{}\r\n\r\n",
                server.connections_received.load(Ordering::Relaxed),
                server.commands_processed.load(Ordering::Relaxed),
                server.rejected_connections.load(Ordering::Relaxed),
                store.expired_keys(),
                server.pubsub.channels(None).len(),
                server.pubsub.patterns(),
                server.stats.error_replies(),
            );
        }
        if wants("replication") {
            // Kafka replicates kafkv's data; a kafkv has no Redis replicas.
            text.push_str(
                "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n\
                 master_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n\r\n",
            );
        }
        if wants("cpu") {
            let _ = write!(
                text,
                "# CPU\r\nused_cpu_sys:{:.6}\r\nused_cpu_user:{:.6}\r\n\r\n",
                process.cpu_sys, process.cpu_user,
            );
        }
        if wants("commandstats") {
            text.push_str("# Commandstats\r\n");
            server.stats.write_commands(&mut text);
            text.push_str("\r\n");
        }
        if wants("errorstats") {
            text.push_str("# Errorstats\r\n");
            server.stats.write_errors(&mut text);
            text.push_str("\r\n");
        }
        let status = store.status();
        if wants("keyspace") {
            text.push_str("# Keyspace\r\n");
            let keys = status.keys;
            if keys > 0 {
                // kafkv keeps no running sum of TTLs: avg_ttl is 0, as Redis
                // reports before it has sampled any.
                let (expires, _expired) = store.expiry_counts();
                let _ = write!(text, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
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

/// This process's resident memory and CPU time, from `/proc/self` (zeros
/// where it cannot be read).
#[derive(Default)]
struct ProcessUsage {
    rss_bytes: u64,
    cpu_user: f64,
    cpu_sys: f64,
}

impl ProcessUsage {
    fn read() -> Self {
        let mut usage = ProcessUsage::default();
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            usage.rss_bytes = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may hold spaces): utime
            // and stime are the 12th and 13th, in clock ticks (100 a second
            // on Linux).
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
            usage.cpu_user = ticks(11);
            usage.cpu_sys = ticks(12);
        }
        usage
    }
}

/// `1.50M`, as Redis's `used_memory_human`.
fn human_bytes(bytes: u64) -> String {
    let bytes = bytes as f64;
    match bytes {
        b if b >= 1024.0 * 1024.0 * 1024.0 => format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0)),
        b if b >= 1024.0 * 1024.0 => format!("{:.2}M", b / (1024.0 * 1024.0)),
        b if b >= 1024.0 => format!("{:.2}K", b / 1024.0),
        b => format!("{b}B"),
    }
}
