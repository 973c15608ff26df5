//! A small RESP client for the sections that talk to a Redis front end
//! themselves: [`RespClient::call`] sends one command and waits for its
//! reply (the read-modify-write latencies); [`RespClient::queue`],
//! [`RespClient::flush`] and [`RespClient::read_reply`] pipeline many (the
//! expiry section's paced writes and its checks at the expiry second).
//! [`append_command`] encodes a command, and also feeds `redis-cli --pipe`.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream},
    net::TcpStream,
};

use crate::error::{Error, Result};

/// Appends a command in the Redis protocol (an array of bulk strings).
pub fn append_command(buffer: &mut Vec<u8>, args: &[&[u8]]) {
    let mut number = itoa::Buffer::new();
    buffer.push(b'*');
    buffer.extend_from_slice(number.format(args.len()).as_bytes());
    buffer.extend_from_slice(b"\r\n");
    for arg in args {
        buffer.push(b'$');
        buffer.extend_from_slice(number.format(arg.len()).as_bytes());
        buffer.extend_from_slice(b"\r\n");
        buffer.extend_from_slice(arg);
        buffer.extend_from_slice(b"\r\n");
    }
}

/// A reply of the kinds the bench's commands answer with (arrays are not
/// read: no command the bench sends answers one).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

impl Reply {
    /// Ok if this is `wanted`; an error naming both otherwise.
    pub fn expect(self, wanted: Reply) -> Result<()> {
        if self == wanted {
            Ok(())
        } else {
            Err(Error::Failed(format!(
                "kafkv answered {self:?}, not {wanted:?}"
            )))
        }
    }
}

pub struct RespClient {
    stream: BufStream<TcpStream>,
    /// Commands encoded and not yet sent.
    out: Vec<u8>,
    line: Vec<u8>,
}

impl RespClient {
    pub async fn connect(address: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufStream::new(stream),
            out: Vec::new(),
            line: Vec::new(),
        })
    }

    /// Sends one command and reads its reply; an error reply is an error.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.queue(args);
        self.flush().await?;
        self.read_reply().await
    }

    /// Encodes a command to go out with the next [`flush`](Self::flush).
    pub fn queue(&mut self, args: &[&[u8]]) {
        append_command(&mut self.out, args);
    }

    /// Sends every queued command.
    pub async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.out).await?;
        self.stream.flush().await?;
        self.out.clear();
        Ok(())
    }

    /// Reads the next reply; an error reply is an error.
    pub async fn read_reply(&mut self) -> Result<Reply> {
        self.line.clear();
        self.stream.read_until(b'\n', &mut self.line).await?;
        let unexpected = |line: &[u8]| {
            Error::Failed(format!(
                "unexpected RESP reply {:?}",
                String::from_utf8_lossy(line)
            ))
        };
        let line = self
            .line
            .strip_suffix(b"\r\n")
            .ok_or_else(|| unexpected(&self.line))?;
        let text = String::from_utf8_lossy(&line[1.min(line.len())..]).into_owned();
        match line.first() {
            Some(b'+') => Ok(Reply::Simple(text)),
            Some(b':') => text
                .parse()
                .map(Reply::Integer)
                .map_err(|_| unexpected(line)),
            Some(b'$') => {
                let len: i64 = text.parse().map_err(|_| unexpected(line))?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut body = vec![0; len as usize + 2];
                self.stream.read_exact(&mut body).await?;
                body.truncate(len as usize);
                Ok(Reply::Bulk(Some(body)))
            }
            Some(b'-') => Err(Error::Failed(format!(
                "kafkv answered with an error: {text}"
            ))),
            _ => Err(unexpected(line)),
        }
    }

    /// Sends one command and reads an integer reply (DBSIZE, EXISTS).
    pub async fn integer(&mut self, args: &[&[u8]]) -> Result<i64> {
        match self.call(args).await? {
            Reply::Integer(n) => Ok(n),
            other => Err(Error::Failed(format!(
                "{} answered {other:?}, not an integer",
                String::from_utf8_lossy(args[0])
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        let mut buffer = Vec::new();
        append_command(&mut buffer, &[b"SET", b"key-000000000001", b"vvv"]);
        append_command(&mut buffer, &[b"SET", b"k", b"", b"EX", b"3600"]);
        assert_eq!(
            buffer,
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey-000000000001\r\n$3\r\nvvv\r\n\
              *5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nEX\r\n$4\r\n3600\r\n"
        );
    }
}
