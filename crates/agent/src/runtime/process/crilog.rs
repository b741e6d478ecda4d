//! Container log files in the CRI format.
//!
//! Each line is `<RFC 3339 time with 9 fraction digits> <stream> <tag> <content>`, where the
//! tag is `F` for a full line and `P` for a piece of a line longer than 16 KiB, so the
//! reader joins pieces until the next `F`. This is the format containerd writes and
//! kubelet reads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;

/// The maximum content length of one log line; longer lines are split into pieces.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// A log file shared by the stdout and stderr copiers.
#[derive(Debug)]
pub struct LogFile {
    file: Mutex<File>,
}

impl LogFile {
    /// Opens `path` for appending, creating it and its directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    /// Appends one entry; `partial` marks a piece of a longer line.
    pub fn write_entry(&self, stream: &str, partial: bool, content: &[u8]) -> io::Result<()> {
        let tag = if partial { "P" } else { "F" };
        let mut line = format!("{:.9} {stream} {tag} ", jiff::Timestamp::now()).into_bytes();
        line.extend_from_slice(content);
        line.push(b'\n');
        // One write per entry, under the lock, so stdout and stderr lines never interleave.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)
    }

    /// Writes one full line, split into 16 KiB pieces when it is longer.
    fn write_line(&self, stream: &str, line: &[u8]) -> io::Result<()> {
        let mut rest = line;
        while rest.len() > MAX_LINE_BYTES {
            self.write_entry(stream, true, &rest[..MAX_LINE_BYTES])?;
            rest = &rest[MAX_LINE_BYTES..];
        }
        self.write_entry(stream, false, rest)
    }
}

/// Copies `input` into `log` line by line until end of file. A last line without a
/// newline is written as a full line.
pub fn copy_stream(mut input: impl Read, stream: &str, log: &LogFile) -> io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        pending.extend_from_slice(&buffer[..read]);

        // write the complete lines
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|byte| *byte == b'\n') {
            log.write_line(stream, &pending[start..start + end])?;
            start += end + 1;
        }
        pending.drain(..start);

        // flush pieces of an overlong line without waiting for its end
        while pending.len() > MAX_LINE_BYTES {
            log.write_entry(stream, true, &pending[..MAX_LINE_BYTES])?;
            pending.drain(..MAX_LINE_BYTES);
        }
    }
    if !pending.is_empty() {
        log.write_line(stream, &pending)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> (&str, &str, &str, &str) {
        let mut parts = line.splitn(4, ' ');
        let time = parts.next().unwrap();
        (
            time,
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap_or(""),
        )
    }

    #[test]
    fn lines_and_partials() {
        let path = std::env::temp_dir().join(format!("cst-log-{}/0.log", std::process::id()));
        let log = LogFile::open(&path).unwrap();
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let input = format!("hello\n\n{long}\nno newline");
        copy_stream(input.as_bytes(), "stdout", &log).unwrap();
        copy_stream(&b"oops\n"[..], "stderr", &log).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().map(parse).collect();
        let summary: Vec<_> = lines.iter().map(|(_, s, t, c)| (*s, *t, c.len())).collect();
        assert_eq!(
            summary,
            vec![
                ("stdout", "F", 5),
                ("stdout", "F", 0),
                ("stdout", "P", MAX_LINE_BYTES),
                ("stdout", "F", 10),
                ("stdout", "F", 10),
                ("stderr", "F", 4),
            ]
        );
        for (time, ..) in &lines {
            let parsed: jiff::Timestamp = time.parse().expect("RFC 3339 time");
            assert_eq!(time.len(), "2026-12-04T19:26:06.848008506Z".len(), "{time}");
            assert!(parsed > jiff::Timestamp::UNIX_EPOCH);
        }
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
