//! Decoding of `application/vnd.kubernetes.protobuf` request bodies into JSON.
//!
//! client-go 1.32 and later, and so kubectl 1.32 and later, send protobuf for the
//! objects of its typed clients (`kubectl create configmap`, `kubectl run`, evictions).
//! The body is the magic `k8s\0` followed by a `runtime.Unknown` message that carries
//! the type and the object's own message. Only the request side is needed: clients pick
//! the response decoder from the response Content-Type, and responses are JSON.

mod schema;

use base64::Engine;
use serde_json::{Map, Value, json};

use schema::{Field, Ty};

/// Prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";
/// Nesting limit, far above the depth of any served kind, to bound recursion on hostile input.
const MAX_DEPTH: usize = 32;

/// A protobuf body that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic number")]
    MissingMagic,
    #[error("the protobuf body is truncated or malformed at byte {offset}")]
    Malformed { offset: usize },
    #[error("protobuf bodies of {api_version} {kind} are not supported; send the object as application/json")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("protobuf field {number} of {message} is not supported; send the object as application/json")]
    UnsupportedField { message: String, number: u64 },
    #[error("protobuf field {field} of {message} has wire type {wire_type}, which does not match its type")]
    WrongWireType { message: String, field: String, wire_type: u64 },
}

/// Decodes a Kubernetes protobuf body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::MissingMagic)?;
    let mut type_meta = Map::new();
    let mut raw: &[u8] = &[];
    let mut reader = Reader { buf: envelope, pos: 0 };
    while let Some((number, wire_type)) = reader.key()? {
        match (number, wire_type) {
            (1, 2) => type_meta = decode_message("TypeMeta", reader.bytes()?, 0)?,
            (2, 2) => raw = reader.bytes()?,
            _ => reader.skip(wire_type)?,
        }
    }
    let api_version = type_meta.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    let kind = type_meta.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(message) = schema::root(&api_version, &kind) else {
        return Err(ProtobufError::UnsupportedKind { api_version, kind });
    };
    let mut object = decode_message(message, raw, 0)?;
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    Ok(Value::Object(object))
}

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self) -> ProtobufError {
        ProtobufError::Malformed { offset: self.pos }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or_else(|| self.malformed())?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed())
    }

    /// Reads the next field key as (field number, wire type), or None at the end.
    fn key(&mut self) -> Result<Option<(u64, u64)>, ProtobufError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, key & 7)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(self.varint()?).map_err(|_| self.malformed())?;
        let end = self.pos.checked_add(len).filter(|end| *end <= self.buf.len()).ok_or_else(|| self.malformed())?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn skip(&mut self, wire_type: u64) -> Result<(), ProtobufError> {
        let width = match wire_type {
            0 => return self.varint().map(|_| ()),
            1 => 8,
            2 => return self.bytes().map(|_| ()),
            5 => 4,
            _ => return Err(self.malformed()),
        };
        if self.pos + width > self.buf.len() {
            return Err(self.malformed());
        }
        self.pos += width;
        Ok(())
    }
}

fn decode_message(message: &str, bytes: &[u8], depth: usize) -> Result<Map<String, Value>, ProtobufError> {
    let fields = schema::fields(message).ok_or_else(|| ProtobufError::UnsupportedField { message: message.into(), number: 0 })?;
    if depth > MAX_DEPTH {
        return Err(ProtobufError::Malformed { offset: 0 });
    }
    let mut object = Map::new();
    let mut reader = Reader { buf: bytes, pos: 0 };
    while let Some((number, wire_type)) = reader.key()? {
        let field = fields
            .iter()
            .find(|f| f.number == number)
            .ok_or_else(|| ProtobufError::UnsupportedField { message: message.into(), number })?;
        let value = decode_field(message, field, wire_type, &mut reader, depth)?;
        let Some(value) = value else { continue };
        if field.repeated {
            let list = object.entry(field.name).or_insert_with(|| json!([]));
            if let Some(items) = list.as_array_mut() {
                items.push(value);
            }
        } else if let (Some(Value::Object(existing)), Value::Object(entries)) = (object.get_mut(field.name), &value) {
            // map entries arrive one field occurrence each
            existing.extend(entries.clone());
        } else {
            object.insert(field.name.into(), value);
        }
    }
    Ok(object)
}

/// Decodes one occurrence of `field`. Returns None for a zero value of a non-pointer
/// scalar, which the JSON form leaves out, and for skipped fields.
fn decode_field(
    message: &str,
    field: &Field,
    wire_type: u64,
    reader: &mut Reader<'_>,
    depth: usize,
) -> Result<Option<Value>, ProtobufError> {
    let expected = match field.ty {
        Ty::Int | Ty::Bool => 0,
        _ => 2,
    };
    if wire_type != expected {
        return Err(ProtobufError::WrongWireType { message: message.into(), field: field.name.into(), wire_type });
    }
    let keep_zero = field.pointer || field.repeated;
    let value = match field.ty {
        Ty::Int => {
            // int32 and int64 both sign-extend negative values to 64 bits
            let value = reader.varint()? as i64;
            (keep_zero || value != 0).then(|| json!(value))
        }
        Ty::Bool => {
            let value = reader.varint()? != 0;
            (keep_zero || value).then(|| json!(value))
        }
        Ty::Str => {
            let text = utf8(reader.bytes()?, reader)?;
            (keep_zero || !text.is_empty()).then(|| json!(text))
        }
        Ty::Msg(name) => Some(Value::Object(decode_message(name, reader.bytes()?, depth + 1)?)),
        Ty::Time => decode_time(reader.bytes()?)?,
        Ty::IntOrString => Some(decode_int_or_string(reader.bytes()?)?),
        Ty::MapStr | Ty::MapBytes | Ty::MapQuantity => Some(decode_map_entry(field.ty, reader.bytes()?)?),
        Ty::Skip => {
            reader.bytes()?;
            None
        }
    };
    Ok(value)
}

fn utf8(bytes: &[u8], reader: &Reader<'_>) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| reader.malformed())
}

/// Decodes `metav1.Time`; an empty message is the zero time, which JSON renders as null.
fn decode_time(bytes: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let mut reader = Reader { buf: bytes, pos: 0 };
    let mut seconds = 0i64;
    while let Some((number, wire_type)) = reader.key()? {
        match (number, wire_type) {
            (1, 0) => seconds = reader.varint()? as i64,
            _ => reader.skip(wire_type)?,
        }
    }
    if bytes.is_empty() {
        return Ok(None);
    }
    let time = jiff::Timestamp::from_second(seconds).map_err(|_| ProtobufError::Malformed { offset: 0 })?;
    Ok(Some(json!(time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

fn decode_quantity(bytes: &[u8]) -> Result<String, ProtobufError> {
    let mut reader = Reader { buf: bytes, pos: 0 };
    let mut text = String::new();
    while let Some((number, wire_type)) = reader.key()? {
        match (number, wire_type) {
            (1, 2) => text = utf8(reader.bytes()?, &reader)?,
            _ => reader.skip(wire_type)?,
        }
    }
    Ok(text)
}

/// Decodes `intstr.IntOrString`: type 0 with `intVal`, type 1 with `strVal`.
fn decode_int_or_string(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader { buf: bytes, pos: 0 };
    let (mut is_string, mut number, mut text) = (false, 0i64, String::new());
    while let Some((field, wire_type)) = reader.key()? {
        match (field, wire_type) {
            (1, 0) => is_string = reader.varint()? == 1,
            (2, 0) => number = reader.varint()? as i64,
            (3, 2) => text = utf8(reader.bytes()?, &reader)?,
            _ => reader.skip(wire_type)?,
        }
    }
    Ok(if is_string { json!(text) } else { json!(number) })
}

/// Decodes one map entry (key 1, value 2) into a one-key object.
fn decode_map_entry(ty: Ty, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader { buf: bytes, pos: 0 };
    let (mut key, mut value) = (String::new(), Value::Null);
    while let Some((field, wire_type)) = reader.key()? {
        match (field, wire_type) {
            (1, 2) => key = utf8(reader.bytes()?, &reader)?,
            (2, 2) => {
                let raw = reader.bytes()?;
                value = match ty {
                    Ty::MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    Ty::MapQuantity => json!(decode_quantity(raw)?),
                    _ => json!(utf8(raw, &reader)?),
                };
            }
            _ => reader.skip(wire_type)?,
        }
    }
    if value.is_null() {
        value = if ty == Ty::MapQuantity { json!("0") } else { json!("") };
    }
    let mut entry = Map::new();
    entry.insert(key, value);
    Ok(Value::Object(entry))
}

#[cfg(test)]
mod tests;
