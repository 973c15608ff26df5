//! Any command kafkv does not know: Redis's `unknown command` reply; the
//! connection stays usable.

use super::{Args, Frame};

pub struct Unknown {
    text: String,
}

impl Unknown {
    pub fn new(name: &[u8], args: &mut Args) -> Self {
        let quoted: String = args
            .rest()
            .iter()
            .take(10)
            .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
            .collect();
        Self {
            text: format!(
                "ERR unknown command '{}', with args beginning with: {quoted}",
                String::from_utf8_lossy(name)
            ),
        }
    }

    pub fn apply(self) -> Frame {
        Frame::Error(self.text)
    }
}
