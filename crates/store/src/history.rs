//! The bounded event history that watches replay and lists at older revisions undo.
//!
//! Both backends keep it in memory only: after a restart the history starts empty at the
//! persisted revision, so a watch or list may start from that revision or later.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::{Event, KeyValue, Revision, StoreError};

/// A ring buffer of the most recent events, one per revision, in revision order.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<Arc<Event>>,
    capacity: usize,
    /// Revision of the latest event pushed, or the start revision when none was.
    last: Revision,
}

impl History {
    /// Creates an empty history that keeps at most `capacity` events and starts after
    /// revision `start`.
    pub(crate) fn new(capacity: usize, start: Revision) -> Self {
        History { events: VecDeque::with_capacity(capacity.min(4096)), capacity, last: start }
    }

    /// Appends the event of the next revision, evicting the oldest event when full.
    ///
    /// Callers push events in revision order with no gaps, because `oldest` and the
    /// replay in `events_after` assume one event per revision.
    pub(crate) fn push(&mut self, event: Arc<Event>) {
        debug_assert_eq!(event.revision(), self.last + 1, "history must grow by one revision");
        self.last = event.revision();
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Revision of the latest event pushed.
    pub(crate) fn last(&self) -> Revision {
        self.last
    }

    /// Returns the oldest revision a watch or list may start from, because every event
    /// after it is kept.
    pub(crate) fn oldest(&self) -> Revision {
        match self.events.front() {
            Some(event) => event.revision() - 1,
            None => self.last,
        }
    }

    /// Returns the kept events with a revision greater than `after`, oldest first, or
    /// `Expired` when some of them were already evicted.
    pub(crate) fn events_after(&self, after: Revision) -> Result<Vec<Arc<Event>>, StoreError> {
        let oldest = self.oldest();
        if after < oldest {
            return Err(StoreError::Expired { requested: after, oldest });
        }

        // Revisions are contiguous, so the position of `after + 1` is a subtraction.
        let skip = (after - oldest) as usize;
        Ok(self.events.iter().skip(skip).cloned().collect())
    }
}

/// Turns `items`, the keys under one prefix at some revision, back into their state at
/// revision `at` by undoing `newer`, the events after `at` in revision order.
///
/// Events for keys outside `prefix` are skipped. Undoing a put restores its previous
/// value or removes a created key, and undoing a delete restores the deleted value.
pub(crate) fn rewind(
    items: &mut BTreeMap<String, KeyValue>,
    prefix: &str,
    at: Revision,
    newer: &[Arc<Event>],
) {
    for event in newer.iter().rev() {
        if event.revision() <= at || !event.key().starts_with(prefix) {
            continue;
        }
        match event.as_ref() {
            Event::Put { kv, prev: Some(prev) } => {
                debug_assert_eq!(kv.key, prev.key);
                items.insert(prev.key.clone(), prev.clone());
            }
            Event::Put { kv, prev: None } => {
                items.remove(&kv.key);
            }
            Event::Delete { prev, .. } => {
                items.insert(prev.key.clone(), prev.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modified,
        }
    }

    fn put(key: &str, value: &str, create: Revision, modified: Revision) -> Arc<Event> {
        Arc::new(Event::Put { kv: kv(key, value, create, modified), prev: None })
    }

    #[test]
    fn ring_evicts_oldest_when_full() {
        let mut history = History::new(3, 0);
        for revision in 1..=5 {
            history.push(put(&format!("/k{revision}"), "v", revision, revision));
        }

        assert_eq!(history.last(), 5);
        assert_eq!(history.oldest(), 2, "events 3..=5 are kept, so a start at 2 is complete");
        let replay: Vec<Revision> =
            history.events_after(2).unwrap().iter().map(|e| e.revision()).collect();
        assert_eq!(replay, vec![3, 4, 5]);
        let tail: Vec<Revision> =
            history.events_after(4).unwrap().iter().map(|e| e.revision()).collect();
        assert_eq!(tail, vec![5]);
        assert!(history.events_after(5).unwrap().is_empty());
    }

    #[test]
    fn events_after_evicted_revision_expire() {
        let mut history = History::new(2, 0);
        for revision in 1..=4 {
            history.push(put("/k", "v", 1, revision));
        }

        assert_eq!(
            history.events_after(1).unwrap_err(),
            StoreError::Expired { requested: 1, oldest: 2 }
        );
    }

    #[test]
    fn empty_history_starts_at_start_revision() {
        let mut history = History::new(0, 41);
        assert_eq!(history.oldest(), 41);
        assert!(history.events_after(41).unwrap().is_empty());
        assert!(matches!(history.events_after(40), Err(StoreError::Expired { oldest: 41, .. })));

        // A zero-capacity history keeps nothing but still tracks the revision.
        history.push(put("/k", "v", 42, 42));
        assert_eq!(history.oldest(), 42);
    }

    #[test]
    fn rewind_undoes_create_update_and_delete() {
        // Revision 1 creates /a/x, 2 creates /a/y, 3 updates /a/x, 4 deletes /a/y,
        // 5 creates /b/z outside the prefix.
        let events = vec![
            put("/a/x", "x1", 1, 1),
            put("/a/y", "y1", 2, 2),
            Arc::new(Event::Put { kv: kv("/a/x", "x2", 1, 3), prev: Some(kv("/a/x", "x1", 1, 1)) }),
            Arc::new(Event::Delete { prev: kv("/a/y", "y1", 2, 2), revision: 4 }),
            put("/b/z", "z1", 5, 5),
        ];
        let current = || BTreeMap::from([("/a/x".to_string(), kv("/a/x", "x2", 1, 3))]);

        let mut at3 = current();
        rewind(&mut at3, "/a/", 3, &events);
        assert_eq!(at3.len(), 2);
        assert_eq!(at3["/a/y"], kv("/a/y", "y1", 2, 2), "the delete at 4 is undone");
        assert_eq!(at3["/a/x"], kv("/a/x", "x2", 1, 3));

        let mut at1 = current();
        rewind(&mut at1, "/a/", 1, &events);
        assert_eq!(at1.into_values().collect::<Vec<_>>(), vec![kv("/a/x", "x1", 1, 1)]);

        let mut at0 = current();
        rewind(&mut at0, "/a/", 0, &events);
        assert!(at0.is_empty(), "nothing existed before revision 1");
    }
}
