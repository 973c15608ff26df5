//! A cursor over one request's arguments, with Redis's error texts for
//! missing, extra and malformed arguments.

use bytes::Bytes;

use super::frame::Frame;

pub struct Args {
    /// The command name as sent; lower-cased only for an error message.
    name: Bytes,
    /// The subcommand read by [`Args::subcommand`], which arity errors name
    /// as Redis 7 does (`client|setname`).
    subcommand: Option<Bytes>,
    rest: std::vec::IntoIter<Bytes>,
}

impl Args {
    pub fn new(name: Bytes, rest: std::vec::IntoIter<Bytes>) -> Self {
        Self {
            name,
            subcommand: None,
            rest,
        }
    }

    /// The next argument, required, as the subcommand of a container
    /// command (`CLIENT`, `CONFIG`, ...): from here on an arity error names
    /// `command|subcommand`.
    pub fn subcommand(&mut self) -> Result<Bytes, Frame> {
        let sub = self.bytes()?;
        self.subcommand = Some(sub.clone());
        Ok(sub)
    }

    /// The command name as sent.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn optional(&mut self) -> Option<Bytes> {
        self.rest.next()
    }

    /// The next argument, required.
    pub fn bytes(&mut self) -> Result<Bytes, Frame> {
        self.rest.next().ok_or_else(|| self.wrong_arity())
    }

    pub fn integer(&mut self) -> Result<i64, Frame> {
        integer(&self.bytes()?)
    }

    /// Exactly one more argument (a key, a message).
    pub fn single(&mut self) -> Result<Bytes, Frame> {
        let arg = self.bytes()?;
        self.finish()?;
        Ok(arg)
    }

    /// One or more arguments (keys).
    pub fn one_or_more(&mut self) -> Result<Vec<Bytes>, Frame> {
        let rest = self.rest();
        if rest.is_empty() {
            return Err(self.wrong_arity());
        }
        Ok(rest)
    }

    /// Every argument left as pairs (`MSET`'s keys and values, `HSET`'s
    /// fields and values): at least one, and no odd one out, or the arity
    /// error.
    pub fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, Frame> {
        let rest = self.rest();
        if rest.is_empty() || !rest.len().is_multiple_of(2) {
            return Err(self.wrong_arity());
        }
        Ok(rest
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect())
    }

    /// Every argument left.
    pub fn rest(&mut self) -> Vec<Bytes> {
        self.rest.by_ref().collect()
    }

    /// Fails when arguments are left over.
    pub fn finish(&mut self) -> Result<(), Frame> {
        if self.rest.len() == 0 {
            Ok(())
        } else {
            Err(self.wrong_arity())
        }
    }

    pub fn wrong_arity(&self) -> Frame {
        let mut name = String::from_utf8_lossy(&self.name).to_ascii_lowercase();
        if let Some(sub) = &self.subcommand {
            name.push('|');
            name.push_str(&String::from_utf8_lossy(sub).to_ascii_lowercase());
        }
        Frame::error(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    }
}

/// An argument read as a signed 64-bit integer, or Redis's error.
pub fn integer(arg: &[u8]) -> Result<i64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_an_integer)
}

pub fn not_an_integer() -> Frame {
    Frame::error("ERR value is not an integer or out of range")
}

pub fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}
