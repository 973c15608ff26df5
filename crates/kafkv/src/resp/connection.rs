//! Framed I/O for one client: reads into a buffer, splits complete requests
//! off it, and buffers replies until they are written in one go.
//!
//! It knows RESP framing ([`frame`](super::frame)) and nothing about
//! commands: running them is the handler's job.

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::frame::{self, Frame, Limits, ProtocolError};

/// A client socket with its input and output buffers.
pub struct Connection {
    stream: TcpStream,
    limits: Limits,
    /// Bytes read but not yet taken as a request: at most a partial one,
    /// unless the handler stopped taking mid-way.
    input: BytesMut,
    /// Replies encoded but not yet written.
    output: BytesMut,
    /// A request with a bulk string over the limit, being read and discarded.
    discarding: Option<Discarding>,
}

/// What is left to discard of a refused request.
struct Discarding {
    /// Bytes of the current bulk string (body and CRLF) still to drop.
    bytes: usize,
    /// Bulk strings after it, still to drop.
    args_left: usize,
    /// The oversize bulk string's length, for the error reply.
    len: usize,
}

/// What the next complete request is.
pub enum Incoming {
    Request(Vec<Bytes>),
    /// A request with a bulk string of `len` bytes, over `max` (the limit):
    /// read and discarded, to be answered with an error. The connection
    /// stays usable.
    TooLarge {
        len: usize,
        max: usize,
    },
}

impl Connection {
    pub fn new(stream: TcpStream, limits: Limits) -> Self {
        // A round's replies go out in one write: Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            limits,
            input: BytesMut::with_capacity(16 * 1024),
            output: BytesMut::with_capacity(16 * 1024),
            discarding: None,
        }
    }

    /// Takes the next complete request already buffered, without I/O:
    /// `Ok(None)` until a whole one has arrived.
    pub fn request(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            if let Some(discarding) = &mut self.discarding {
                let drop = discarding.bytes.min(self.input.len());
                self.input.advance(drop);
                discarding.bytes -= drop;
                if discarding.bytes > 0 {
                    return Ok(None);
                }
                if discarding.args_left > 0 {
                    let Some((len, header)) = frame::bulk_header(&self.input, &self.limits)? else {
                        return Ok(None);
                    };
                    self.input.advance(header);
                    discarding.bytes = len + 2;
                    discarding.args_left -= 1;
                    continue;
                }
                let len = discarding.len;
                self.discarding = None;
                return Ok(Some(Incoming::TooLarge {
                    len,
                    max: self.limits.max_bulk,
                }));
            }
            let Some(request) = frame::check(&self.input, &self.limits)? else {
                return Ok(None);
            };
            if let Some(oversize) = request.oversize() {
                self.input.advance(request.len());
                self.discarding = Some(Discarding {
                    bytes: oversize.body,
                    args_left: oversize.args_left,
                    len: oversize.len,
                });
                continue;
            }
            return Ok(Some(Incoming::Request(frame::take(
                &mut self.input,
                request,
            ))));
        }
    }

    /// Reads more input; `false` once the client has closed or the read
    /// failed. Cancel-safe: nothing read is lost if it is dropped.
    pub async fn read(&mut self) -> bool {
        matches!(self.stream.read_buf(&mut self.input).await, Ok(read) if read > 0)
    }

    /// Buffers a reply, encoded for the protocol version in use.
    pub fn reply(&mut self, reply: &Frame, resp3: bool) {
        reply.encode(&mut self.output, resp3);
    }

    /// Bytes of replies buffered and not yet written.
    pub fn buffered(&self) -> usize {
        self.output.len()
    }

    /// Writes the buffered replies.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }
}
