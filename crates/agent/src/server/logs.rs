//! Reading container logs in the CRI format (`<RFC 3339 time> <stream> <P|F> <text>`):
//! joining partial lines, and applying `tailLines`, `sinceTime` and `limitBytes`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::directory::PodDirectory;

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// One complete log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written in the file (RFC 3339 with nanoseconds).
    pub timestamp: String,
    pub time: Option<jiff::Timestamp>,
    pub stream: String,
    pub text: String,
}

impl LogLine {
    /// Formats the line as `kubectl logs` prints it, with the timestamp first on request.
    pub fn render(&self, timestamps: bool) -> String {
        if timestamps {
            format!("{} {}\n", self.timestamp, self.text)
        } else {
            format!("{}\n", self.text)
        }
    }
}

/// Joins CRI log records into lines: `P` records continue into the next record.
#[derive(Debug, Default)]
pub struct LogParser {
    pending: Option<LogLine>,
}

impl LogParser {
    /// Feeds one record (without its newline). Returns the line it completes, if any.
    /// A record that is not in the CRI format is passed through as its own line.
    pub fn feed(&mut self, record: &str) -> Option<LogLine> {
        let mut fields = record.splitn(4, ' ');
        let (timestamp, stream, tag) = (fields.next()?, fields.next(), fields.next());
        let text = fields.next().unwrap_or("");
        let (Some(stream), Some(tag @ ("P" | "F"))) = (stream, tag) else {
            let raw = LogLine {
                timestamp: String::new(),
                time: None,
                stream: String::new(),
                text: record.to_string(),
            };
            return Some(raw);
        };
        let line = self.pending.get_or_insert_with(|| LogLine {
            timestamp: timestamp.to_string(),
            time: timestamp.parse().ok(),
            stream: stream.to_string(),
            text: String::new(),
        });
        line.text.push_str(text);
        if tag == "F" {
            self.pending.take()
        } else {
            None
        }
    }

    /// Returns the line of trailing `P` records that no `F` record ended, as when a
    /// container's last output had no newline.
    pub fn finish(&mut self) -> Option<LogLine> {
        self.pending.take()
    }
}

/// Line selection from the log request's query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSelection {
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
    pub timestamps: bool,
}

impl LogSelection {
    fn admits(&self, line: &LogLine) -> bool {
        match (self.since, line.time) {
            (Some(since), Some(time)) => time >= since,
            _ => true,
        }
    }
}

/// Parses a whole log and applies `since` and `tail_lines`.
pub fn select_lines(content: &str, selection: &LogSelection) -> Vec<LogLine> {
    let mut parser = LogParser::default();
    let mut lines = VecDeque::new();
    for record in content.lines() {
        if let Some(line) = parser.feed(record).filter(|l| selection.admits(l)) {
            lines.push_back(line);
            if selection.tail_lines.is_some_and(|tail| lines.len() > tail) {
                lines.pop_front();
            }
        }
    }
    if let Some(line) = parser.finish().filter(|l| selection.admits(l)) {
        lines.push_back(line);
        if selection.tail_lines.is_some_and(|tail| lines.len() > tail) {
            lines.pop_front();
        }
    }
    lines.into()
}

/// Output budget for `limitBytes`: the output stops at the limit, mid-line if need be.
struct Budget {
    remaining: Option<usize>,
}

impl Budget {
    /// Cuts `text` to the budget. Returns `None` once the budget is spent.
    fn take(&mut self, text: String) -> Option<Bytes> {
        let Some(remaining) = self.remaining.as_mut() else {
            return Some(Bytes::from(text));
        };
        if *remaining == 0 {
            return None;
        }
        let mut bytes = Bytes::from(text);
        if bytes.len() > *remaining {
            bytes.truncate(*remaining);
        }
        *remaining -= bytes.len();
        Some(bytes)
    }

    fn spent(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Source of a log stream: the file, and the directory entry that shows when a followed
/// container stopped.
pub struct LogSource {
    pub path: PathBuf,
    pub follow: bool,
    pub directory: PodDirectory,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Sends the selected lines to `sink`, then, when following, new lines until the
/// container stops and its file contains nothing more. Ends early when the receiver closes.
pub async fn stream_log(
    source: LogSource,
    selection: LogSelection,
    sink: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut budget = Budget {
        remaining: selection.limit_bytes,
    };
    let content = read_from(&source.path, 0).await;
    let mut offset = content.len() as u64;
    let complete = match content.rfind('\n') {
        Some(end) => &content[..=end],
        None => "",
    };
    offset -= (content.len() - complete.len()) as u64;
    for line in select_lines(complete, &selection) {
        let Some(chunk) = budget.take(line.render(selection.timestamps)) else {
            return;
        };
        if sink.send(Ok(chunk)).await.is_err() {
            return;
        }
    }
    if !source.follow || budget.spent() {
        return;
    }

    // follow: take lines from the follower until the budget is spent or the client leaves
    let (lines, mut followed) = mpsc::channel(64);
    let consume = async move {
        while let Some(line) = followed.recv().await {
            if !selection.admits(&line) {
                continue;
            }
            let Some(chunk) = budget.take(line.render(selection.timestamps)) else {
                return;
            };
            if sink.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(follow_lines(&source, offset, lines), consume);
}

/// Returns the file's length, the offset from which [`follow_lines`] sends only new lines.
pub async fn end_offset(path: &Path) -> u64 {
    tokio::fs::metadata(path).await.map(|m| m.len()).unwrap_or(0)
}

/// Sends each complete line written to the file after `offset`, polling for appended
/// records, until the container stops and the file holds nothing more or the receiver
/// closes. `offset` must be at the start of a record.
pub async fn follow_lines(source: &LogSource, mut offset: u64, lines: mpsc::Sender<LogLine>) {
    let mut parser = LogParser::default();
    loop {
        let running = source
            .directory
            .container(&source.namespace, &source.pod, &source.container)
            .is_some_and(|logs| {
                logs.running && logs.current.as_deref() == Some(source.path.as_path())
            });
        let appended = read_from(&source.path, offset).await;
        let complete_len = appended.rfind('\n').map_or(0, |end| end + 1);
        offset += complete_len as u64;
        for record in appended[..complete_len].lines() {
            if let Some(line) = parser.feed(record)
                && lines.send(line).await.is_err()
            {
                return;
            }
        }
        if !running && complete_len == 0 {
            // a last partial line without its newline still counts
            if let Some(line) = parser.finish() {
                let _ = lines.send(line).await;
            }
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// Reads the file from `offset`; a missing or unreadable file reads as empty, because the
/// runtime may not have created it yet.
async fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return String::new();
    }
    let mut buffer = Vec::new();
    if file.read_to_end(&mut buffer).await.is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-01-01T00:00:01.000000000Z stdout F one
2026-01-01T00:00:02.000000000Z stdout P tw
2026-01-01T00:00:02.500000000Z stdout F o
2026-01-01T00:00:03.000000000Z stderr F three
2026-01-01T00:00:04.000000000Z stdout F four
";

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn partial_records_join() {
        let lines = select_lines(LOG, &LogSelection::default());
        assert_eq!(texts(&lines), vec!["one", "two", "three", "four"]);
        assert_eq!(lines[1].timestamp, "2026-01-01T00:00:02.000000000Z");
        assert_eq!(lines[2].stream, "stderr");
    }

    #[test]
    fn tail_keeps_last_lines() {
        let selection = LogSelection {
            tail_lines: Some(2),
            ..LogSelection::default()
        };
        assert_eq!(texts(&select_lines(LOG, &selection)), vec!["three", "four"]);
        let none = LogSelection {
            tail_lines: Some(0),
            ..LogSelection::default()
        };
        assert!(select_lines(LOG, &none).is_empty());
    }

    #[test]
    fn since_drops_older_lines() {
        let since = "2026-01-01T00:00:03Z".parse().ok();
        let selection = LogSelection {
            since,
            ..LogSelection::default()
        };
        assert_eq!(texts(&select_lines(LOG, &selection)), vec!["three", "four"]);
    }

    #[test]
    fn render_with_timestamps() {
        let lines = select_lines(LOG, &LogSelection::default());
        assert_eq!(
            lines[0].render(true),
            "2026-01-01T00:00:01.000000000Z one\n"
        );
        assert_eq!(lines[0].render(false), "one\n");
    }

    #[test]
    fn foreign_line_passes_through() {
        let mut parser = LogParser::default();
        assert_eq!(
            parser.feed("plain text").map(|l| l.text),
            Some("plain text".to_string())
        );
    }

    #[tokio::test]
    async fn limit_bytes_cuts_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).expect("write log");
        let source = LogSource {
            path,
            follow: false,
            directory: PodDirectory::new(),
            namespace: "default".into(),
            pod: "web".into(),
            container: "web".into(),
        };
        let selection = LogSelection {
            limit_bytes: Some(6),
            ..LogSelection::default()
        };
        let (sender, mut receiver) = mpsc::channel(16);
        stream_log(source, selection, sender).await;
        let mut output = Vec::new();
        while let Some(Ok(chunk)) = receiver.recv().await {
            output.extend_from_slice(&chunk);
        }
        assert_eq!(output, b"one\ntw");
    }

    #[test]
    fn trailing_partial_line_is_kept() {
        let content = "2026-01-01T00:00:01.000000000Z stdout F one\n2026-01-01T00:00:02.000000000Z stdout P last\n";
        let lines = select_lines(content, &LogSelection::default());
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "last"]);
    }
}
