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
        if args.remaining() == 0 {
            return Ok(Self::All);
        }
        let sub = args.subcommand()?;
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
                        .map(|spec| (Frame::bulk(spec.name.to_string()), docs(spec)))
                        .collect(),
                )
            }
        }
    }
}

/// The group Redis files a command under (`COMMAND DOCS`, and its
/// `@group` ACL category).
fn group(name: &str) -> &'static str {
    match name {
        "get" | "getbit" | "getrange" | "lcs" | "mget" | "mset" | "set" | "strlen" | "substr" => {
            "string"
        }
        "del" | "exists" | "keys" | "object" | "randomkey" | "scan" | "touch" | "type"
        | "unlink" => "keyspace",
        "auth" | "client" | "echo" | "hello" | "ping" | "quit" | "select" => "connection",
        "multi" | "exec" | "discard" | "watch" | "unwatch" => "transactions",
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "publish" | "pubsub" => {
            "pubsub"
        }
        "function" | "script" => "scripting",
        _ => "server",
    }
}

/// Redis 7's command-info shape: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specifications, subcommands.
fn info(spec: &Spec) -> Frame {
    let reads = spec.flags.contains(&"readonly");
    let writes = spec.flags.contains(&"write");
    let keys = if reads || writes {
        let last = if spec.arity < 0 { -1 } else { 1 };
        let step = if spec.name == "mset" { 2 } else { 1 };
        (1, last, step)
    } else {
        (0, 0, 0)
    };
    let mut categories = Vec::new();
    for (flag, category) in [
        ("write", "@write"),
        ("readonly", "@read"),
        ("fast", "@fast"),
        ("admin", "@admin"),
        ("admin", "@dangerous"),
    ] {
        if spec.flags.contains(&flag) {
            categories.push(category);
        }
    }
    if !spec.flags.contains(&"fast") {
        categories.push("@slow");
    }
    let group = format!("@{}", group(spec.name));
    let simple = |text: &str| Frame::Simple(text.to_owned());
    let key_specs = if keys.0 == 0 {
        Vec::new()
    } else {
        let access = if writes { "RW" } else { "RO" };
        vec![Frame::Map(vec![
            (Frame::bulk("flags"), Frame::Array(vec![simple(access)])),
            (
                Frame::bulk("begin_search"),
                Frame::Map(vec![
                    (Frame::bulk("type"), Frame::bulk("index")),
                    (
                        Frame::bulk("spec"),
                        Frame::Map(vec![(Frame::bulk("index"), Frame::Integer(1))]),
                    ),
                ]),
            ),
            (
                Frame::bulk("find_keys"),
                Frame::Map(vec![
                    (Frame::bulk("type"), Frame::bulk("range")),
                    (
                        Frame::bulk("spec"),
                        Frame::Map(vec![
                            (Frame::bulk("lastkey"), Frame::Integer(keys.1 - 1)),
                            (Frame::bulk("keystep"), Frame::Integer(keys.2)),
                            (Frame::bulk("limit"), Frame::Integer(0)),
                        ]),
                    ),
                ]),
            ),
        ])]
    };
    Frame::Array(vec![
        Frame::bulk(spec.name.to_string()),
        Frame::Integer(spec.arity),
        Frame::Set(spec.flags.iter().map(|flag| simple(flag)).collect()),
        Frame::Integer(keys.0),
        Frame::Integer(keys.1),
        Frame::Integer(keys.2),
        Frame::Set(
            categories
                .into_iter()
                .chain(std::iter::once(group.as_str()))
                .map(simple)
                .collect(),
        ),
        Frame::Array(Vec::new()),
        Frame::Array(key_specs),
        Frame::Array(Vec::new()),
    ])
}

/// Redis 7's command-docs shape, with what kafkv can say of each.
fn docs(spec: &Spec) -> Frame {
    Frame::Map(vec![
        (
            Frame::bulk("summary"),
            Frame::bulk(format!(
                "{} as in Redis, on kafkv's compacted-topic store",
                spec.name.to_uppercase()
            )),
        ),
        (Frame::bulk("group"), Frame::bulk(group(spec.name))),
    ])
}
