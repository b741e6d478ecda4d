//! Builders for core/v1 Events, the records `kubectl describe` shows under "Events".

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

/// `type` of an Event that reports normal progress.
pub const NORMAL: &str = "Normal";
/// `type` of an Event that reports a problem.
pub const WARNING: &str = "Warning";

/// Builds an Event about `object`, named like the reference server names them
/// (`<object>.<unique suffix>`), in the object's namespace (or `default` for
/// cluster-scoped objects).
pub fn new_event(
    object: &ObjectReference,
    event_type: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> Event {
    let now = jiff::Timestamp::now();
    let namespace = object.namespace.clone().unwrap_or_else(|| "default".to_string());
    let object_name = object.name.clone().unwrap_or_default();
    let suffix = format!("{:x}", now.as_nanosecond());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{object_name}.{suffix}")),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: object.clone(),
        type_: Some(event_type.to_string()),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        source: Some(EventSource { component: Some(component.to_string()), host: None }),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(component.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        action: Some(reason.to_string()),
        ..Event::default()
    }
}

/// Builds the reference to an object from its kind, apiVersion and metadata.
pub fn object_reference(
    api_version: &str,
    kind: &str,
    metadata: &ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        uid: metadata.uid.clone(),
        resource_version: metadata.resource_version.clone(),
        field_path: None,
    }
}

/// How many distinct events an [`EventCounter`] remembers before it starts afresh.
const COUNTER_CAPACITY: usize = 4096;

/// What to write for one occurrence of an event.
#[derive(Debug)]
pub enum EventWrite {
    /// The first occurrence: create this Event.
    Create(Event),
    /// A repeat: merge-patch the stored Event `namespace/name` with `patch`, which raises
    /// its `count` and moves its `lastTimestamp`.
    Update { namespace: String, name: String, patch: serde_json::Value },
}

/// Folds repeats of one event (same object, type, reason, message and component) into one
/// stored Event whose `count` grows, so `kubectl describe` shows "x5 over 2m" instead of
/// five rows, as the reference components' event recorders do.
#[derive(Debug, Default)]
pub struct EventCounter {
    seen: std::sync::Mutex<std::collections::HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
}

impl EventCounter {
    /// Returns what to write for an event about `object`.
    pub fn record(
        &self,
        object: &ObjectReference,
        event_type: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) -> EventWrite {
        let key = [
            object.uid.as_deref().unwrap_or_default(),
            object.namespace.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default(),
            event_type,
            reason,
            message,
            component,
        ]
        .join("\u{0}");
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = seen.get_mut(&key) {
            entry.count += 1;
            let now = Time(jiff::Timestamp::now());
            return EventWrite::Update {
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
                patch: serde_json::json!({"count": entry.count, "lastTimestamp": now}),
            };
        }
        if seen.len() >= COUNTER_CAPACITY {
            seen.clear();
        }
        let event = new_event(object, event_type, reason, message, component);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        seen.insert(key, Seen { namespace, name, count: 1 });
        EventWrite::Create(event)
    }

    /// Forgets the stored Event `namespace/name` (it could not be updated, for example
    /// because it expired), so the next occurrence creates a new one.
    pub fn forget(&self, namespace: &str, name: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.retain(|_, entry| entry.namespace != namespace || entry.name != name);
    }
}

/// Records an event about `object` through the API, folding repeats with one counter per
/// process. Failures are logged at debug level: an event that cannot be written must not
/// stop the work it reports on.
#[cfg(feature = "client")]
pub async fn record(
    client: &kube::Client,
    object: &ObjectReference,
    event_type: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    use kube::api::{Api, Patch, PatchParams, PostParams};

    static COUNTER: std::sync::LazyLock<EventCounter> = std::sync::LazyLock::new(EventCounter::default);
    let counter = &*COUNTER;
    match counter.record(object, event_type, reason, message, component) {
        EventWrite::Create(event) => {
            let namespace = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, event.reason = reason, "failed to record event");
            }
        }
        EventWrite::Update { namespace, name, patch } => {
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            if let Err(error) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::debug!(%error, event.reason = reason, "failed to update event; creating a new one");
                counter.forget(&namespace, &name);
                let event = new_event(object, event_type, reason, message, component);
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!(%error, event.reason = reason, "failed to record event");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_update_one_event_with_a_growing_count() {
        let metadata = ObjectMeta { name: Some("web-1".into()), namespace: Some("shop".into()), ..ObjectMeta::default() };
        let reference = object_reference("v1", "Pod", &metadata);
        let counter = EventCounter::default();
        let EventWrite::Create(first) = counter.record(&reference, WARNING, "BackOff", "restarting", "agent") else {
            panic!("the first occurrence must create an event");
        };
        let first_name = first.metadata.name.clone().unwrap_or_default();
        for expected in 2..=3 {
            match counter.record(&reference, WARNING, "BackOff", "restarting", "agent") {
                EventWrite::Update { namespace, name, patch } => {
                    assert_eq!((namespace.as_str(), name.as_str()), ("shop", first_name.as_str()));
                    assert_eq!(patch["count"], expected);
                    assert!(patch["lastTimestamp"].is_string());
                }
                EventWrite::Create(_) => panic!("a repeat created a new event"),
            }
        }
        // another message is another event; a forgotten event starts again
        assert!(matches!(counter.record(&reference, WARNING, "BackOff", "other", "agent"), EventWrite::Create(_)));
        counter.forget("shop", &first_name);
        assert!(matches!(counter.record(&reference, WARNING, "BackOff", "restarting", "agent"), EventWrite::Create(_)));
    }

    #[test]
    fn event_names_its_object() {
        let metadata = ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        };
        let reference = object_reference("v1", "Pod", &metadata);
        let event = new_event(&reference, WARNING, "FailedScheduling", "no node fits", "scheduler");
        assert_eq!(event.metadata.namespace.as_deref(), Some("shop"));
        assert!(event.metadata.name.unwrap().starts_with("web-1."));
        assert_eq!(event.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
    }
}
