//! The Redis protocol front end: RESP2 by default, RESP3 after `HELLO 3`.
//!
//! Laid out like mini-redis, in layers that each use only those listed
//! before them:
//! - [`frame`]: RESP frames, parsing requests and encoding replies;
//!   [`parse`] walks a request's arguments; [`glob`] is Redis's pattern
//!   matching for `KEYS`/`SCAN MATCH`; [`error`] is what store errors mean
//!   over RESP.
//! - [`connection`]: framed I/O for one client, buffered both ways.
//! - [`pubsub`]: keyspace notifications: a connection's subscriptions, the
//!   messages an applied batch makes for them, the server-wide counts.
//! - [`stats`]: per-command and per-error counters (`INFO commandstats`).
//! - [`session`]: a connection's own state and what all connections share.
//! - [`cmd`]: one file per command, each parsing and applying itself.
//! - [`handler`]: runs one client's pipeline.
//! - [`server`]: accepts connections, caps them, runs the RESP threads.

pub mod cmd;
pub mod connection;
mod error;
pub mod frame;
pub mod glob;
pub mod handler;
pub mod parse;
pub mod pubsub;
pub mod server;
pub mod session;
pub mod stats;

pub use server::run;
pub use session::RespConfig;
