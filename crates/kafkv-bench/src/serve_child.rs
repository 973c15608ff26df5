//! The `kafkv serve` child the CPU and read-modify-write sections measure:
//! its RESP front end on a free port, against an external broker.

use std::{path::Path, time::Duration};

use kafkv_testkit::ServeProcess;

use crate::error::Result;

/// How long a child may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts `kafkv serve --brokers <brokers> --topic <topic>` with RESP on
/// `resp_port` and its data under `dir/serve`, and waits until it is ready.
pub async fn serve_resp(
    kafkv: &Path,
    dir: &Path,
    brokers: &str,
    topic: &str,
    resp_port: u16,
) -> Result<ServeProcess> {
    let resp = format!("127.0.0.1:{resp_port}");
    let args = [
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--resp-listen",
        &resp,
        "--data-dir",
        "serve",
    ];
    Ok(ServeProcess::start(kafkv, dir, args, READY_TIMEOUT).await?)
}
