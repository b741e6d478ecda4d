//! Watch fan-out shared by the backends: the event history plus a broadcast channel.
//!
//! Publishing appends to the history and sends on the channel under one lock, and a new
//! watch copies its replay from the history and subscribes under the same lock. A watch
//! therefore receives every event after its start exactly once, because the replay ends
//! where the live events begin.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

use crate::history::{History, rewind};
use crate::{Event, KeyValue, Revision, StoreError, WatchStream};

/// Event history and live fan-out for one store.
pub(crate) struct WatchHub {
    inner: Mutex<HubState>,
    /// The revision of the latest published event, for readers that must wait until the
    /// history has caught up with a committed revision.
    published: watch::Sender<Revision>,
}

struct HubState {
    history: History,
    live: broadcast::Sender<Arc<Event>>,
}

impl WatchHub {
    /// Creates a hub that keeps `history` events and starts after revision `start`.
    ///
    /// The broadcast channel has the same capacity, so a watcher is cut off with `Expired`
    /// once it lags more events behind than the history keeps.
    pub(crate) fn new(history: usize, start: Revision) -> Self {
        let (live, _) = broadcast::channel(history.max(1));
        let (published, _) = watch::channel(start);
        WatchHub {
            inner: Mutex::new(HubState { history: History::new(history, start), live }),
            published,
        }
    }

    /// Records `events` (consecutive revisions, in order) and sends them to the watchers.
    pub(crate) fn publish(&self, events: Vec<Event>) {
        let Some(last) = events.last().map(Event::revision) else {
            return;
        };
        {
            let mut state = self.inner.lock();
            for event in events {
                let event = Arc::new(event);
                state.history.push(event.clone());
                // An error only means that no watcher is subscribed.
                let _ = state.live.send(event);
            }
        }
        self.published.send_replace(last);
    }

    /// Revision of the latest published event.
    pub(crate) fn last(&self) -> Revision {
        self.inner.lock().history.last()
    }

    /// Returns the oldest revision a watch or list may start from.
    pub(crate) fn oldest(&self) -> Revision {
        self.inner.lock().history.oldest()
    }

    /// Waits until the events up to `revision` are published.
    pub(crate) async fn wait_published(&self, revision: Revision) {
        let mut receiver = self.published.subscribe();
        // The sender lives as long as the hub, which the caller borrows, so this cannot fail.
        let _ = receiver.wait_for(|published| *published >= revision).await;
    }

    /// Returns the keys of `current` (the state at revision `current_revision`) as they
    /// were at revision `at`, by undoing the kept events between the two.
    ///
    /// The caller must have waited for `current_revision` to be published.
    pub(crate) fn rewind_to(
        &self,
        mut current: BTreeMap<String, KeyValue>,
        prefix: &str,
        at: Revision,
        current_revision: Revision,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if at > current_revision {
            return Err(StoreError::FutureRevision { requested: at, current: current_revision });
        }
        let mut newer = self.inner.lock().history.events_after(at)?;
        newer.retain(|event| event.revision() <= current_revision);
        rewind(&mut current, prefix, at, &newer);
        Ok(current.into_values().collect())
    }

    /// Starts a watch on keys under `prefix` for events after revision `after`.
    ///
    /// An `after` newer than the latest revision is accepted: the watch then waits for
    /// that revision to pass, as an etcd watch does.
    pub(crate) fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let (replay, receiver) = {
            let state = self.inner.lock();
            let replay = if after >= state.history.last() {
                Vec::new()
            } else {
                state.history.events_after(after)?
            };
            (replay, state.live.subscribe())
        };
        tracing::debug!(
            watch.prefix = prefix,
            watch.after = after,
            replay = replay.len(),
            "watch started"
        );

        let replay: VecDeque<Arc<Event>> =
            replay.into_iter().filter(|event| event.key().starts_with(prefix)).collect();
        let cursor = WatchCursor {
            prefix: prefix.to_string(),
            after,
            seen: after,
            replay,
            receiver,
            done: false,
        };
        Ok(futures::stream::unfold(cursor, WatchCursor::next).boxed())
    }
}

/// The state of one watch stream between items.
struct WatchCursor {
    prefix: String,
    /// Revision of the latest event delivered, or the start revision.
    after: Revision,
    /// Revision of the latest event taken from the live channel, matching or not.
    seen: Revision,
    replay: VecDeque<Arc<Event>>,
    receiver: broadcast::Receiver<Arc<Event>>,
    done: bool,
}

impl WatchCursor {
    async fn next(mut self) -> Option<(Result<Event, StoreError>, Self)> {
        if self.done {
            return None;
        }
        if let Some(event) = self.replay.pop_front() {
            self.after = event.revision();
            return Some((Ok(event.as_ref().clone()), self));
        }
        loop {
            match self.receiver.recv().await {
                Ok(event) => {
                    self.seen = event.revision();
                    // Live events may repeat the tail of the replay, or precede a start
                    // revision that was in the future.
                    if event.revision() <= self.after || !event.key().starts_with(&self.prefix) {
                        continue;
                    }
                    self.after = event.revision();
                    return Some((Ok(event.as_ref().clone()), self));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(watch.prefix = %self.prefix, watch.after = self.after, missed, "watcher fell behind the history");
                    self.done = true;
                    // The channel skipped `missed` events after the last one it returned.
                    let oldest = self.seen.max(self.after) + missed;
                    let error = StoreError::Expired { requested: self.after, oldest };
                    return Some((Err(error), self));
                }
                // The store was dropped: the stream ends.
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, revision: Revision) -> Event {
        let kv = KeyValue {
            key: key.to_string(),
            value: b"v".to_vec(),
            create_revision: revision,
            mod_revision: revision,
        };
        Event::Put { kv, prev: None }
    }

    #[tokio::test]
    async fn watch_replays_then_follows_live() {
        let hub = WatchHub::new(10, 0);
        hub.publish(vec![put("/a/1", 1), put("/b/2", 2), put("/a/3", 3)]);

        let mut stream = hub.watch("/a/", 1).unwrap();
        hub.publish(vec![put("/a/4", 4)]);

        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.revision(), 3, "replay skips /b/ and revision 1");
        let second = stream.next().await.unwrap().unwrap();
        assert_eq!(second.revision(), 4);
    }

    #[tokio::test]
    async fn slow_watcher_gets_expired() {
        let hub = WatchHub::new(4, 0);
        let mut stream = hub.watch("/", 0).unwrap();
        for revision in 1..=10 {
            hub.publish(vec![put("/k", revision)]);
        }

        let item = stream.next().await.unwrap();
        assert!(matches!(item, Err(StoreError::Expired { requested: 0, .. })), "got {item:?}");
        assert!(stream.next().await.is_none(), "the stream ends after Expired");
    }

    #[tokio::test]
    async fn watch_from_future_revision_skips_older_events() {
        let hub = WatchHub::new(10, 0);
        let mut stream = hub.watch("/", 2).unwrap();
        hub.publish(vec![put("/k1", 1), put("/k2", 2), put("/k3", 3)]);

        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(item.revision(), 3);
    }
}
