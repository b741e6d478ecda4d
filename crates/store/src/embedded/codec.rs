//! The on-disk layout: the tables and the encoding of a stored value.
//!
//! A value in the items table is a 16-byte header (create revision, then mod revision,
//! both little-endian `u64`) followed by the user's bytes. The meta table stores the
//! current revision under [`REVISION_KEY`], so a delete that empties the store keeps it.

use redb::TableDefinition;

use crate::{KeyValue, Revision, StoreError};

pub(super) const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const REVISION_KEY: &str = "revision";

const HEADER_LEN: usize = 16;

/// Encodes the stored form of `kv`: header and value.
pub(super) fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + kv.value.len());
    bytes.extend_from_slice(&kv.create_revision.to_le_bytes());
    bytes.extend_from_slice(&kv.mod_revision.to_le_bytes());
    bytes.extend_from_slice(&kv.value);
    bytes
}

/// Decodes the stored form of the value of `key`.
pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    if bytes.len() < HEADER_LEN {
        return Err(StoreError::Internal(format!(
            "stored value of key {key} is {} bytes, shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    let (create, rest) = bytes.split_at(8);
    let (modified, value) = rest.split_at(8);
    Ok(KeyValue {
        key: key.to_string(),
        value: value.to_vec(),
        create_revision: read_revision(create),
        mod_revision: read_revision(modified),
    })
}

fn read_revision(bytes: &[u8]) -> Revision {
    let mut array = [0u8; 8];
    array.copy_from_slice(bytes);
    u64::from_le_bytes(array)
}

/// Wraps a redb failure as an internal store error that names the step that failed.
pub(super) fn internal(step: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("{step} failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip() {
        let kv = KeyValue {
            key: "/registry/pods/default/a".into(),
            value: b"{\"kind\":\"Pod\"}".to_vec(),
            create_revision: 7,
            mod_revision: u64::MAX - 1,
        };
        assert_eq!(decode(&kv.key, &encode(&kv)).unwrap(), kv);
    }

    #[test]
    fn decode_rejects_short_value() {
        let error = decode("/k", &[1, 2, 3]).unwrap_err();
        assert!(
            matches!(&error, StoreError::Internal(message) if message.contains("/k")),
            "{error}"
        );
    }
}
