//! SPDY/3 header blocks: the name/value encoding and its zlib compression, which starts
//! from a fixed dictionary and keeps one stream per direction for the whole session.

use std::collections::BTreeMap;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::SpdyError;

/// Header names that the SPDY/3 dictionary lists, each prefixed with its length as a
/// 32-bit big-endian integer (draft-mbelshe-httpbis-spdy-00, section 2.6.10.1).
const DICTIONARY_WORDS: &[&str] = &[
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
];

/// The text that ends the SPDY/3 dictionary, without length prefixes.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// Largest decompressed header block accepted, against a peer that sends a zlib bomb.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Builds the SPDY/3 zlib dictionary (1423 bytes).
pub fn dictionary() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    bytes
}

/// Header names and values; SPDY/3 names are lower-case.
pub type Headers = BTreeMap<String, String>;

/// The compression state of one session: one inflate stream for the peer's header blocks
/// and one deflate stream for ours.
pub struct HeaderCodec {
    dictionary: Vec<u8>,
    inflate: Decompress,
    deflate: Compress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCodec {
    pub fn new() -> Self {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&dictionary).expect("a fresh deflate stream accepts a dictionary");
        HeaderCodec { dictionary, inflate: Decompress::new(true), deflate }
    }

    /// Decompresses and parses one header block from the peer.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let plain = self.inflate_block(block)?;
        parse_block(&plain)
    }

    /// Encodes and compresses one header block for the peer.
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for text in [name, value] {
                plain.extend_from_slice(&(text.len() as u32).to_be_bytes());
                plain.extend_from_slice(text.as_bytes());
            }
        }
        let mut compressed = Vec::with_capacity(plain.len() + 64);
        let mut input = plain.as_slice();
        loop {
            compressed.reserve(256);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut compressed, FlushCompress::Sync)
                .map_err(|error| SpdyError::Compression(error.to_string()))?;
            let consumed = (self.deflate.total_in() - before) as usize;
            input = &input[consumed..];
            // a sync flush is complete once the output buffer was not filled to the brim
            if input.is_empty() && compressed.len() < compressed.capacity() {
                return Ok(compressed);
            }
        }
    }

    fn inflate_block(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            plain.reserve(1024);
            let before_in = self.inflate.total_in();
            let before_out = plain.len();
            let result = self.inflate.decompress_vec(input, &mut plain, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - before_in) as usize;
            input = &input[consumed..];
            match result {
                Ok(Status::StreamEnd) => return Ok(plain),
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|error| SpdyError::Compression(error.to_string()))?;
                    continue;
                }
                Err(error) => return Err(SpdyError::Compression(error.to_string())),
            }
            if plain.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Compression(format!("header block larger than {MAX_HEADER_BLOCK} bytes")));
            }
            let stalled = consumed == 0 && plain.len() == before_out;
            if input.is_empty() && (plain.len() < plain.capacity() || stalled) {
                return Ok(plain);
            }
        }
    }
}

/// Parses a decompressed block: a pair count, then length-prefixed names and values.
fn parse_block(plain: &[u8]) -> Result<Headers, SpdyError> {
    let mut rest = plain;
    let take_u32 = |rest: &mut &[u8]| -> Result<usize, SpdyError> {
        let (head, tail) = rest.split_at_checked(4).ok_or(SpdyError::InvalidHeaderBlock)?;
        *rest = tail;
        Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize)
    };
    let count = take_u32(&mut rest)?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for text in &mut pair {
            let length = take_u32(&mut rest)?;
            let (bytes, tail) = rest.split_at_checked(length).ok_or(SpdyError::InvalidHeaderBlock)?;
            rest = tail;
            *text = String::from_utf8_lossy(bytes).into_owned();
        }
        let [name, value] = pair;
        headers.insert(name.to_ascii_lowercase(), value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_has_spdy3_size() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
        assert!(dictionary.ends_with(b",enq=0."));
    }

    #[test]
    fn blocks_round_trip_across_one_session() {
        let mut sender = HeaderCodec::new();
        let mut receiver = HeaderCodec::new();
        for port in ["8080", "9090", "8080"] {
            let mut headers = Headers::new();
            headers.insert("streamtype".into(), "data".into());
            headers.insert("port".into(), port.into());
            headers.insert("requestid".into(), "0".into());
            let block = sender.encode(&headers).expect("encode");
            assert_eq!(receiver.decode(&block).expect("decode"), headers);
        }
    }

    #[test]
    fn empty_block_round_trips() {
        let mut sender = HeaderCodec::new();
        let mut receiver = HeaderCodec::new();
        let block = sender.encode(&Headers::new()).expect("encode");
        assert!(receiver.decode(&block).expect("decode").is_empty());
    }

    #[test]
    fn truncated_block_is_rejected() {
        assert!(matches!(parse_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']), Err(SpdyError::InvalidHeaderBlock)));
    }
}
