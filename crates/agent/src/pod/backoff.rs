//! CrashLoopBackOff: the delay before a failed container starts again.
//!
//! The schedule follows kubelet's: the first restart is immediate, the next waits `base`,
//! and each later one doubles the wait up to `cap`. A container that ran for
//! [`RESET_AFTER`] before it exited starts the schedule over.

use std::time::Duration;

/// Running time after which a container's back-off starts over.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Back-off state of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// The wait for the next restart; `None` until the container first exits.
    next: Option<Duration>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            next: None,
        }
    }

    /// Returns how long to wait before restarting a container that exited after running
    /// for `ran_for`, and advances the schedule.
    pub fn delay_after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.next = None;
        }
        let delay = self.next.unwrap_or(Duration::ZERO);
        let following = match self.next {
            None => self.base,
            Some(current) => current.saturating_mul(2),
        };
        self.next = Some(following.min(self.cap));
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(10);
    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn schedule_doubles_to_cap() {
        let mut backoff = Backoff::new(BASE, CAP);
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.delay_after_exit(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn long_run_resets_schedule() {
        let mut backoff = Backoff::new(BASE, CAP);
        for _ in 0..5 {
            backoff.delay_after_exit(Duration::from_secs(1));
        }
        assert_eq!(backoff.delay_after_exit(RESET_AFTER), Duration::ZERO);
        assert_eq!(backoff.delay_after_exit(Duration::from_secs(1)), BASE);
    }

    #[test]
    fn short_run_keeps_schedule() {
        let mut backoff = Backoff::new(BASE, CAP);
        backoff.delay_after_exit(Duration::from_secs(1));
        let delay = backoff.delay_after_exit(RESET_AFTER - Duration::from_secs(1));
        assert_eq!(delay, BASE);
    }
}
