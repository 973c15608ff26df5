//! Which log lines the binary writes: kafkv's own at `info` by default, the
//! embedded broker's dependencies quieter, whatever `RUST_LOG` says.
//!
//! **Why `RUST_LOG` does not replace the quiet directives.** tansu 0.6's
//! codec (`tansu_sans_io`) instruments every varint it decodes and every
//! record size it computes with `#[instrument(ret)]` at `info`. With a bare
//! `RUST_LOG=info` (the level most people set, and the one kafkv's test
//! kit gave its children) the embedded broker wrote a line per varint: 1.6
//! GB of log in one two-minute bench run, about 40% of the broker's CPU
//! (`perf`: `Stderr::write_all` and `FormatEvent::format_event`). So the
//! quiet directives always come first and `RUST_LOG`'s are added after
//! them: a global level (`info`, `debug`) leaves them in place, and a
//! directive that names one of their targets (`tansu_sans_io=debug`)
//! replaces it, so a developer can still turn them on.

use tracing_subscriber::EnvFilter;

/// kafkv's level when `RUST_LOG` is unset.
const DEFAULT_LEVEL: &str = "info";

/// The embedded broker's dependencies: tansu logs normal conditions (an
/// existing topic) as errors and its codec's every call at `info`; broker
/// trouble shows in kafkv's own Kafka client's logs.
const QUIET_DEPENDENCIES: &str = "tansu_broker=warn,tansu_storage=off,tansu_service=warn,\
                                  tansu_sans_io=warn,tansu_schema=warn,libsql=warn";

/// The filter for `RUST_LOG`'s value (`None` when unset), and, if that value
/// could not be parsed, why (the filter is then the default).
pub fn filter(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let default = || EnvFilter::new(format!("{QUIET_DEPENDENCIES},{DEFAULT_LEVEL}"));
    match rust_log.map(str::trim).filter(|value| !value.is_empty()) {
        None => (default(), None),
        Some(value) => match EnvFilter::try_new(format!("{QUIET_DEPENDENCIES},{value}")) {
            Ok(filter) => (filter, None),
            Err(error) => (
                default(),
                Some(format!(
                    "RUST_LOG={value:?} is not a valid filter ({error}); logging at the \
                     default level ({DEFAULT_LEVEL}). Example: RUST_LOG=info,kafkv=debug"
                )),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use tracing::{Level, dispatcher, enabled};
    use tracing_subscriber::{Registry, layer::SubscriberExt};

    use super::filter;

    /// Whether `target` logs at `level` under `RUST_LOG=rust_log`. The
    /// targets are the literal ones the callsites name, since `enabled!`
    /// needs a constant target.
    fn enabled_under(rust_log: Option<&str>) -> [bool; 4] {
        let (filter, _) = filter(rust_log);
        let subscriber = Registry::default().with(filter);
        dispatcher::with_default(&dispatcher::Dispatch::new(subscriber), || {
            [
                enabled!(target: "tansu_sans_io::record::codec", Level::INFO),
                enabled!(target: "kafkv::store", Level::INFO),
                enabled!(target: "kafkv::store", Level::DEBUG),
                enabled!(target: "tansu_sans_io::record::codec", Level::WARN),
            ]
        })
    }

    #[test]
    fn unset_logs_kafkv_at_info_and_quiets_the_codec() {
        assert_eq!(enabled_under(None), [false, true, false, true]);
    }

    #[test]
    fn a_global_level_in_rust_log_keeps_the_codec_quiet() {
        assert_eq!(enabled_under(Some("info")), [false, true, false, true]);
        assert_eq!(enabled_under(Some("debug")), [false, true, true, true]);
    }

    #[test]
    fn naming_a_quiet_target_in_rust_log_turns_it_on() {
        assert_eq!(
            enabled_under(Some("info,tansu_sans_io=info")),
            [true, true, false, true]
        );
    }

    #[test]
    fn an_invalid_rust_log_falls_back_to_the_default_and_says_why() {
        let (_, why) = filter(Some("kafkv=loud"));
        let why = why.expect("an invalid filter is reported");
        assert!(why.contains("kafkv=loud"), "{why}");
        assert_eq!(
            enabled_under(Some("kafkv=loud")),
            [false, true, false, true]
        );
    }
}
