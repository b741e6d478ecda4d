//! ACCEPT rules for pod bridges in the host's iptables FORWARD chain, whose policy Docker
//! sets to DROP.
//!
//! NOTE: the rules stay after the bridge is deleted; remove them with `iptables -D
//! FORWARD …` and the same arguments.

use tokio::process::Command;

/// Inserts each rule (the arguments after `-I FORWARD`) unless `iptables -C` finds it.
/// Failures are logged, since pods still reach the node without the rules.
pub async fn accept(bridge: &str, rules: &[&[&str]]) {
    for rule in rules {
        let exists = Command::new("iptables").args(["-C", "FORWARD"]).args(*rule).output().await;
        if exists.as_ref().is_ok_and(|output| output.status.success()) {
            continue;
        }
        match Command::new("iptables").args(["-I", "FORWARD"]).args(*rule).output().await {
            Ok(output) if output.status.success() => {}
            Ok(output) => tracing::warn!(
                bridge,
                stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                "failed to accept forwarded pod traffic; pods may not reach each other"
            ),
            Err(error) => {
                tracing::warn!(bridge, %error, "iptables not found; pods may not reach each other");
                return;
            }
        }
    }
}
