//! `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name ...`, `COMMAND DOCS
//! [name ...]`: enough for redis-cli and client libraries to learn the
//! command table.

use super::{Args, Frame, Kind, Session, Spec, find, table};

pub const SPECS: &[Spec] = &[Spec {
    name: "command",
    arity: -1,
    flags: &["loading", "stale"],
    kind: Kind::Read,
    before_auth: false,
}];

pub enum CommandCmd {
    All,
    Count,
    Info(Vec<String>),
    Docs(Vec<String>),
}

impl CommandCmd {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let Some(sub) = args.optional() else {
            return Ok(Self::All);
        };
        let names = |args: &mut Args| -> Vec<String> {
            args.rest()
                .iter()
                .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                .collect()
        };
        match sub.to_ascii_uppercase().as_slice() {
            b"COUNT" => {
                args.finish()?;
                Ok(Self::Count)
            }
            b"INFO" => Ok(Self::Info(names(args))),
            b"DOCS" => Ok(Self::Docs(names(args))),
            _ => Err(Frame::error(format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(&sub)
            ))),
        }
    }

    pub fn apply(self, _session: &mut Session) -> Frame {
        let all = || table().iter().map(|entry| info(entry.spec)).collect();
        let spec = |name: &String| find(name.as_bytes()).map(|entry| entry.spec);
        match self {
            Self::All => Frame::Array(all()),
            Self::Count => Frame::Integer(table().len() as i64),
            Self::Info(names) if names.is_empty() => Frame::Array(all()),
            Self::Info(names) => Frame::Array(
                names
                    .iter()
                    .map(|name| spec(name).map_or(Frame::Null, info))
                    .collect(),
            ),
            Self::Docs(names) => {
                let specs: Vec<_> = if names.is_empty() {
                    table().iter().map(|entry| entry.spec).collect()
                } else {
                    names.iter().filter_map(spec).collect()
                };
                Frame::Map(
                    specs
                        .into_iter()
                        .map(|spec| {
                            (
                                Frame::bulk(spec.name.to_string()),
                                Frame::Map(vec![(
                                    Frame::bulk("summary"),
                                    Frame::bulk(format!("kafkv's {}", spec.name.to_uppercase())),
                                )]),
                            )
                        })
                        .collect(),
                )
            }
        }
    }
}

/// Redis's command-info shape: name, arity, flags, first key, last key, step.
fn info(spec: &Spec) -> Frame {
    let keys = if spec.flags.contains(&"readonly") || spec.flags.contains(&"write") {
        let last = if spec.arity < 0 { -1 } else { 1 };
        let step = if spec.name == "mset" { 2 } else { 1 };
        (1, last, step)
    } else {
        (0, 0, 0)
    };
    Frame::Array(vec![
        Frame::bulk(spec.name.to_string()),
        Frame::Integer(spec.arity),
        Frame::Set(
            spec.flags
                .iter()
                .map(|flag| Frame::Simple(flag.to_string()))
                .collect(),
        ),
        Frame::Integer(keys.0),
        Frame::Integer(keys.1),
        Frame::Integer(keys.2),
    ])
}
