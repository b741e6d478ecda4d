//! The scheduling queue: which pending pod to try next, and when to retry one that did
//! not fit.
//!
//! A pod is in at most one of three places. *Active* pods are tried in arrival order.
//! *Backoff* pods wait until their backoff expires (1 s after the first failed attempt,
//! doubling up to 10 s). *Unschedulable* pods wait for a cluster change (a node or pod
//! event, see [`SchedulingQueue::move_all_to_active`]) and then still honour their
//! backoff. After [`UNSCHEDULABLE_TIMEOUT`] they are retried anyway, which repairs a missed
//! event.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

/// Namespace and name of a pod.
pub type PodKey = (String, String);

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long an unschedulable pod waits for a cluster change before it is retried anyway.
pub const UNSCHEDULABLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct QueueState {
    active: VecDeque<PodKey>,
    /// Pods waiting for their backoff, with the time it ends.
    backoff: HashMap<PodKey, Instant>,
    /// Pods waiting for a cluster change, with the time they were parked.
    unschedulable: HashMap<PodKey, Instant>,
    /// Failed attempts per pod, which set its backoff.
    attempts: HashMap<PodKey, u32>,
}

impl QueueState {
    fn contains(&self, key: &PodKey) -> bool {
        self.active.contains(key) || self.backoff.contains_key(key) || self.unschedulable.contains_key(key)
    }

    fn backoff_end(&self, key: &PodKey, since: Instant) -> Instant {
        let attempts = self.attempts.get(key).copied().unwrap_or(0);
        if attempts == 0 {
            return since;
        }
        let factor = 1u32 << (attempts - 1).min(4);
        since + (INITIAL_BACKOFF * factor).min(MAX_BACKOFF)
    }

    /// Moves every pod whose wait is over to the back of the active list.
    fn promote_due(&mut self, now: Instant) {
        let mut due: Vec<(Instant, PodKey)> = self
            .backoff
            .iter()
            .filter(|(_, end)| **end <= now)
            .map(|(key, end)| (*end, key.clone()))
            .collect();
        due.extend(
            self.unschedulable
                .iter()
                .filter(|(_, parked)| **parked + UNSCHEDULABLE_TIMEOUT <= now)
                .map(|(key, parked)| (*parked, key.clone())),
        );
        due.sort();
        for (_, key) in due {
            self.backoff.remove(&key);
            self.unschedulable.remove(&key);
            self.active.push_back(key);
        }
    }

    /// The next time `promote_due` would move a pod.
    fn next_deadline(&self) -> Option<Instant> {
        let backoff = self.backoff.values().copied();
        let parked = self.unschedulable.values().map(|parked| *parked + UNSCHEDULABLE_TIMEOUT);
        backoff.chain(parked).min()
    }
}

/// A queue of pending pods, shared by the watch loop (which adds) and the scheduling loop
/// (which pops and reports the outcome).
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    state: Mutex<QueueState>,
    changed: Notify,
}

impl SchedulingQueue {
    /// Adds a new or changed pending pod. A pod already waiting in backoff or for a
    /// cluster change keeps waiting out its backoff.
    pub async fn add(&self, key: PodKey) {
        let mut state = self.state.lock().await;
        if state.active.contains(&key) || state.backoff.contains_key(&key) {
            return;
        }
        if state.unschedulable.remove(&key).is_some() {
            let end = state.backoff_end(&key, Instant::now());
            state.backoff.insert(key, end);
        } else {
            state.active.push_back(key);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Forgets a pod that was bound, deleted or handed to another scheduler.
    pub async fn remove(&self, key: &PodKey) {
        let mut state = self.state.lock().await;
        state.active.retain(|queued| queued != key);
        state.backoff.remove(key);
        state.unschedulable.remove(key);
        state.attempts.remove(key);
    }

    /// Parks a pod that fit no node until the cluster changes.
    pub async fn mark_unschedulable(&self, key: PodKey) {
        let mut state = self.state.lock().await;
        *state.attempts.entry(key.clone()).or_default() += 1;
        if !state.contains(&key) {
            state.unschedulable.insert(key, Instant::now());
        }
    }

    /// Retries a pod after its backoff, for failures that a cluster change does not
    /// announce, such as a failed API call.
    pub async fn mark_error(&self, key: PodKey) {
        let mut state = self.state.lock().await;
        *state.attempts.entry(key.clone()).or_default() += 1;
        if !state.contains(&key) {
            let end = state.backoff_end(&key, Instant::now());
            state.backoff.insert(key, end);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Moves every unschedulable pod to backoff, because a node or pod changed and it may
    /// fit now.
    pub async fn move_all_to_active(&self) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let parked: Vec<PodKey> = state.unschedulable.drain().map(|(key, _)| key).collect();
        for key in parked {
            let end = state.backoff_end(&key, now);
            state.backoff.insert(key, end);
        }
        drop(state);
        self.changed.notify_one();
    }

    /// Waits for the next pod to try.
    pub async fn pop(&self) -> PodKey {
        loop {
            let notified = self.changed.notified();
            let deadline = {
                let mut state = self.state.lock().await;
                state.promote_due(Instant::now());
                if let Some(key) = state.active.pop_front() {
                    return key;
                }
                state.next_deadline()
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Counts of active, backoff and unschedulable pods, for logs and tests.
    pub async fn lengths(&self) -> (usize, usize, usize) {
        let state = self.state.lock().await;
        (state.active.len(), state.backoff.len(), state.unschedulable.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PodKey {
        ("default".to_string(), name.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn pops_in_arrival_order() {
        let queue = SchedulingQueue::default();
        queue.add(key("a")).await;
        queue.add(key("b")).await;
        queue.add(key("a")).await;
        assert_eq!(queue.pop().await, key("a"));
        assert_eq!(queue.pop().await, key("b"));
        assert_eq!(queue.lengths().await, (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_waits_for_change() {
        let queue = SchedulingQueue::default();
        queue.mark_unschedulable(key("a")).await;
        let waited = tokio::time::timeout(Duration::from_secs(30), queue.pop()).await;
        assert!(waited.is_err(), "a parked pod must not come back without a change");
        queue.move_all_to_active().await;
        let start = Instant::now();
        assert_eq!(queue.pop().await, key("a"));
        // The first failure sets a backoff of 1 s, counted from the cluster change.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_retries_after_timeout() {
        let queue = SchedulingQueue::default();
        let start = Instant::now();
        queue.mark_unschedulable(key("a")).await;
        assert_eq!(queue.pop().await, key("a"));
        assert_eq!(start.elapsed(), UNSCHEDULABLE_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_ten_seconds() {
        let queue = SchedulingQueue::default();
        let mut waits = Vec::new();
        for _ in 0..6 {
            let start = Instant::now();
            queue.mark_error(key("a")).await;
            assert_eq!(queue.pop().await, key("a"));
            waits.push(start.elapsed().as_secs());
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn remove_resets_backoff() {
        let queue = SchedulingQueue::default();
        queue.mark_error(key("a")).await;
        queue.remove(&key("a")).await;
        assert_eq!(queue.lengths().await, (0, 0, 0));
        let start = Instant::now();
        queue.add(key("a")).await;
        assert_eq!(queue.pop().await, key("a"));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
