//! The Kubernetes remote-command channel protocol (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io`) that `kubectl exec` speaks over WebSocket.
//!
//! Every binary message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the
//! final `Status`, 4 terminal resize. Version 5 adds the message `[255, channel]`, which
//! closes one channel, so that a client can signal the end of its stdin.

use serde_json::{Value, json};

pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// Subprotocols this server accepts, the preferred first.
pub const PROTOCOLS: [&str; 2] = [PROTOCOL_V5, PROTOCOL_V4];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;
/// First byte of a v5 close message; the second byte names the closed channel.
pub const CLOSE: u8 = 255;

/// A message a client sent, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Stdin(&'a [u8]),
    /// The client reached the end of its input on that channel.
    Close(u8),
    Resize { width: u16, height: u16 },
}

/// A client message that does not follow the protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    #[error("empty message: a channel byte is required")]
    Empty,
    #[error("a close message must name one channel, got {length} payload bytes")]
    InvalidClose { length: usize },
    #[error("invalid resize message {text:?}: expected {{\"Width\":W,\"Height\":H}}")]
    InvalidResize { text: String },
    #[error("channel {channel} cannot carry data from the client")]
    UnexpectedChannel { channel: u8 },
}

/// Prefixes `payload` with its channel byte.
pub fn encode(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(payload);
    frame
}

/// Decodes one binary message from the client.
pub fn decode(message: &[u8]) -> Result<ClientFrame<'_>, ChannelError> {
    let (&channel, payload) = message.split_first().ok_or(ChannelError::Empty)?;
    match channel {
        STDIN => Ok(ClientFrame::Stdin(payload)),
        RESIZE => parse_resize(payload),
        CLOSE => match payload {
            [closed] => Ok(ClientFrame::Close(*closed)),
            _ => Err(ChannelError::InvalidClose {
                length: payload.len(),
            }),
        },
        other => Err(ChannelError::UnexpectedChannel { channel: other }),
    }
}

fn parse_resize(payload: &[u8]) -> Result<ClientFrame<'_>, ChannelError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let size: Size = serde_json::from_slice(payload).map_err(|_| ChannelError::InvalidResize {
        text: String::from_utf8_lossy(payload).into_owned(),
    })?;
    Ok(ClientFrame::Resize {
        width: size.width,
        height: size.height,
    })
}

/// Builds the `Status` that ends a session: `Success` for exit code 0, otherwise the
/// `NonZeroExitCode` failure from which kubectl takes its own exit code.
pub fn exit_status(command: &[String], exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    let message = format!(
        "command terminated with non-zero exit code: error executing command [{}], exit code {exit_code}",
        command.join(" ")
    );
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]},
    })
}

/// Builds the `Status` for a session that failed for another reason than the command's
/// exit code; kubectl prints `message` and exits with 1.
pub fn failure_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_prefixes_channel() {
        assert_eq!(encode(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(encode(STATUS, b""), vec![3]);
    }

    #[test]
    fn decode_client_frames() {
        assert_eq!(decode(&[0, b'a', b'b']), Ok(ClientFrame::Stdin(b"ab")));
        assert_eq!(decode(&[0]), Ok(ClientFrame::Stdin(b"")));
        assert_eq!(decode(&[255, 0]), Ok(ClientFrame::Close(STDIN)));
        let resize = encode(RESIZE, br#"{"Width":80,"Height":24}"#);
        assert_eq!(decode(&resize), Ok(ClientFrame::Resize { width: 80, height: 24 }));
    }

    #[test]
    fn decode_rejects_bad_frames() {
        assert_eq!(decode(&[]), Err(ChannelError::Empty));
        assert_eq!(decode(&[255]), Err(ChannelError::InvalidClose { length: 0 }));
        assert_eq!(decode(&[1, b'x']), Err(ChannelError::UnexpectedChannel { channel: 1 }));
        let bad = encode(RESIZE, b"{\"Width\":-1}");
        assert!(matches!(decode(&bad), Err(ChannelError::InvalidResize { .. })));
    }

    #[test]
    fn success_status() {
        let status = exit_status(&["true".to_string()], 0);
        assert_eq!(status, json!({"metadata": {}, "status": "Success"}));
    }

    #[test]
    fn nonzero_exit_status() {
        let command: Vec<String> = ["sh", "-c", "exit 3"].map(String::from).to_vec();
        let status = exit_status(&command, 3);
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(
            status["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }

    #[test]
    fn other_failures_carry_message() {
        let status = failure_status("exec is not supported by the cri runtime");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["message"], "exec is not supported by the cri runtime");
        assert!(status.get("details").is_none());
    }
}
