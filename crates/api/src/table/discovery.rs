//! Columns and cells of `discovery.k8s.io` EndpointSlices, as the reference server prints
//! them: the address type, up to three ports and up to three endpoint addresses.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{AGE, Column, NAME, age, column, list, text};

/// Ports and addresses shown before the cell ends with "+ N more...".
const LISTED: usize = 3;

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    column("AddressType", "string", "Type of the addresses: IPv4, IPv6 or FQDN."),
    column("Ports", "string", "Port numbers of the slice, up to three."),
    column("Endpoints", "string", "Endpoint addresses, up to three."),
    AGE,
];

pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(object, "/ports")
        .iter()
        .map(|port| match port.get("port").and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => "<unset>".to_string(),
        })
        .collect();
    let addresses: Vec<String> = list(object, "/endpoints")
        .iter()
        .flat_map(|endpoint| list(endpoint, "/addresses"))
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    vec![
        json!(text(object, "/metadata/name")),
        json!(text(object, "/addressType")),
        json!(shorten(&ports, "<unset>")),
        json!(shorten(&addresses, "<unset>")),
        json!(age(object, "/metadata/creationTimestamp", now)),
    ]
}

/// Joins the first three items and counts the rest; `empty` stands for no items.
fn shorten(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    if items.len() > LISTED {
        return format!("{} + {} more...", items[..LISTED].join(","), items.len() - LISTED);
    }
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_cells_list_three_addresses() {
        let endpoints: Vec<Value> = (1..=5).map(|i| json!({"addresses": [format!("10.0.0.{i}")]})).collect();
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
                           "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints});
        let row = cells(&slice, Timestamp::UNIX_EPOCH);
        assert_eq!(row[1], "IPv4");
        assert_eq!(row[2], "8080");
        assert_eq!(row[3], "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...");
    }

    #[test]
    fn empty_slice_shows_unset() {
        let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "endpoints": []});
        let row = cells(&slice, Timestamp::UNIX_EPOCH);
        assert_eq!(row[2], "<unset>");
        assert_eq!(row[3], "<unset>");
    }
}
