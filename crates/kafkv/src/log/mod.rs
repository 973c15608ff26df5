//! The Kafka side of kafkv: the client settings ([`client`], public so that
//! other programs configure their clients exactly as kafkv does), and,
//! private to the crate, the compacted topic (`topic`), the producer that
//! appends puts and tombstones (`writer`), the consumer that tails the topic
//! into the view (`reader`) and the queries of where partitions begin and end
//! (`offsets`), and the window that paces
//! what the producer is handed (`window`). What a record looks like on the topic is `record.rs`'s.

pub mod client;
pub(crate) mod offsets;
pub(crate) mod reader;
pub(crate) mod topic;
pub(crate) mod window;
pub(crate) mod writer;
