//! The part of SPDY/3.1 that Kubernetes streams use: framing, header blocks, and the
//! frames SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, SETTINGS, PING, GOAWAY and
//! WINDOW_UPDATE. The agent is the server for `kubectl port-forward` and the client of
//! the CRI runtime's streaming server for exec and attach.
//!
//! Every frame starts with 8 bytes. A control frame has the high bit set, then the
//! version (3) in 15 bits, the type in 16 bits, 8 bits of flags and a 24-bit length. A data
//! frame has the high bit clear, then a 31-bit stream id, the flags and the length.
//!
//! NOTE: flow control is not enforced in either direction. kubectl's SPDY library
//! (moby/spdystream) ignores WINDOW_UPDATE frames and never waits for one, so neither
//! side stalls.

pub mod headers;

use tokio::io::{AsyncRead, AsyncReadExt as _};

pub use headers::{HeaderCodec, Headers};

const VERSION: u16 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
/// The flag that closes the sender's half of a stream.
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status for a stream the receiver does not know.
pub const RST_INVALID_STREAM: u32 = 2;
/// Largest frame payload accepted; SPDY allows 16 MiB, and kubectl sends at most 32 KiB.
const MAX_FRAME_PAYLOAD: usize = 1 << 24;

/// A frame that breaks the protocol, or a failed header compression.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("SPDY {kind} frame too short: {length} bytes")]
    Short { kind: &'static str, length: usize },
    #[error("invalid SPDY header block")]
    InvalidHeaderBlock,
    #[error("SPDY header compression failed: {0}")]
    Compression(String),
    #[error("SPDY frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("reading the SPDY session failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A frame received from the peer, with header blocks still compressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream { stream_id: u32, flags: u8, header_block: Vec<u8> },
    Data { stream_id: u32, flags: u8, data: Vec<u8> },
    RstStream { stream_id: u32, status: u32 },
    Ping { id: u32 },
    GoAway,
    /// SYN_REPLY, SETTINGS, HEADERS, WINDOW_UPDATE and unknown control frames, which the
    /// agent does not act on.
    Ignored { kind: u16 },
}

/// Reads the next frame, or `None` at a clean end of the stream.
pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if length > MAX_FRAME_PAYLOAD {
        return Err(SpdyError::TooLarge(length));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    decode(head, payload, flags).map(Some)
}

fn decode(head: [u8; 8], payload: Vec<u8>, flags: u8) -> Result<Frame, SpdyError> {
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if first & 0x8000_0000 == 0 {
        return Ok(Frame::Data { stream_id: first, flags, data: payload });
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let kind = (first & 0xffff) as u16;
    let word = |offset: usize| {
        payload
            .get(offset..offset + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let short = |kind: &'static str| SpdyError::Short { kind, length: payload.len() };
    match kind {
        TYPE_SYN_STREAM => {
            // stream id, associated stream id, priority and slot, then the header block
            let stream_id = word(0).ok_or_else(|| short("SYN_STREAM"))? & 0x7fff_ffff;
            let header_block = payload.get(10..).ok_or_else(|| short("SYN_STREAM"))?.to_vec();
            Ok(Frame::SynStream { stream_id, flags, header_block })
        }
        TYPE_RST_STREAM => {
            let stream_id = word(0).ok_or_else(|| short("RST_STREAM"))? & 0x7fff_ffff;
            let status = word(4).ok_or_else(|| short("RST_STREAM"))?;
            Ok(Frame::RstStream { stream_id, status })
        }
        TYPE_PING => Ok(Frame::Ping { id: word(0).ok_or_else(|| short("PING"))? }),
        TYPE_GOAWAY => Ok(Frame::GoAway),
        TYPE_SYN_REPLY | TYPE_SETTINGS | TYPE_HEADERS | TYPE_WINDOW_UPDATE => Ok(Frame::Ignored { kind }),
        other => Ok(Frame::Ignored { kind: other }),
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// Encodes a SYN_STREAM that opens `stream_id` (odd for a client), with an already
/// compressed header block.
pub fn syn_stream(stream_id: u32, header_block: &[u8]) -> Vec<u8> {
    // stream id, associated stream id (none), priority and slot (zero)
    let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(header_block);
    control(TYPE_SYN_STREAM, 0, &payload)
}

/// Encodes a SYN_REPLY that accepts `stream_id`, with an already compressed header block.
pub fn syn_reply(stream_id: u32, header_block: &[u8]) -> Vec<u8> {
    let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(header_block);
    control(TYPE_SYN_REPLY, 0, &payload)
}

/// Encodes a DATA frame; `fin` closes the sender's half of the stream.
pub fn data(stream_id: u32, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

/// Encodes a RST_STREAM that aborts `stream_id` with `status`.
pub fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut payload = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&status.to_be_bytes());
    control(TYPE_RST_STREAM, 0, &payload)
}

/// Encodes the answer to a client's PING, which echoes its id.
pub fn ping(id: u32) -> Vec<u8> {
    control(TYPE_PING, 0, &id.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_one(bytes: Vec<u8>) -> Frame {
        read_frame(&mut bytes.as_slice()).await.expect("valid frame").expect("one frame")
    }

    #[tokio::test]
    async fn data_frame_round_trips() {
        let frame = read_one(data(5, b"hello", true)).await;
        assert_eq!(frame, Frame::Data { stream_id: 5, flags: FLAG_FIN, data: b"hello".to_vec() });
    }

    #[tokio::test]
    async fn syn_stream_carries_header_block() {
        let mut payload = vec![0, 0, 0, 3, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(b"block");
        let frame = read_one(control(TYPE_SYN_STREAM, FLAG_FIN, &payload)).await;
        assert_eq!(frame, Frame::SynStream { stream_id: 3, flags: FLAG_FIN, header_block: b"block".to_vec() });
    }

    #[tokio::test]
    async fn encoded_syn_stream_round_trips() {
        let frame = read_one(syn_stream(3, b"block")).await;
        assert_eq!(frame, Frame::SynStream { stream_id: 3, flags: 0, header_block: b"block".to_vec() });
    }

    #[tokio::test]
    async fn ping_and_rst_round_trip() {
        assert_eq!(read_one(ping(7)).await, Frame::Ping { id: 7 });
        assert_eq!(read_one(rst_stream(9, RST_INVALID_STREAM)).await, Frame::RstStream { stream_id: 9, status: 2 });
        assert_eq!(read_one(syn_reply(1, b"")).await, Frame::Ignored { kind: TYPE_SYN_REPLY });
    }

    #[tokio::test]
    async fn bad_frames_are_rejected() {
        let mut wrong_version = ping(1);
        wrong_version[1] = 2;
        assert!(matches!(read_frame(&mut wrong_version.as_slice()).await, Err(SpdyError::Version(2))));
        let short = control(TYPE_RST_STREAM, 0, &[0, 0]);
        assert!(matches!(read_frame(&mut short.as_slice()).await, Err(SpdyError::Short { .. })));
        let empty: &[u8] = &[];
        assert!(read_frame(&mut &*empty).await.expect("clean end").is_none());
    }
}
