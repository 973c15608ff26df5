//! kafkv-testkit: the `kafkv` processes that kafkv's integration tests and
//! its benchmark (`kafkv-bench`) run against, started and stopped one way.
//!
//! - [`BrokerProcess`]: `kafkv broker` on a free loopback port with its own
//!   data dir; killed, restarted, paused and resumed at will.
//! - [`ServeProcess`]: `kafkv serve` as a user runs it, logging to a file;
//!   ready once `/readyz` answers 200, its resident memory, SIGTERM and
//!   SIGKILL.
//!
//! Both take the path of the `kafkv` binary to run: integration tests pass
//! `env!("CARGO_BIN_EXE_kafkv")`, the bench the binary beside its own. Both
//! kill their process when dropped, so a failure leaves nothing behind.
//!
//! Nothing here skips: a process that does not start is an [`Error`] quoting
//! its log, and callers fail with it.

mod broker;
mod error;
mod process;
mod serve;

pub use broker::BrokerProcess;
pub use error::{Error, Result};
pub use serve::ServeProcess;

/// A loopback port free at the time of the call. Another process can take
/// it before the caller binds it; [`BrokerProcess::start`] retries for that.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
