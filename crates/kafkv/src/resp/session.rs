//! What a command may see and change: the connection's own state
//! ([`Session`]) and what all connections share ([`Shared`]: the front end's
//! settings, start time, connection count, port and auth token).
//!
//! Nothing here does I/O: the server creates sessions, the handler runs
//! commands against them.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;

use super::frame::Limits;
use crate::store::Store;

/// Settings of the RESP front end.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// Most connections open at once; one more is told so and closed. Default 10,000.
    pub max_connections: usize,
    /// Threads serving connections (round-robin). Default 1.
    pub threads: usize,
    pub limits: Limits,
    /// When set, clients must `AUTH` with it first.
    pub auth_token: Option<String>,
}

impl RespConfig {
    /// Defaults for a store whose values may be `max_value_bytes` long.
    pub fn new(max_value_bytes: usize) -> Self {
        Self {
            max_connections: 10_000,
            threads: 1,
            limits: Limits {
                max_bulk: max_value_bytes,
                max_args: 1024 * 1024,
                max_inline: 64 * 1024,
            },
            auth_token: None,
        }
    }
}

/// What every connection shares. Counters are atomics: connections on every
/// RESP thread read and update them without waiting for each other.
pub struct Shared {
    pub config: RespConfig,
    pub auth_token: Option<String>,
    /// When the front end started, for `INFO`'s uptime.
    pub started: Instant,
    /// Connections open now: the server caps it, `INFO` reports it.
    pub connections: AtomicUsize,
    /// The next connection's id (`CLIENT ID`, `HELLO`).
    next_id: AtomicU64,
    /// The port listened on, for `INFO`.
    pub port: u16,
    /// Keyspace-notification subscribers, for `PUBSUB`.
    pub pubsub: Arc<super::pubsub::Registry>,
    /// Connections accepted since start, for `INFO stats`.
    pub connections_received: AtomicU64,
    /// Connections refused at `maxclients`, for `INFO stats`.
    pub rejected_connections: AtomicU64,
    /// Commands run since start, for `INFO stats` (and `redis-cli --stat`).
    pub commands_processed: AtomicU64,
    /// Per-command and per-error counters, for `INFO commandstats|errorstats`.
    pub stats: super::stats::Stats,
}

impl Shared {
    pub fn new(config: RespConfig, port: u16) -> Self {
        Self {
            auth_token: config.auth_token.clone(),
            config,
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            port,
            pubsub: Default::default(),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            commands_processed: AtomicU64::new(0),
            stats: super::stats::Stats::new(super::cmd::names()),
        }
    }
}

/// A connection's own state.
pub struct Session {
    pub store: Store,
    pub server: Arc<Shared>,
    pub id: u64,
    /// Set by `HELLO 3`: replies use RESP3 types.
    pub resp3: bool,
    pub authenticated: bool,
    /// Set by `CLIENT SETNAME` or `HELLO ... SETNAME`.
    pub name: Option<Bytes>,
    /// Set by `QUIT`: close once the replies are written.
    pub quit: bool,
    /// Keyspace-notification subscriptions; `None` while there are none.
    pub pubsub: Option<super::pubsub::Subscriptions>,
    /// `WATCH`ed keys and the version each had here then (`None`: absent).
    /// The next `EXEC` is conditional on every one of them being unchanged
    /// where its record lands in the log; `EXEC`, `DISCARD` and `UNWATCH`
    /// clear them.
    pub watched: Vec<(Bytes, Option<i64>)>,
}

impl Session {
    /// A new connection's state, with the next id.
    pub fn new(store: Store, server: Arc<Shared>) -> Self {
        Self {
            store,
            id: server.next_id.fetch_add(1, Ordering::Relaxed),
            server,
            resp3: false,
            authenticated: false,
            name: None,
            quit: false,
            pubsub: None,
            watched: Vec::new(),
        }
    }

    /// RESP2 subscribe mode: only the subscription commands, `PING`, `QUIT`
    /// and `RESET` may run (RESP3 connections may run anything).
    pub fn in_subscribe_mode(&self) -> bool {
        self.pubsub.is_some() && !self.resp3
    }

    /// Whether a token is set and this connection has not sent it yet.
    pub fn needs_auth(&self) -> bool {
        self.server.auth_token.is_some() && !self.authenticated
    }
}
