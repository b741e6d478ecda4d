//! The pod-template hash that names a Deployment's ReplicaSets (`<deployment>-<hash>`)
//! and labels their pods (`pod-template-hash=<hash>`).
//!
//! Kubernetes hashes the Go struct dump of the template, which no other language can
//! reproduce, so capstan hashes the template's JSON instead. Like Kubernetes it uses
//! 32-bit FNV-1a, mixes in `status.collisionCount` as 8 little-endian bytes, and
//! renders the decimal digits of the hash through the alphabet
//! `bcdfghjklmnpqrstvwxz2456789`, so names have the familiar shape.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Label that carries the template hash on ReplicaSets, their selectors and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Characters Kubernetes uses for generated names: no vowels, so no words, and no
/// characters that look alike (0/o, 1/l, 3/e).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv32a(hash: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(hash, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(FNV_PRIME))
}

/// Computes the template hash. The same template and collision count always give
/// the same hash, across processes and releases of capstan.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Struct fields serialize in declaration order and maps are sorted, so the JSON is
    // canonical. Serializing plain data to a Vec cannot fail.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(FNV_OFFSET, &json);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&count.cast_unsigned().to_le_bytes());
        hash = fnv32a(hash, &bytes);
    }
    safe_encode(&hash.to_string())
}

/// Maps each character through the safe alphabet, as Kubernetes' `SafeEncodeString`.
fn safe_encode(text: &str) -> String {
    text.bytes().map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()])).collect()
}

/// Returns a copy of `labels` with the hash label set.
pub fn labels_with_hash(labels: Option<&BTreeMap<String, String>>, hash: &str) -> BTreeMap<String, String> {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.to_string(), hash.to_string());
    labels
}

/// Returns a copy of the selector that also requires the hash label.
pub fn selector_with_hash(selector: &LabelSelector, hash: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels_with_hash(selector.match_labels.as_ref(), hash)),
        match_expressions: selector.match_expressions.clone(),
    }
}

/// Returns a copy of the Deployment template with the hash label added, which is
/// exactly what the ReplicaSet template must contain (`kubectl rollout undo` strips
/// the label and compares the rest).
pub fn template_with_hash(template: &PodTemplateSpec, hash: &str) -> PodTemplateSpec {
    let mut copy = template.clone();
    let metadata = copy.metadata.get_or_insert_with(Default::default);
    metadata.labels = Some(labels_with_hash(metadata.labels.as_ref(), hash));
    copy
}

/// Returns whether two templates are equal once the hash label is removed. Missing
/// and empty label or annotation maps count as equal, as in Kubernetes.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut copy = template.clone();
    if let Some(metadata) = copy.metadata.as_mut() {
        if let Some(labels) = metadata.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
        }
        if metadata.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            metadata.labels = None;
        }
        if metadata.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            metadata.annotations = None;
        }
    }
    if copy.metadata.as_ref().is_some_and(|m| *m == Default::default()) {
        copy.metadata = None;
    }
    copy
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Container::default() }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn fnv32a_matches_reference_vectors() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(fnv32a(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv32a(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encode_uses_alphabet() {
        // '0' is byte 48, 48 % 27 = 21 → '4'; '9' is 57, 57 % 27 = 3 → 'f'.
        assert_eq!(safe_encode("09"), "4f");
    }

    #[test]
    fn hash_is_stable_and_template_sensitive() {
        let first = compute_hash(&template("host"), None);
        assert_eq!(first, compute_hash(&template("host"), None));
        assert_ne!(first, compute_hash(&template("nginx"), None));
        assert_ne!(first, compute_hash(&template("host"), Some(1)));
        assert!(first.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "hash {first}");
        assert!(!first.is_empty(), "hash {first}");
        assert!(first.len() <= 10, "hash {first}");
    }

    #[test]
    fn hash_is_pinned() {
        // Changing this value renames every ReplicaSet on upgrade, which starts a
        // rollout of every Deployment. Update it only on purpose.
        let empty = PodTemplateSpec::default();
        let json = serde_json::to_vec(&empty).expect("serializes");
        assert_eq!(json, b"{}");
        assert_eq!(compute_hash(&empty, None), safe_encode(&fnv32a(FNV_OFFSET, b"{}").to_string()));
    }

    #[test]
    fn equality_ignores_hash_label() {
        let with_hash = template_with_hash(&template("host"), "abc");
        assert_eq!(with_hash.metadata.as_ref().and_then(|m| m.labels.as_ref()).map(BTreeMap::len), Some(2));
        assert!(equal_ignoring_hash(&with_hash, &template("host")));
        assert!(!equal_ignoring_hash(&with_hash, &template("nginx")));
        let mut bare = PodTemplateSpec::default();
        assert!(equal_ignoring_hash(&template_with_hash(&bare, "x"), &bare));
        bare.metadata = Some(ObjectMeta { annotations: Some(BTreeMap::new()), ..ObjectMeta::default() });
        assert!(equal_ignoring_hash(&bare, &PodTemplateSpec::default()));
    }
}
