//! `HELLO [protover [AUTH username token] [SETNAME name]]`: switches the
//! connection to RESP2 or RESP3 and describes the server.

use super::{Args, Frame, Kind, Session, Spec, auth::authenticate};

pub const SPECS: &[Spec] = &[Spec {
    name: "hello",
    arity: -1,
    flags: &["noscript", "loading", "stale", "fast", "no_auth"],
    kind: Kind::Session,
    before_auth: true,
}];

pub struct Hello {
    version: Option<i64>,
    auth: Option<(bytes::Bytes, bytes::Bytes)>,
    name: Option<bytes::Bytes>,
}

impl Hello {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let mut hello = Self {
            version: None,
            auth: None,
            name: None,
        };
        if args.remaining() == 0 {
            return Ok(hello);
        }
        hello.version =
            Some(args.integer().map_err(|_| {
                Frame::error("ERR Protocol version is not an integer or out of range")
            })?);
        while let Some(option) = args.optional() {
            match option.to_ascii_uppercase().as_slice() {
                b"AUTH" => hello.auth = Some((args.bytes()?, args.bytes()?)),
                b"SETNAME" => {
                    let name = args.bytes()?;
                    super::client::check_name(&name)?;
                    hello.name = Some(name);
                }
                _ => {
                    return Err(Frame::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(&option)
                    )));
                }
            }
        }
        Ok(hello)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        if let Some(version) = self.version
            && !(2..=3).contains(&version)
        {
            return Frame::error("NOPROTO unsupported protocol version");
        }
        if let Some((username, token)) = &self.auth {
            let reply = authenticate(session, Some(username), token);
            if matches!(reply, Frame::Error(_)) {
                return reply;
            }
        }
        if session.server.auth_token.is_some() && !session.authenticated {
            return Frame::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        if let Some(version) = self.version {
            session.resp3 = version == 3;
        }
        if let Some(name) = self.name {
            session.name = Some(name);
        }
        let text = |s: &str| Frame::bulk(s.to_owned());
        Frame::Map(vec![
            (text("server"), text("redis")),
            (text("version"), text(super::info::REDIS_VERSION)),
            (
                text("proto"),
                Frame::Integer(if session.resp3 { 3 } else { 2 }),
            ),
            (text("id"), Frame::Integer(session.id as i64)),
            (text("mode"), text("standalone")),
            (text("role"), text("master")),
            (text("modules"), Frame::Array(Vec::new())),
        ])
    }
}
