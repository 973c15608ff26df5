//! `CLIENT SETNAME name | GETNAME | ID | SETINFO attribute value`.

use super::{Args, Frame, Kind, Session, Spec};

pub const SPECS: &[Spec] = &[Spec {
    name: "client",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    kind: Kind::Session,
    before_auth: false,
}];

/// Refuses a connection name Redis refuses (`CLIENT SETNAME`, `HELLO ...
/// SETNAME`): names show in one line of `CLIENT LIST`.
pub fn check_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().any(|b| *b <= b' ' || *b > b'~') {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

pub enum Client {
    SetName(bytes::Bytes),
    GetName,
    Id,
    SetInfo,
}

impl Client {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let sub = args.subcommand()?;
        let client = match sub.to_ascii_uppercase().as_slice() {
            b"SETNAME" => {
                let name = args.bytes()?;
                check_name(&name)?;
                Client::SetName(name)
            }
            b"GETNAME" => Client::GetName,
            b"ID" => Client::Id,
            b"SETINFO" => {
                let attribute = args.bytes()?;
                if !matches!(
                    attribute.to_ascii_uppercase().as_slice(),
                    b"LIB-NAME" | b"LIB-VER"
                ) {
                    return Err(Frame::error(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&attribute)
                    )));
                }
                args.bytes()?;
                Client::SetInfo
            }
            _ => {
                return Err(Frame::error(format!(
                    "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                    String::from_utf8_lossy(&sub)
                )));
            }
        };
        args.finish()?;
        Ok(client)
    }

    pub fn apply(self, session: &mut Session) -> Frame {
        match self {
            Client::SetName(name) => {
                session.name = (!name.is_empty()).then_some(name);
                Frame::ok()
            }
            Client::GetName => session.name.clone().map_or(Frame::Null, Frame::Bulk),
            Client::Id => Frame::Integer(session.id as i64),
            Client::SetInfo => Frame::ok(),
        }
    }
}
