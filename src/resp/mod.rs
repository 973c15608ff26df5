//! The Redis protocol front end: RESP2 by default, RESP3 after `HELLO 3`.
//!
//! Laid out like mini-redis: [`frame`] parses requests and encodes replies,
//! [`parse`] walks a request's arguments, [`connection`] runs one client's
//! pipeline, [`server`] accepts connections, and [`cmd`] holds one file per
//! command. [`glob`] is Redis's pattern matching for `KEYS`/`SCAN MATCH`.

pub mod cmd;
pub mod connection;
mod error;
pub mod frame;
pub mod glob;
pub mod parse;
pub mod server;

pub use server::{RespConfig, run};
