//! `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name ...`, `COMMAND DOCS
//! [name ...]`: enough for redis-cli and client libraries to learn the
//! command table.

use super::{Args, Frame, TABLE};

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

    pub fn apply(self) -> Frame {
        match self {
            Self::All => Frame::Array(TABLE.iter().map(info).collect()),
            Self::Count => Frame::Integer(TABLE.len() as i64),
            Self::Info(names) if names.is_empty() => Frame::Array(TABLE.iter().map(info).collect()),
            Self::Info(names) => Frame::Array(
                names
                    .iter()
                    .map(|n| find(n).map_or(Frame::Null, info))
                    .collect(),
            ),
            Self::Docs(names) => {
                let entries: Vec<_> = if names.is_empty() {
                    TABLE.iter().collect()
                } else {
                    names.iter().filter_map(|n| find(n)).collect()
                };
                Frame::Map(
                    entries
                        .into_iter()
                        .map(|(name, _, _)| {
                            (
                                Frame::bulk(name.to_string()),
                                Frame::Map(vec![(
                                    Frame::bulk("summary"),
                                    Frame::bulk(format!("kafkv's {}", name.to_uppercase())),
                                )]),
                            )
                        })
                        .collect(),
                )
            }
        }
    }
}

type Entry = (&'static str, i64, &'static [&'static str]);

fn find(name: &str) -> Option<&'static Entry> {
    TABLE.iter().find(|(n, _, _)| *n == name)
}

/// Redis's command-info shape: name, arity, flags, first key, last key, step.
fn info(entry: &Entry) -> Frame {
    let (name, arity, flags) = entry;
    let keys = if flags.contains(&"readonly") || flags.contains(&"write") {
        let last = if *arity < 0 { -1 } else { 1 };
        let step = if *name == "mset" { 2 } else { 1 };
        (1, last, step)
    } else {
        (0, 0, 0)
    };
    Frame::Array(vec![
        Frame::bulk(name.to_string()),
        Frame::Integer(*arity),
        Frame::Set(flags.iter().map(|f| Frame::Simple(f.to_string())).collect()),
        Frame::Integer(keys.0),
        Frame::Integer(keys.1),
        Frame::Integer(keys.2),
    ])
}
