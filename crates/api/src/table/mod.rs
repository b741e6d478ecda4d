//! `meta.k8s.io/v1` Table responses, the server-side printing that `kubectl get` shows.
//!
//! Columns, cell formats and the pod status logic follow the reference server's printers
//! (kubernetes `pkg/printers/internalversion/printers.go`). Every cell is computed, including
//! the `-o wide` columns (priority 1): kubectl hides those columns itself.

mod discovery;
mod job;
mod kinds;
mod pod;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;

/// Content of each row's `object`, from the `includeObject` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` with the object's metadata: the default, and what kubectl
    /// needs for `-A`, `--show-labels` and `-L`.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; None for an unknown value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// One column: name, OpenAPI type (`string`, `integer`, `date`), format and priority
/// (0 always shown, 1 only with `-o wide`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub priority: u8,
    pub description: &'static str,
}

pub(crate) const fn column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", priority: 0, description }
}

pub(crate) const fn wide(name: &'static str, description: &'static str) -> Column {
    Column { name, kind: "string", format: "", priority: 1, description }
}

pub(crate) const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name of the object, unique within its namespace.",
};
pub(crate) const AGE: Column = column("Age", "string", "Time since the object was created.");

/// Builds a meta.k8s.io/v1 Table for `objects` (full JSON objects of `resource`'s kind).
pub fn to_table(
    resource: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    with_column_definitions: bool,
    resource_version: &str,
) -> Value {
    to_table_at(resource, objects, include, with_column_definitions, resource_version, Timestamp::now())
}

pub(crate) fn to_table_at(
    resource: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    with_column_definitions: bool,
    resource_version: &str,
    now: Timestamp,
) -> Value {
    let printer = kinds::printer(resource.group, resource.kind);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": (printer.cells)(object, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(object),
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    let columns: Vec<Value> = if with_column_definitions {
        printer.columns.iter().map(column_definition).collect()
    } else {
        Vec::new()
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn column_definition(column: &Column) -> Value {
    json!({
        "name": column.name,
        "type": column.kind,
        "format": column.format,
        "description": column.description,
        "priority": column.priority,
    })
}

fn partial_metadata(object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new()));
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
}

/// Returns the string at a JSON pointer, or "" when it is missing.
pub(crate) fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Returns the integer at a JSON pointer, or 0 when it is missing.
pub(crate) fn integer(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or_default()
}

/// Returns the list at a JSON pointer, or an empty slice.
pub(crate) fn list<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

pub(crate) fn or_none(value: &str) -> String {
    if value.is_empty() { "<none>".to_string() } else { value.to_string() }
}

/// Formats the age of the timestamp at `pointer`, or `<unknown>` when it is missing or invalid.
pub(crate) fn age(object: &Value, pointer: &str, now: Timestamp) -> String {
    match text(object, pointer).parse::<Timestamp>() {
        Ok(then) => human_duration(now.as_second() - then.as_second()),
        Err(_) => "<unknown>".to_string(),
    }
}

/// Formats a duration in seconds the way kubectl's AGE column does: exact at small scales,
/// coarser as it grows (`45s`, `3m2s`, `15m`, `5h3m`, `20h`, `3d4h`, `40d`, `2y5d`).
pub fn human_duration(seconds: i64) -> String {
    // Up to one second in the future counts as now, to tolerate clock skew between machines.
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    let seconds = seconds.max(0);

    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }

    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }

    let days = hours / 24;
    if hours < 24 * 8 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    if days < 365 * 8 {
        return with_remainder(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

fn with_remainder(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 { format!("{major}{major_unit}") } else { format!("{major}{major_unit}{minor}{minor_unit}") }
}

#[cfg(test)]
mod tests;
