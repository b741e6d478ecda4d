use super::*;

/// A minimal protobuf writer for building test bodies.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) -> &mut Self {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn int(&mut self, number: u64, value: i64) -> &mut Self {
        self.varint(number << 3).varint(value as u64)
    }

    fn bytes(&mut self, number: u64, value: &[u8]) -> &mut Self {
        self.varint((number << 3) | 2).varint(value.len() as u64);
        self.0.extend_from_slice(value);
        self
    }

    fn text(&mut self, number: u64, value: &str) -> &mut Self {
        self.bytes(number, value.as_bytes())
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = Writer::default().text(1, api_version).text(2, kind).take();
    let mut body = MAGIC.to_vec();
    body.extend(Writer::default().bytes(1, &type_meta).bytes(2, raw).text(4, "application/vnd.kubernetes.protobuf").take());
    body
}

fn entry(key: &str, value: &str) -> Vec<u8> {
    Writer::default().text(1, key).text(2, value).take()
}

#[test]
fn config_map_decodes_with_maps() {
    // ObjectMeta with a name, an empty generateName and the zero creation time
    let metadata = Writer::default()
        .text(1, "app")
        .text(2, "")
        .bytes(8, &[])
        .bytes(11, &entry("tier", "web"))
        .take();
    let raw = Writer::default()
        .bytes(1, &metadata)
        .bytes(2, &entry("a", "1"))
        .bytes(2, &entry("b", "2"))
        .take();
    let object = decode(&envelope("v1", "ConfigMap", &raw)).expect("decode");
    assert_eq!(
        object,
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app", "labels": {"tier": "web"}},
            "data": {"a": "1", "b": "2"},
        })
    );
}

#[test]
fn pointer_zero_is_kept() {
    let spec = Writer::default().int(1, 0).int(5, 0).take();
    let raw = Writer::default().bytes(2, &spec).take();
    let object = decode(&envelope("apps/v1", "Deployment", &raw)).expect("decode");
    assert_eq!(object["spec"], json!({"replicas": 0}));
}

#[test]
fn negative_int32_sign_extends() {
    let spec = Writer::default().int(1, -1).take();
    let raw = Writer::default().bytes(2, &spec).take();
    let object = decode(&envelope("apps/v1", "Deployment", &raw)).expect("decode");
    assert_eq!(object["spec"]["replicas"], -1);
}

#[test]
fn unknown_field_is_reported() {
    let raw = Writer::default().text(99, "x").take();
    let error = decode(&envelope("v1", "ConfigMap", &raw)).expect_err("unknown field");
    assert_eq!(error, ProtobufError::UnsupportedField { message: "ConfigMap".into(), number: 99 });
}

#[test]
fn unknown_kind_is_reported() {
    let error = decode(&envelope("batch/v1", "CronJob", &[])).expect_err("unknown kind");
    assert!(matches!(error, ProtobufError::UnsupportedKind { .. }));
}

#[test]
fn truncated_body_is_malformed() {
    let mut body = envelope("v1", "ConfigMap", &Writer::default().text(1, "abc").take());
    body.truncate(body.len() - 40);
    assert!(decode(&body).is_err());
    assert_eq!(decode(b"{}"), Err(ProtobufError::MissingMagic));
}
