//! Integration tests: every test runs against a real Kafka-protocol broker
//! process (see `harness`), on a topic of its own.

mod api;
mod bad_input;
mod binary;
mod cli;
mod collections;
mod compaction;
mod convergence;
mod embedded_broker;
mod expiry;
mod failures;
mod groups;
mod harness;
mod http_conditional;
mod http_expiry;
mod http_txn;
mod record_format;
mod resp;
mod restart;
mod rmw;
mod scheduling;
mod topic;
mod watch;
