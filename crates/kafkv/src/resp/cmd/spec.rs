//! What each command declares about itself, in its own file: its row of the
//! `COMMAND` table, how it runs in a pipeline, and whether it may run before
//! `AUTH`. The command table, the dispatch by name and the before-AUTH check
//! are all built from these.

/// How a command interacts with the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answers from the view at once, after the writes before it.
    Read,
    /// Goes to Kafka; consecutive writes are in flight together and
    /// answered in order.
    Write,
    /// Reads or changes the connection's own state, after the writes before it.
    Session,
}

/// A command name's spec.
#[derive(Debug)]
pub struct Spec {
    /// Lower-case, as `COMMAND` shows it; requests match it in any case.
    pub name: &'static str,
    /// Redis's arity, counting the name: `n` exactly, `-n` at least `n`.
    pub arity: i64,
    /// Redis's flags, as `COMMAND` shows them.
    pub flags: &'static [&'static str],
    pub kind: Kind,
    /// Whether a connection may send it before `AUTH` when a token is set.
    /// The `no_auth` flag says the same to clients (a unit test checks).
    pub before_auth: bool,
}

impl Spec {
    /// A command that answers from the view, after `AUTH`.
    pub const fn read(name: &'static str, arity: i64, flags: &'static [&'static str]) -> Self {
        Self {
            name,
            arity,
            flags,
            kind: Kind::Read,
            before_auth: false,
        }
    }

    /// A command that goes to Kafka, after `AUTH`.
    pub const fn write(name: &'static str, arity: i64, flags: &'static [&'static str]) -> Self {
        Self {
            name,
            arity,
            flags,
            kind: Kind::Write,
            before_auth: false,
        }
    }
}

/// For a command's specs (its own, then its aliases'): `Some(true)` if it
/// is a write, `Some(false)` if not, `None` if there are none or an alias
/// disagrees on its kind or on running before `AUTH` (they run as one
/// command). Const assertions check it against how the command is applied.
pub const fn is_write(specs: &[Spec]) -> Option<bool> {
    let Some(first) = specs.first() else {
        return None;
    };
    let mut i = 1;
    while i < specs.len() {
        if specs[i].kind as u8 != first.kind as u8 || specs[i].before_auth != first.before_auth {
            return None;
        }
        i += 1;
    }
    Some(matches!(first.kind, Kind::Write))
}
