//! `AUTH [username] token`: the only user is `default`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "auth",
    arity: -2,
    flags: &["noscript", "loading", "stale", "fast", "no_auth"],
    kind: Kind::Session,
    before_auth: true,
}];

pub struct Auth {
    username: Option<bytes::Bytes>,
    token: bytes::Bytes,
}

impl Auth {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let first = args.bytes()?;
        let auth = match args.optional() {
            None => Self {
                username: None,
                token: first,
            },
            Some(token) => Self {
                username: Some(first),
                token,
            },
        };
        args.finish()?;
        Ok(auth)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        authenticate(session, self.username.as_deref(), &self.token)
    }
}

/// Checks a username and token against `--auth-token`; shared with `HELLO`.
pub fn authenticate(session: &mut Session, username: Option<&[u8]>, token: &[u8]) -> Frame {
    let Some(expected) = session.server.auth_token.as_deref() else {
        // As Redis with no password: the default user takes any password,
        // the one-argument form is refused, other users do not exist.
        return match username {
            Some(b"default") => Frame::ok(),
            Some(_) => Frame::error("WRONGPASS invalid username-password pair or user is disabled."),
            None => Frame::error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            ),
        };
    };
    let user_ok = username.is_none_or(|u| u == b"default");
    if user_ok && crate::auth::token_matches(expected, token) {
        session.authenticated = true;
        Frame::ok()
    } else {
        Frame::error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}
