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

/// The group Redis files a command under (`COMMAND DOCS`).
fn group(name: &str) -> &'static str {
    match name {
        "get" | "getrange" | "lcs" | "mget" | "mset" | "set" | "strlen" | "substr" | "append"
        | "decr" | "decrby" | "getdel" | "getset" | "incr" | "incrby" | "incrbyfloat"
        | "setnx" | "setrange" | "msetnx" | "setex" | "psetex" | "getex" => "string",
        "getbit" | "setbit" => "bitmap",
        "del" | "exists" | "keys" | "object" | "randomkey" | "scan" | "touch" | "type"
        | "unlink" | "rename" | "renamenx" | "copy" | "expire" | "pexpire" | "expireat"
        | "pexpireat" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "persist" => "generic",
        "auth" | "client" | "echo" | "hello" | "ping" | "quit" | "select" => "connection",
        "multi" | "exec" | "discard" | "watch" | "unwatch" => "transactions",
        "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "publish" | "pubsub" => {
            "pubsub"
        }
        "function" | "script" => "scripting",
        _ => "server",
    }
}

/// The ACL category of a group (`server` commands have none of their own).
fn group_category(group: &str) -> Option<&'static str> {
    Some(match group {
        "string" => "@string",
        "bitmap" => "@bitmap",
        "generic" => "@keyspace",
        "connection" => "@connection",
        "transactions" => "@transaction",
        "pubsub" => "@pubsub",
        "scripting" => "@scripting",
        _ => return None,
    })
}

/// Where a command's keys are, as Redis 7.0's `COMMAND INFO` gives them:
/// first, last (negative: from the end) and step; zeros for commands without
/// keys (and for containers such as `OBJECT`, whose subcommands have them).
fn key_positions(name: &str) -> (i64, i64, i64) {
    match name {
        "get" | "getbit" | "getrange" | "substr" | "set" | "strlen" | "type" | "append"
        | "decr" | "decrby" | "getdel" | "getset" | "incr" | "incrby" | "incrbyfloat"
        | "setbit" | "setnx" | "setrange" | "setex" | "psetex" | "getex" | "expire" | "pexpire"
        | "expireat" | "pexpireat" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "persist" => {
            (1, 1, 1)
        }
        "lcs" | "rename" | "renamenx" | "copy" => (1, 2, 1),
        "del" | "unlink" | "exists" | "touch" | "mget" | "watch" => (1, -1, 1),
        "mset" | "msetnx" => (1, -1, 2),
        _ => (0, 0, 0),
    }
}

/// Redis 7's command-info shape: name, arity, flags, first key, last key,
/// step, ACL categories, tips, key specifications, subcommands.
fn info(spec: &Spec) -> Frame {
    let keys = key_positions(spec.name);
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
    categories.extend(group_category(group(spec.name)));
    let simple = |text: &str| Frame::Simple(text.to_owned());
    let key_specs = if keys.0 == 0 {
        Vec::new()
    } else {
        let access = if spec.flags.contains(&"write") {
            "RW"
        } else {
            "RO"
        };
        // find_keys counts lastkey from the first key (negative: from the end).
        let last = if keys.1 < 0 { keys.1 } else { keys.1 - keys.0 };
        vec![Frame::Map(vec![
            (Frame::bulk("flags"), Frame::Array(vec![simple(access)])),
            (
                Frame::bulk("begin_search"),
                Frame::Map(vec![
                    (Frame::bulk("type"), Frame::bulk("index")),
                    (
                        Frame::bulk("spec"),
                        Frame::Map(vec![(Frame::bulk("index"), Frame::Integer(keys.0))]),
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
                            (Frame::bulk("lastkey"), Frame::Integer(last)),
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
        Frame::Set(categories.into_iter().map(simple).collect()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_readonly_or_write_command_with_keys_has_positions() {
        for entry in super::super::table() {
            let spec = entry.spec;
            let (first, last, step) = key_positions(spec.name);
            assert!(first >= 0 && step >= 0, "{}", spec.name);
            if first > 0 {
                assert!(last == -1 || last >= first, "{}", spec.name);
                // A command with a fixed arity holds its last key inside it.
                assert!(spec.arity < 0 || last < spec.arity, "{}", spec.name);
            }
        }
        assert_eq!(key_positions("mset"), (1, -1, 2));
        assert_eq!(key_positions("randomkey"), (0, 0, 0));
        assert_eq!(key_positions("flushall"), (0, 0, 0));
    }
}
