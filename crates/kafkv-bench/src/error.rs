//! What a bench run can fail with. Any failure ends the run: a table with a
//! measurement missing or wrong would be worse than none.

use std::path::PathBuf;

/// The bench's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening, writing or closing a store.
    #[error(transparent)]
    Kafkv(#[from] kafkv::Error),
    #[error(transparent)]
    Write(#[from] kafkv::error::WriteError),
    /// The raw baselines' Kafka clients.
    #[error("kafka client error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A `kafkv broker` or `kafkv serve` child process.
    #[error(transparent)]
    Process(#[from] kafkv_testkit::Error),
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "no kafkv binary at {}: build it first (`cargo build --release`, or `cargo build` \
         for a debug kafkv-bench), or pass --kafkv-bin PATH",
        .0.display()
    )]
    NoKafkv(PathBuf),
    #[error(
        "{tool} is needed for the {section} comparison: apt-get install redis-tools \
         redis-server (or leave {section} out of --only)"
    )]
    MissingTool {
        tool: &'static str,
        section: &'static str,
    },
    /// A measurement's own check failed, or a tool answered unexpectedly.
    #[error("{0}")]
    Failed(String),
}
