//! kafkv: a key-value store whose only source of truth is a log-compacted
//! Kafka topic.
//!
//! Every put is a keyed record on the topic and every delete a tombstone. Each
//! instance reads the whole topic into a local, ordered, in-memory view at
//! start (bootstrap), then keeps consuming; reads are served from the view.
//!
//! # Layout
//! Data flows one way: config → log → state → front ends.
//! - [`config`]: typed configuration with documented defaults.
//! - [`error`]: one error enum per layer and the umbrella [`Error`].
//! - [`log`]: the Kafka side: topic checks, the producer, the consumer.
//! - [`op`]: read-modify-write operations and their evaluation.
//! - `state` (private): the materialized view and applied offsets.
//! - [`store`]: the library API, [`Store`].
//! - `auth` (private): the `--auth-token` check both front ends share.
//! - `http` (private): the axum front end.
//! - `resp` (private): the Redis protocol front end; [`RespConfig`] is its settings.
//! - [`service`]: wires everything together and shuts it down in order;
//!   [`service::spawn`] serves a store on a task of its own.
//!
//! The private modules are what `kafkv serve` is made of; programs that embed
//! kafkv use [`Store`] directly, or [`service`] for the front ends too.
//!
//! The embedded broker is not part of the library: the `kafkv` binary (the
//! workspace's root package) starts it and hands the library its address,
//! so embedding kafkv pulls in no broker.

mod auth;
pub mod collection;
pub mod config;
pub mod error;
mod http;
pub mod log;
pub mod op;
mod record;
mod recovery;
mod resp;
pub mod scheduling;
pub mod service;
mod state;
pub mod store;
pub mod watch;

pub use config::{ServiceConfig, StateConfig, StoreConfig};
pub use error::{Error, Result};
pub use op::{Deadline, ExpireWhen};
pub use resp::RespConfig;
pub use store::{Applied, Consistency, Expiry, Store};
