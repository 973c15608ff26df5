//! `SET key value`. Options that need a conditional write or an expiry are
//! refused by name until kafkv supports them; an option is never ignored.

use super::{Args, Frame, Kind, Spec};
use crate::resp::parse::syntax_error;
use crate::store::Store;

pub const SPECS: &[Spec] = &[Spec {
    name: "set",
    arity: -3,
    flags: &["write", "denyoom"],
    kind: Kind::Write,
    before_auth: false,
}];

pub struct Set {
    key: bytes::Bytes,
    value: bytes::Bytes,
}

impl Set {
    pub fn parse(args: &mut Args) -> Result<Self, Frame> {
        let key = args.bytes()?;
        let value = args.bytes()?;
        if let Some(option) = args.optional() {
            let name = String::from_utf8_lossy(&option).to_ascii_uppercase();
            return Err(match name.as_str() {
                "NX" | "XX" | "GET" | "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => {
                    Frame::error(format!(
                        "ERR SET option {name} is not supported by kafkv: it needs a \
                         conditional write or an expiry, which kafkv does not have yet"
                    ))
                }
                _ => syntax_error(),
            });
        }
        Ok(Self { key, value })
    }

    pub async fn apply(self, store: &Store) -> Frame {
        match store.put(&self.key, self.value).await {
            Ok(_) => Frame::ok(),
            Err(error) => super::store_error(error),
        }
    }
}
