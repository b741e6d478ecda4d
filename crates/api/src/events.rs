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

#[cfg(test)]
mod tests {
    use super::*;

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
