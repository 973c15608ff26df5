//! The `kafkv serve` children the CPU, read-modify-write and expiry sections
//! measure: their RESP front end on a free port, against an external broker;
//! and their metrics.

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

/// The sum of a metric's samples (every label set) in the child's
/// `/metrics`; `None` if it exports no sample of it (yet).
pub async fn metric(served: &ServeProcess, name: &str) -> Result<Option<f64>> {
    let text = reqwest::get(served.url("/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(metric_sum(&text, name))
}

/// The sum of `name`'s samples in a Prometheus text exposition.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name` itself, not a longer name it begins (`_bucket`, `_sum`).
            rest.starts_with([' ', '{'])
                .then(|| rest.split_whitespace().last()?.parse::<f64>().ok())?
        })
        .fold(None, |sum, value| Some(sum.unwrap_or(0.0) + value))
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn sums_a_metrics_samples_over_its_labels() {
        let text = "# TYPE kafkv_sweeps_applied_total counter\n\
                    kafkv_sweeps_applied_total{result=\"deleted\"} 7\n\
                    kafkv_sweeps_applied_total{result=\"live\"} 2\n\
                    kafkv_sweeps_applied_total_other 100\n\
                    kafkv_sweeps_written_total 5\n";
        assert_eq!(metric_sum(text, "kafkv_sweeps_applied_total"), Some(9.0));
        assert_eq!(metric_sum(text, "kafkv_sweeps_written_total"), Some(5.0));
        assert_eq!(metric_sum(text, "kafkv_expiry_due_keys"), None);
    }
}
