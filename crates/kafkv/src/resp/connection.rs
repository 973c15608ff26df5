//! Framed I/O for one client: reads into a buffer, splits complete requests
//! off it, and buffers replies until they are written in one go.
//!
//! It knows RESP framing ([`frame`](super::frame)) and nothing about
//! commands: running them is the handler's job.

use bytes::{Bytes, BytesMut};
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
        }
    }

    /// Takes the next complete request already buffered, without I/O:
    /// `Ok(None)` until a whole one has arrived.
    pub fn request(&mut self) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let request = frame::check(&self.input, &self.limits)?;
        Ok(request.map(|request| frame::take(&mut self.input, request)))
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
