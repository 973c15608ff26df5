//! One file per command: each declares its [`Spec`] (`SPECS`: its own, then
//! its aliases'), parses its own arguments and applies itself. This module
//! builds the command table from those specs, dispatches a request by name,
//! and says how a command runs in a pipeline ([`Kind`]): reads answer from
//! the view at once; writes go to Kafka, and consecutive writes are all put
//! in flight together and answered in order; session commands change the
//! connection's own state.
//!
//! Adding a command is a new file and one line in the `commands!` list below.

mod collection;
mod expiry;
mod spec;
mod unknown;

use std::sync::OnceLock;

use bytes::Bytes;

use super::{frame::Frame, parse::Args, session::Session};
use crate::store::Store;

pub use super::error::store_error;

/// The reply `reply` makes of `key`'s current value, or the store's error.
fn with_value(
    session: &Session,
    key: &[u8],
    reply: impl FnOnce(Option<crate::store::Versioned>) -> Frame,
) -> Frame {
    match session.store.get_now(key) {
        Ok(found) => reply(found),
        Err(error) => store_error(error),
    }
}

/// Redis's reply to a command on a key of another type.
pub(super) fn wrong_type() -> Frame {
    Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// The reply `reply` makes of `key`'s current string value (`None`:
/// absent); WRONGTYPE for a collection.
fn with_string(session: &Session, key: &[u8], reply: impl FnOnce(Option<Bytes>) -> Frame) -> Frame {
    with_value(session, key, |found| match found {
        Some(found) if !found.is_string() => wrong_type(),
        found => reply(found.map(|found| found.value)),
    })
}

/// The current value of each of `keys`, or the error reply for the first
/// that cannot be read.
fn values(
    session: &Session,
    keys: &[Bytes],
) -> Result<Vec<Option<crate::store::Versioned>>, Frame> {
    keys.iter()
        .map(|key| session.store.get_now(key).map_err(store_error))
        .collect()
}
pub use spec::{Kind, Spec};

// The collection reads' `apply` and `batched` are this trait's.
use collection::Read as _;

/// The reply `reply` makes of an operation's outcome; Redis's error for an
/// operation that failed where it landed; the store's error otherwise.
fn op_reply(
    result: Result<crate::store::Applied, crate::store::WriteError>,
    reply: impl FnOnce(crate::op::Outcome) -> Frame,
) -> Frame {
    match result {
        Ok(applied) => step_reply(applied.outcome, reply),
        Err(error) => store_error(error),
    }
}

/// The reply `reply` makes of one operation's outcome, or Redis's error for
/// an operation that failed where it landed (it changed nothing).
fn step_reply(
    outcome: crate::op::Outcome,
    reply: impl FnOnce(crate::op::Outcome) -> Frame,
) -> Frame {
    use crate::op::OpError;
    match outcome.error {
        None => reply(outcome),
        Some(OpError::TooLarge { max }) => Frame::error(format!(
            "ERR string exceeds maximum allowed size ({max} bytes, --max-value-bytes)"
        )),
        Some(OpError::WrongType) => wrong_type(),
        Some(OpError::CollectionTooLarge { max }) => Frame::error(format!(
            "ERR the collection would exceed {max} bytes (--max-value-bytes): kafkv keeps a \
             collection in one record"
        )),
        Some(error) => Frame::error(format!("ERR {error}")),
    }
}

/// A command as steps of an atomic batch (`EXEC` after `WATCH`), and how it
/// replies from those steps' outcomes. A read step (`None`) replies from
/// its outcome's `before`, the key as the record found it (expired keys
/// absent); its `after` is the material state, expired or not.
pub struct Batched {
    pub steps: Vec<(Bytes, Option<crate::op::Op>)>,
    pub reply: Box<dyn FnOnce(Vec<crate::op::Outcome>) -> Frame + Send>,
}

impl Batched {
    /// One operation on one key, replying from its outcome.
    fn one(
        key: Bytes,
        op: Option<crate::op::Op>,
        reply: impl FnOnce(crate::op::Outcome) -> Frame + Send + 'static,
    ) -> Self {
        Self {
            steps: vec![(key, op)],
            reply: Box::new(move |mut outcomes| match outcomes.pop() {
                Some(outcome) => step_reply(outcome, reply),
                None => Frame::error("ERR internal: no outcome"),
            }),
        }
    }

    /// Runs a one-step command on its own: an operation record.
    async fn run(mut self, store: &Store) -> Frame {
        let Some((key, Some(op))) = self.steps.pop() else {
            return Frame::error("ERR internal: not a single operation");
        };
        match store.apply_op(&key, op).await {
            Ok(applied) => (self.reply)(vec![applied.outcome]),
            Err(error) => store_error(error),
        }
    }
}

/// Declares the command modules, the [`Command`] enum, the table rows and
/// the dispatch from one list. A command in `apply` has
/// `fn apply(self, &mut Session) -> Frame`; one in `write` has
/// `async fn apply(self, &Store) -> Frame`, so a run of writes can be in
/// flight at once. Const assertions check that against the specs' kind, and
/// that aliases run like their command.
macro_rules! commands {
    (
        apply { $($variant:ident($module:ident::$command:ident),)* }
        write { $($write:ident($write_module:ident::$write_command:ident),)* }
    ) => {
        $(mod $module;)*
        $(mod $write_module;)*

        $(const _: () = assert!(
            matches!(spec::is_write($module::SPECS), Some(false)),
            concat!(stringify!($module), ": specs must agree and not be writes"),
        );)*
        $(const _: () = assert!(
            matches!(spec::is_write($write_module::SPECS), Some(true)),
            concat!(stringify!($write_module), ": specs must agree and be writes"),
        );)*

        /// A parsed request, with the spec of the name it used (an alias
        /// has its own).
        pub enum Command {
            $($variant(&'static Spec, $module::$command),)*
            $($write(&'static Spec, $write_module::$write_command),)*
            Unknown(unknown::Unknown),
            /// Refused before running, as Redis refuses a wrong number of
            /// arguments or an unknown subcommand: the reply is the error,
            /// and a `MULTI` it was sent in is aborted.
            Invalid(&'static Spec, Frame),
            /// Arguments the command refused (a syntax error, a value out of
            /// range): it runs as a call that failed with this reply, and in
            /// `MULTI` it is queued, as Redis checks these when it executes.
            Failed(&'static Spec, Frame),
        }

        /// The table rows, one per spec, in name order.
        fn build_table() -> Vec<Entry> {
            let mut table = Vec::new();
            $(for spec in $module::SPECS {
                table.push(Entry {
                    spec,
                    parse: |spec, args| {
                        $module::$command::parse(args).map(|cmd| Command::$variant(spec, cmd))
                    },
                });
            })*
            $(for spec in $write_module::SPECS {
                table.push(Entry {
                    spec,
                    parse: |spec, args| {
                        $write_module::$write_command::parse(args)
                            .map(|cmd| Command::$write(spec, cmd))
                    },
                });
            })*
            table.sort_by_key(|entry| entry.spec.name);
            table
        }

        impl Command {
            /// The spec of the name the request used; none for unknown
            /// requests and those refused before running.
            pub fn spec(&self) -> Option<&'static Spec> {
                match self {
                    $(Command::$variant(spec, _) => Some(spec),)*
                    $(Command::$write(spec, _) => Some(spec),)*
                    Command::Failed(spec, _) => Some(spec),
                    Command::Unknown(_) | Command::Invalid(..) => None,
                }
            }

            /// Applies a write; only for [`Kind::Write`]. Writes need only the
            /// store, so a run of them can be in flight at once.
            pub async fn apply_write(self, store: &Store) -> Frame {
                match self {
                    $(Command::$write(_, cmd) => cmd.apply(store).await,)*
                    _ => Frame::error("ERR internal: not a write"),
                }
            }

            /// Applies a read or session command.
            pub async fn apply(self, session: &mut Session) -> Frame {
                match self {
                    $(Command::$variant(_, cmd) => cmd.apply(session),)*
                    Command::Unknown(cmd) => cmd.apply(),
                    Command::Invalid(_, reply) | Command::Failed(_, reply) => reply,
                    write @ ($(Command::$write(..))|*) => {
                        write.apply_write(&session.store).await
                    }
                }
            }
        }
    };
}

commands! {
    apply {
        Auth(auth::Auth),
        Client(client::Client),
        Introspect(command::CommandCmd),
        Config(config::Config),
        DbSize(dbsize::DbSize),
        Echo(echo::Echo),
        Exists(exists::Exists),
        Get(get::Get),
        GetBit(getbit::GetBit),
        GetRange(getrange::GetRange),
        HashRead(hash_read::HashRead),
        Hello(hello::Hello),
        Info(info::Info),
        Keys(keys::Keys),
        LastSave(lastsave::LastSave),
        Lcs(lcs::Lcs),
        ListRead(list_read::ListRead),
        Memory(memory::Memory),
        MGet(mget::MGet),
        Object(object::Object),
        Time(time::Time),
        Transaction(multi::Transaction),
        Ttl(ttl::Ttl),
        Ping(ping::Ping),
        PubSub(pubsub::PubSub),
        Publish(publish::Publish),
        Quit(quit::Quit),
        RandomKey(randomkey::RandomKey),
        Scan(scan::Scan),
        Scripting(scripting::Scripting),
        Select(select::Select),
        SetRead(set_read::SetRead),
        Strlen(strlen::Strlen),
        Subscribe(subscribe::Subscribe),
        Type(type_::Type),
        Unsubscribe(unsubscribe::Unsubscribe),
        Watch(watch::Watch),
        ZSetRead(zset_read::ZSetRead),
    }
    write {
        Append(append::Append),
        Copy(copy::Copy),
        Del(del::Del),
        Expire(expire::Expire),
        Flush(flush::Flush),
        GetEx(getex::GetEx),
        GetSet(getset::GetSet),
        HIncrBy(hincrby::HIncrBy),
        HSet(hset::HSet),
        Incr(incr::Incr),
        IncrByFloat(incrbyfloat::IncrByFloat),
        MSet(mset::MSet),
        MSetNx(msetnx::MSetNx),
        Persist(persist::Persist),
        Pop(pop::Pop),
        Push(push::Push),
        Rename(rename::Rename),
        Set(set::Set),
        SetBit(setbit::SetBit),
        SetEx(setex::SetEx),
        SetRange(setrange::SetRange),
        SAdd(sadd::SAdd),
        SPop(spop::SPop),
        ZAdd(zadd::ZAdd),
        ZPop(zpop::ZPop),
        ZRem(zrem::ZRem),
    }
}

/// A row of the command table: a name's spec, and how to parse a request
/// with that name.
struct Entry {
    pub spec: &'static Spec,
    parse: fn(&'static Spec, &mut Args) -> Result<Command, Frame>,
}

/// Every command name kafkv knows, in name order (what `COMMAND` lists).
fn table() -> &'static [Entry] {
    static TABLE: OnceLock<Vec<Entry>> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

/// Every command name, in the table's (name) order.
pub fn names() -> Vec<&'static str> {
    table().iter().map(|entry| entry.spec.name).collect()
}

/// Whether a parse error is one Redis raises before running a command (and
/// that aborts a `MULTI`): a wrong number of arguments or an unknown
/// subcommand. Every other argument error is the command's own, at run time.
fn refused_before_running(reply: &Frame) -> bool {
    matches!(reply, Frame::Error(text)
        if text.starts_with("ERR wrong number of arguments")
            || text.starts_with("ERR unknown subcommand"))
}

/// The table row for a command name, in any case.
fn find(name: &[u8]) -> Option<&'static Entry> {
    // Lower-case the name on the stack: this runs for every request. A name
    // longer than the buffer is no command's.
    let mut lower = [0u8; 16];
    let lower = lower.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table()
        .iter()
        .find(|entry| entry.spec.name.as_bytes() == lower)
}

impl Command {
    /// This command as steps of an atomic batch, or itself back when it has
    /// no such form (`EXEC` after `WATCH` then refuses the transaction).
    pub fn batched(self, max_len: u64) -> Result<Batched, Command> {
        Ok(match self {
            Command::Get(_, cmd) => cmd.batched(),
            Command::MGet(_, cmd) => cmd.batched(),
            Command::Exists(_, cmd) => cmd.batched(),
            Command::Set(_, cmd) => cmd.batched(),
            Command::GetSet(_, cmd) => cmd.batched(),
            Command::Incr(_, cmd) => cmd.batched(),
            Command::IncrByFloat(_, cmd) => cmd.batched(),
            Command::Append(_, cmd) => cmd.batched(max_len),
            Command::SetRange(_, cmd) => cmd.batched(max_len),
            Command::SetBit(_, cmd) => cmd.batched(max_len),
            Command::Del(_, cmd) => cmd.batched(),
            Command::MSet(_, cmd) => cmd.batched(),
            Command::SetEx(_, cmd) => cmd.batched(),
            Command::GetEx(_, cmd) => cmd.batched(),
            Command::Expire(_, cmd) => cmd.batched(),
            Command::Persist(_, cmd) => cmd.batched(),
            Command::Ttl(_, cmd) => cmd.batched(),
            Command::ListRead(_, cmd) => cmd.batched(),
            Command::SetRead(_, cmd) => cmd.batched(),
            Command::HashRead(_, cmd) => cmd.batched(),
            Command::ZSetRead(_, cmd) => cmd.batched(),
            Command::Push(_, cmd) => cmd.batched(max_len),
            Command::Pop(_, cmd) => cmd.batched(),
            Command::SAdd(_, cmd) => cmd.batched(max_len),
            Command::SPop(_, cmd) => cmd.batched(),
            Command::HSet(_, cmd) => cmd.batched(max_len),
            Command::HIncrBy(_, cmd) => cmd.batched(max_len),
            Command::ZAdd(_, cmd) => cmd.batched(max_len),
            Command::ZRem(_, cmd) => cmd.batched(),
            Command::ZPop(_, cmd) => cmd.batched(),
            // Its arguments were refused: it fails alone, as Redis runs it.
            Command::Failed(_, reply) => Batched {
                steps: Vec::new(),
                reply: Box::new(move |_| reply),
            },
            other => return Err(other),
        })
    }

    /// The name the request used, as `COMMAND` lists it (empty for
    /// unknown requests and those refused before running).
    pub fn name(&self) -> &'static str {
        self.spec().map_or("", |spec| spec.name)
    }

    /// The name `INFO commandstats` counts it under: the one the request
    /// used, refused or not; empty for an unknown command.
    pub fn counted_name(&self) -> &'static str {
        match self {
            Command::Invalid(spec, _) => spec.name,
            _ => self.name(),
        }
    }

    /// Whether it was refused before running (the reply is the error).
    pub fn is_invalid(&self) -> bool {
        matches!(self, Command::Invalid(..))
    }

    /// How the command takes part in `MULTI`: `"multi"`, `"exec"`,
    /// `"discard"`, `"watch"` and `"quit"` are not queued; `""` is an
    /// unknown or malformed request; anything else (`"queued"`) is queued.
    pub fn transaction_role(&self) -> &'static str {
        match self {
            Command::Transaction(_, transaction) => transaction.verb(),
            Command::Watch(_, watch) if !watch.is_unwatch() => "watch",
            Command::Quit(..) => "quit",
            Command::Unknown(_) | Command::Invalid(..) => "",
            _ => "queued",
        }
    }

    /// Whether it may run in RESP2 subscribe mode. Unknown and invalid
    /// requests answer their own error first, as in Redis.
    pub fn allowed_in_subscribe_mode(&self) -> bool {
        matches!(
            self.name(),
            "" | "subscribe"
                | "psubscribe"
                | "unsubscribe"
                | "punsubscribe"
                | "ping"
                | "quit"
                | "reset"
        )
    }

    /// Parses a request's arguments; an empty request is `None`.
    pub fn parse(parts: Vec<Bytes>) -> Option<Command> {
        let mut parts = parts.into_iter();
        let name = parts.next()?;
        let mut args = Args::new(name.clone(), parts);
        Some(match find(&name) {
            Some(entry) => (entry.parse)(entry.spec, &mut args).unwrap_or_else(|reply| {
                if refused_before_running(&reply) {
                    Command::Invalid(entry.spec, reply)
                } else {
                    Command::Failed(entry.spec, reply)
                }
            }),
            None => Command::Unknown(unknown::Unknown::new(&name, &mut args)),
        })
    }

    /// How it runs in a pipeline; unknown and invalid requests are answered
    /// like reads.
    pub fn kind(&self) -> Kind {
        match self {
            Command::Failed(..) => Kind::Read,
            // Redis files GETEX as a write, but without an option it only
            // reads: it must see the writes before it in a pipeline, which
            // run concurrently with the writes next to them.
            Command::GetEx(_, getex) if !getex.writes() => Kind::Read,
            _ => self.spec().map_or(Kind::Read, |spec| spec.kind),
        }
    }

    /// Whether a connection may send it before `AUTH` when a token is set.
    pub fn allowed_before_auth(&self) -> bool {
        self.spec().is_some_and(|spec| spec.before_auth)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Argument lists that some command parses (a subcommand, a key, a key
    /// and value...): every command name must parse with one of them.
    const SAMPLE_ARGS: &[&[&str]] = &[
        &[],
        &["0"],
        &["0", "0"],
        &["ID"],
        &["GET", "*"],
        &["NUMPAT"],
        &["k", "0", "0"],
        &["USAGE", "k"],
        &["ENCODING", "k"],
        &["k", "1", "v"],
    ];

    fn parse(name: &str, args: &[&str]) -> Command {
        let request = std::iter::once(name)
            .chain(args.iter().copied())
            .map(|part| Bytes::from(part.to_owned()))
            .collect();
        Command::parse(request).expect("a non-empty request")
    }

    #[test]
    fn names_are_unique() {
        let mut seen = HashSet::new();
        for entry in table() {
            assert!(seen.insert(entry.spec.name), "{} twice", entry.spec.name);
        }
        assert_eq!(seen.len(), table().len());
    }

    #[test]
    fn no_auth_flag_and_before_auth_check_agree() {
        for entry in table() {
            let spec = entry.spec;
            assert_eq!(
                spec.flags.contains(&"no_auth"),
                spec.before_auth,
                "{}: the no_auth flag and before_auth disagree",
                spec.name
            );
        }
    }

    #[test]
    fn every_name_dispatches_to_its_command() {
        for entry in table() {
            let spec = entry.spec;
            for name in [spec.name.to_owned(), spec.name.to_ascii_uppercase()] {
                assert!(
                    find(name.as_bytes()).is_some_and(|found| std::ptr::eq(found, entry)),
                    "{name} does not find its own row"
                );
                let mut parsed = None;
                for args in SAMPLE_ARGS {
                    match parse(&name, args) {
                        Command::Unknown(_) => panic!("{name} is an unknown command"),
                        Command::Invalid(..) | Command::Failed(..) => {}
                        command => {
                            parsed = Some(command);
                            break;
                        }
                    }
                }
                let command = parsed.unwrap_or_else(|| {
                    panic!("{name} parses with none of the sample arguments: add some")
                });
                assert!(
                    command.spec().is_some_and(|own| std::ptr::eq(own, spec)),
                    "{name} does not carry its own spec"
                );
                // A plain GETEX (what the samples give it) runs as a read.
                let kind = match spec.name {
                    "getex" => Kind::Read,
                    _ => spec.kind,
                };
                assert_eq!(command.kind(), kind, "{name}: kind");
                assert_eq!(
                    command.allowed_before_auth(),
                    spec.before_auth,
                    "{name}: the before-AUTH check disagrees with its spec"
                );
            }
        }
    }

    #[test]
    fn getex_runs_as_a_write_only_when_it_writes() {
        assert_eq!(parse("getex", &["k"]).kind(), Kind::Read);
        // A refused time answers from the key alone.
        assert_eq!(parse("getex", &["k", "EX", "0"]).kind(), Kind::Read);
        assert_eq!(parse("getex", &["k", "PERSIST"]).kind(), Kind::Write);
        assert_eq!(parse("GETEX", &["k", "px", "5"]).kind(), Kind::Write);
    }

    #[test]
    fn expiry_argument_errors_fail_when_run_and_arity_errors_before() {
        // Redis checks these when it runs the command: in MULTI it is queued.
        for (name, args) in [
            ("set", &["k", "v", "EX", "0"][..]),
            ("set", &["k", "v", "NX", "XX"]),
            ("setex", &["k", "0", "v"]),
            ("expire", &["k", "1", "NX", "GT"]),
            ("pexpire", &["k", "x"]),
        ] {
            assert!(
                matches!(parse(name, args), Command::Failed(..)),
                "{name} {args:?}"
            );
        }
        for (name, args) in [
            ("setex", &["k", "0"][..]),
            ("expire", &["k"]),
            ("ttl", &["k", "k"]),
            ("persist", &[]),
            ("getex", &[]),
        ] {
            assert!(
                matches!(parse(name, args), Command::Invalid(..)),
                "{name} {args:?}"
            );
        }
    }

    #[test]
    fn unknown_and_invalid_requests_run_as_reads_and_need_auth() {
        for command in [parse("nosuchcommand", &["a"]), parse("get", &[])] {
            assert!(matches!(
                command,
                Command::Unknown(_) | Command::Invalid(..)
            ));
            assert_eq!(command.kind(), Kind::Read);
            assert!(!command.allowed_before_auth());
        }
    }
}
