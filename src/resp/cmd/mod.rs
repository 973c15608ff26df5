//! One file per command: each parses its own arguments and applies itself.
//!
//! Commands come in three kinds, which decide how a pipeline runs
//! ([`Kind`]): reads answer from the view at once; writes go to Kafka, and
//! consecutive writes are all put in flight together and answered in order;
//! session commands change the connection's own state.

mod auth;
mod client;
mod command;
mod config;
mod dbsize;
mod del;
mod echo;
mod exists;
mod get;
mod hello;
mod info;
mod keys;
mod mget;
mod mset;
mod ping;
mod quit;
mod scan;
mod select;
mod set;
mod strlen;
mod type_;
mod unknown;

use bytes::Bytes;

use super::{frame::Frame, parse::Args, session::Session};
use crate::store::Store;

/// How a command interacts with the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Session,
}

/// A parsed request.
pub enum Command {
    Auth(auth::Auth),
    Client(client::Client),
    Introspect(command::CommandCmd),
    Config(config::Config),
    DbSize(dbsize::DbSize),
    Del(del::Del),
    Echo(echo::Echo),
    Exists(exists::Exists),
    Get(get::Get),
    Hello(hello::Hello),
    Info(info::Info),
    Keys(keys::Keys),
    MGet(mget::MGet),
    MSet(mset::MSet),
    Ping(ping::Ping),
    Quit(quit::Quit),
    Scan(scan::Scan),
    Select(select::Select),
    Set(set::Set),
    Strlen(strlen::Strlen),
    Type(type_::Type),
    Unknown(unknown::Unknown),
    /// Arguments that did not parse: the reply is the error.
    Invalid(Frame),
}

/// The commands kafkv knows, with Redis's arity (negative: at least) and flags,
/// for `COMMAND`.
pub const TABLE: &[(&str, i64, &[&str])] = &[
    (
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
    ),
    ("client", -2, &["admin", "noscript", "loading", "stale"]),
    ("command", -1, &["loading", "stale"]),
    ("config", -2, &["admin", "noscript", "loading", "stale"]),
    ("dbsize", 1, &["readonly", "fast"]),
    ("del", -2, &["write"]),
    ("echo", 2, &["fast"]),
    ("exists", -2, &["readonly", "fast"]),
    ("get", 2, &["readonly", "fast"]),
    (
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
    ),
    ("info", -1, &["loading", "stale"]),
    ("keys", 2, &["readonly"]),
    ("mget", -2, &["readonly", "fast"]),
    ("mset", -3, &["write", "denyoom"]),
    ("ping", -1, &["fast"]),
    (
        "quit",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
    ),
    ("scan", -2, &["readonly"]),
    ("select", 2, &["loading", "stale", "fast"]),
    ("set", -3, &["write", "denyoom"]),
    ("strlen", 2, &["readonly", "fast"]),
    ("type", 2, &["readonly", "fast"]),
    ("unlink", -2, &["write", "fast"]),
];

impl Command {
    /// Parses a request's arguments; an empty request is `None`.
    pub fn parse(parts: Vec<Bytes>) -> Option<Command> {
        let mut parts = parts.into_iter();
        let name = parts.next()?;
        // Lower-case the name on the stack: this runs for every request.
        let mut lower = [0u8; 16];
        let known = name.len() <= lower.len();
        if known {
            lower[..name.len()].copy_from_slice(&name);
            lower[..name.len()].make_ascii_lowercase();
        }
        let lower = if known { &lower[..name.len()] } else { &[][..] };
        let mut args = Args::new(name.clone(), parts);
        let parsed = match std::str::from_utf8(lower).unwrap_or("") {
            "auth" => auth::Auth::parse(&mut args).map(Command::Auth),
            "client" => client::Client::parse(&mut args).map(Command::Client),
            "command" => command::CommandCmd::parse(&mut args).map(Command::Introspect),
            "config" => config::Config::parse(&mut args).map(Command::Config),
            "dbsize" => dbsize::DbSize::parse(&mut args).map(Command::DbSize),
            "del" | "unlink" => del::Del::parse(&mut args).map(Command::Del),
            "echo" => echo::Echo::parse(&mut args).map(Command::Echo),
            "exists" => exists::Exists::parse(&mut args).map(Command::Exists),
            "get" => get::Get::parse(&mut args).map(Command::Get),
            "hello" => hello::Hello::parse(&mut args).map(Command::Hello),
            "info" => info::Info::parse(&mut args).map(Command::Info),
            "keys" => keys::Keys::parse(&mut args).map(Command::Keys),
            "mget" => mget::MGet::parse(&mut args).map(Command::MGet),
            "mset" => mset::MSet::parse(&mut args).map(Command::MSet),
            "ping" => ping::Ping::parse(&mut args).map(Command::Ping),
            "quit" => quit::Quit::parse(&mut args).map(Command::Quit),
            "scan" => scan::Scan::parse(&mut args).map(Command::Scan),
            "select" => select::Select::parse(&mut args).map(Command::Select),
            "set" => set::Set::parse(&mut args).map(Command::Set),
            "strlen" => strlen::Strlen::parse(&mut args).map(Command::Strlen),
            "type" => type_::Type::parse(&mut args).map(Command::Type),
            _ => Ok(Command::Unknown(unknown::Unknown::new(&name, &mut args))),
        };
        Some(parsed.unwrap_or_else(Command::Invalid))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Command::Del(_) | Command::MSet(_) | Command::Set(_) => Kind::Write,
            Command::Auth(_)
            | Command::Client(_)
            | Command::Hello(_)
            | Command::Quit(_)
            | Command::Select(_) => Kind::Session,
            _ => Kind::Read,
        }
    }

    /// Commands a connection may send before `AUTH` when a token is set.
    pub fn allowed_before_auth(&self) -> bool {
        matches!(
            self,
            Command::Auth(_) | Command::Hello(_) | Command::Ping(_) | Command::Quit(_)
        )
    }

    /// Applies a write; only for [`Kind::Write`]. Writes need only the store,
    /// so a run of them can be in flight at once.
    pub async fn apply_write(self, store: &Store) -> Frame {
        match self {
            Command::Del(cmd) => cmd.apply(store).await,
            Command::MSet(cmd) => cmd.apply(store).await,
            Command::Set(cmd) => cmd.apply(store).await,
            _ => Frame::error("ERR internal: not a write"),
        }
    }

    /// Applies a read or session command.
    pub async fn apply(self, session: &mut Session) -> Frame {
        match self {
            Command::Auth(cmd) => cmd.apply(session),
            Command::Client(cmd) => cmd.apply(session),
            Command::Introspect(cmd) => cmd.apply(),
            Command::Config(cmd) => cmd.apply(session),
            Command::DbSize(cmd) => cmd.apply(session),
            Command::Echo(cmd) => cmd.apply(),
            Command::Exists(cmd) => cmd.apply(session),
            Command::Get(cmd) => cmd.apply(session),
            Command::Hello(cmd) => cmd.apply(session),
            Command::Info(cmd) => cmd.apply(session),
            Command::Keys(cmd) => cmd.apply(session),
            Command::MGet(cmd) => cmd.apply(session),
            Command::Ping(cmd) => cmd.apply(),
            Command::Quit(cmd) => cmd.apply(session),
            Command::Scan(cmd) => cmd.apply(session),
            Command::Select(cmd) => cmd.apply(),
            Command::Strlen(cmd) => cmd.apply(session),
            Command::Type(cmd) => cmd.apply(session),
            Command::Unknown(cmd) => cmd.apply(),
            Command::Invalid(reply) => reply,
            write @ (Command::Del(_) | Command::MSet(_) | Command::Set(_)) => {
                write.apply_write(&session.store).await
            }
        }
    }
}

pub use super::error::store_error;
