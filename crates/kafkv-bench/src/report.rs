//! What a run measured: one [`Row`] per figure beside its peer's, printed as
//! a table and optionally written as JSON.

use std::{path::Path, time::Duration};

use serde::Serialize;

use crate::error::Result;

/// One line of the table: a figure for kafkv beside its peer's (the raw
/// Kafka client, or redis-server).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub measurement: String,
    pub unit: String,
    pub kafkv: f64,
    /// Who the peer is; [`NO_PEER`] when nothing comparable runs beside kafkv.
    pub peer: String,
    /// The peer's figure; NaN without a peer (the table shows "—", the JSON `null`).
    pub raw: f64,
}

/// The `peer` of a row without one, and what the table shows for a missing figure.
pub const NO_PEER: &str = "—";

impl Row {
    /// A figure nothing comparable runs beside.
    pub fn without_peer(measurement: String, unit: &str, kafkv: f64) -> Row {
        Row {
            measurement,
            unit: unit.into(),
            kafkv,
            peer: NO_PEER.into(),
            raw: f64::NAN,
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub broker: String,
    pub records: usize,
    pub writes: usize,
    pub rows: Vec<Row>,
}

impl Report {
    pub fn print_table(&self) {
        println!("\nkafkv bench — broker: {}\n", self.broker);
        // As wide as the longest label (counted in characters, as `format!` pads).
        let width = self
            .rows
            .iter()
            .map(|row| row.measurement.chars().count())
            .max()
            .unwrap_or(0)
            .max(62);
        println!(
            "| {:<width$} | {:>12} | {:>12} | {:<18} | {:>10} | {:<9} |",
            "measurement", "kafkv", "peer", "peer is", "kafkv/peer", "unit"
        );
        println!(
            "|{:-<rule$}|{:->14}|{:->14}|{:-<20}|{:->12}|{:-<11}|",
            "",
            "",
            "",
            "",
            "",
            "",
            rule = width + 2
        );
        for row in &self.rows {
            let ratio = row.kafkv / row.raw;
            let ratio = if ratio.is_finite() {
                format!("{ratio:.2}")
            } else {
                NO_PEER.to_owned()
            };
            println!(
                "| {:<width$} | {:>12} | {:>12} | {:<18} | {:>10} | {:<9} |",
                row.measurement,
                format_figure(row.kafkv),
                format_figure(row.raw),
                row.peer,
                ratio,
                row.unit
            );
        }
        println!();
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self).expect("serializable"))?;
        Ok(())
    }
}

/// `label` followed by its goal and whether this run met it.
pub fn with_goal(label: &str, goal: &str, met: bool) -> String {
    let verdict = if met { "met" } else { "NOT met" };
    format!("{label} [goal {goal}: {verdict}]")
}

/// The `q` quantile of `samples` in milliseconds (nearest rank); NaN if empty.
pub fn percentile(samples: &[Duration], q: f64) -> f64 {
    let mut sorted: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank]
}

/// Two rows, p50 and p99 in ms, of `kafkv`'s latencies beside `peer`'s
/// (`raw`); `measurement` names each row from its quantile's name.
pub fn p50_p99_rows(
    measurement: impl Fn(&str) -> String,
    kafkv: &[Duration],
    peer: &str,
    raw: &[Duration],
) -> Vec<Row> {
    [("p50", 0.50), ("p99", 0.99)]
        .into_iter()
        .map(|(name, q)| Row {
            measurement: measurement(name),
            unit: "ms".into(),
            kafkv: percentile(kafkv, q),
            peer: peer.into(),
            raw: percentile(raw, q),
        })
        .collect()
}

/// A figure for the table; "—" when there is none (NaN: no peer does this).
fn format_figure(value: f64) -> String {
    if !value.is_finite() {
        NO_PEER.to_owned()
    } else if value >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), 51.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn rows_without_a_peer_show_a_dash_and_serialize_null() {
        assert_eq!(format_figure(f64::NAN), NO_PEER);
        assert_eq!(format_figure(1234.4), "1234");
        assert_eq!(format_figure(0.5), "0.500");
        let row = Row {
            measurement: "m".into(),
            unit: "ms".into(),
            kafkv: 1.0,
            peer: NO_PEER.into(),
            raw: f64::NAN,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec_pretty(&row).unwrap()).unwrap();
        assert_eq!(json["raw"], serde_json::Value::Null);
        assert_eq!(json["kafkv"], 1.0);
    }
}
