//! `CONFIG GET pattern [pattern ...]` and `CONFIG SET parameter value
//! [parameter value ...]` over the parameters clients, tools and Redis's test
//! harness ask for. kafkv's settings are fixed at start-up, so `SET` accepts
//! a value only when it is what kafkv already does, and otherwise says which
//! `kafkv serve` flag sets it.

use super::{Args, Frame, Kind, Session, Spec};
use crate::resp::{glob, pubsub::NOTIFY_KEYSPACE_EVENTS};

pub const SPECS: &[Spec] = &[Spec {
    name: "config",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    kind: Kind::Read,
    before_auth: false,
}];

pub enum Config {
    Get(Vec<bytes::Bytes>),
    Set(Vec<(String, bytes::Bytes)>),
}

/// A parameter: its name, its value here, and the `kafkv serve` flag that
/// sets it (`None`: kafkv has no other value for it).
struct Parameter {
    name: &'static str,
    value: String,
    flag: Option<&'static str>,
    /// Redis refuses to set it at run time at all.
    immutable: bool,
}

fn parameters(session: &Session) -> Vec<Parameter> {
    let config = &session.server.config;
    let fixed = |name, value: &str| Parameter {
        name,
        value: value.to_owned(),
        flag: None,
        immutable: false,
    };
    vec![
        fixed("save", ""),
        fixed("appendonly", "no"),
        Parameter {
            immutable: true,
            ..fixed("databases", "1")
        },
        fixed("timeout", "0"),
        fixed("notify-keyspace-events", NOTIFY_KEYSPACE_EVENTS),
        Parameter {
            name: "maxclients",
            value: config.max_connections.to_string(),
            flag: Some("--resp-max-connections"),
            immutable: false,
        },
        Parameter {
            name: "proto-max-bulk-len",
            value: config.limits.max_bulk.to_string(),
            flag: Some("--max-value-bytes"),
            immutable: false,
        },
    ]
}

impl Config {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sub = args.subcommand()?;
        match sub.to_ascii_uppercase().as_slice() {
            b"GET" => Ok(Self::Get(args.one_or_more()?)),
            b"SET" => {
                let rest = args.one_or_more()?;
                if rest.len() % 2 != 0 {
                    return Err(args.wrong_arity());
                }
                let pairs = rest
                    .chunks_exact(2)
                    .map(|pair| {
                        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                        (name, pair[1].clone())
                    })
                    .collect();
                Ok(Self::Set(pairs))
            }
            _ => Err(Frame::error(format!(
                "ERR CONFIG {} is not supported by kafkv: its configuration is set at start-up \
                 (kafkv serve --help)",
                String::from_utf8_lossy(&sub).to_ascii_uppercase()
            ))),
        }
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        let parameters = parameters(session);
        match self {
            Self::Get(patterns) => Frame::Map(
                parameters
                    .into_iter()
                    .filter(|p| {
                        patterns
                            .iter()
                            .any(|pattern| glob::matches(&pattern.to_ascii_lowercase(), p.name.as_bytes()))
                    })
                    .map(|p| (Frame::bulk(p.name), Frame::bulk(p.value)))
                    .collect(),
            ),
            // All or nothing, as Redis: every pair is checked before any answer.
            Self::Set(pairs) => {
                for (i, (name, value)) in pairs.iter().enumerate() {
                    if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                        return Frame::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - \
                             duplicate parameter"
                        ));
                    }
                    let Some(parameter) = parameters.iter().find(|p| p.name == name) else {
                        return Frame::error(format!(
                            "ERR Unknown option or number of arguments for CONFIG SET - '{name}' \
                             (kafkv's configuration is set at start-up: kafkv serve --help)"
                        ));
                    };
                    if let Err(reason) = accepts(parameter, value) {
                        return Frame::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - \
                             {reason}"
                        ));
                    }
                }
                Frame::ok()
            }
        }
    }
}

/// Whether setting `parameter` to `value` changes nothing kafkv does.
fn accepts(parameter: &Parameter, value: &[u8]) -> Result<(), String> {
    if parameter.immutable {
        return Err("can't set immutable config".to_owned());
    }
    if parameter.name == "notify-keyspace-events" {
        return notify_classes_cover_kafkv(value);
    }
    if value.eq_ignore_ascii_case(parameter.value.as_bytes()) {
        return Ok(());
    }
    Err(match parameter.flag {
        Some(flag) => format!(
            "kafkv sets {} at start-up (kafkv serve {flag}); it is {}",
            parameter.name, parameter.value
        ),
        None => format!(
            "kafkv has no other value for {}: it is '{}'",
            parameter.name, parameter.value
        ),
    })
}

/// Redis's event classes: generic, string, list, set, hash, sorted set,
/// expired, evicted, stream, key miss, module, new key; `A` is `g$lshzxetd`.
const EVENT_CLASSES: &[u8] = b"g$lshzxeKEAtmdn";
/// The classes `A` stands for.
const A_CLASSES: &[u8] = b"g$lshzxetd";

/// kafkv always publishes generic, string, list, set, hash, sorted-set and
/// expired events on both kinds of channel; a configuration that includes
/// them (`KEA`, `KEg$lshzx`, ...) asks for nothing kafkv leaves out, as long
/// as it asks for no class kafkv could have but never sends (`m` key
/// misses, `n` new keys). Classes of types and events kafkv does not have
/// (streams, evictions, ...) never fire, as in a Redis without such keys.
fn notify_classes_cover_kafkv(value: &[u8]) -> Result<(), String> {
    if let Some(bad) = value.iter().find(|c| !EVENT_CLASSES.contains(c)) {
        return Err(format!(
            "Invalid event class character '{}'",
            char::from(*bad)
        ));
    }
    if let Some(unsent) = value.iter().find(|c| b"mn".contains(c)) {
        return Err(format!(
            "kafkv does not send '{}' events (key misses, new keys)",
            char::from(*unsent)
        ));
    }
    let has =
        |class: u8| value.contains(&class) || (A_CLASSES.contains(&class) && value.contains(&b'A'));
    if NOTIFY_KEYSPACE_EVENTS.bytes().all(has) {
        Ok(())
    } else {
        Err(format!(
            "kafkv always sends keyspace notifications for '{NOTIFY_KEYSPACE_EVENTS}' and cannot \
             turn any of them off; set a value that includes them, such as 'KEA'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::notify_classes_cover_kafkv;

    #[test]
    fn notify_keyspace_events_must_include_what_kafkv_sends() {
        for ok in ["KEA", "AKE", "g$lshzxKE", "KEg$lshzxe", "KEAl"] {
            assert!(notify_classes_cover_kafkv(ok.as_bytes()).is_ok(), "{ok}");
        }
        // `g$xKE` was all kafkv sent before collections.
        for refused in [
            "", "KA", "EA", "KEg", "KE$", "g$KE", "Kx", "KEAm", "KEAn", "KEAQ", "g$xKE",
        ] {
            assert!(notify_classes_cover_kafkv(refused.as_bytes()).is_err(), "{refused}");
        }
    }
}
