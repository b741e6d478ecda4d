//! Get and list, with selectors, pagination and Table output.

use base64::Engine;
use capstan_api::resources::ResourceInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use crate::rules;
use crate::select::Selectors;
use crate::status::ApiError;

/// Returns the store prefix of a collection: all namespaces, or one.
pub fn prefix(resource: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| resource.namespaced) {
        Some(ns) => format!("{}{ns}/", resource.key_prefix()),
        None => resource.key_prefix(),
    }
}

pub async fn get(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let target = &request.target;
    let resource = target.resource;
    let name = target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    let key = resource.key(target.namespace.as_deref(), name);
    let kv = state.store.get(&key).await?.ok_or_else(|| ApiError::not_found(resource, name))?;
    let object = meta::decode_stored(resource, &kv)?;
    if request.wants_table() {
        let rv = kv.mod_revision.to_string();
        return Ok(Reply::ok(rules::table(resource, &[object], rules::include_object(request.param("includeObject"))?, true, &rv)));
    }
    Ok(Reply::ok(object))
}

/// The position a `continue` token resumes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ContinueToken {
    /// Store revision of the first page; later pages read the same snapshot.
    rv: u64,
    /// The last key returned; the next page starts after it.
    start: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || ApiError::bad_request(format!("invalid continue token \"{text}\""));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

/// Picks the snapshot a list reads from `resourceVersion`, `resourceVersionMatch` and
/// `continue`.
fn list_revision(request: &ApiRequest) -> Result<(Option<u64>, Option<ContinueToken>), ApiError> {
    if let Some(text) = request.param("continue") {
        let token = ContinueToken::decode(text)?;
        return Ok((Some(token.rv), Some(token)));
    }
    let rv = request.param("resourceVersion");
    match request.param("resourceVersionMatch") {
        None | Some("NotOlderThan") => {
            // any snapshot at least this new works, and the current one always qualifies
            if let Some(text) = rv {
                meta::parse_revision(text)?;
            }
            Ok((None, None))
        }
        Some("Exact") => match rv {
            Some(text) if text != "0" => Ok((Some(meta::parse_revision(text)?), None)),
            _ => Err(ApiError::bad_request("resourceVersionMatch=Exact requires a non-zero resourceVersion")),
        },
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid resourceVersionMatch \"{other}\": use Exact or NotOlderThan"
        ))),
    }
}

pub async fn list(state: &Shared, request: &ApiRequest) -> Result<Reply, ApiError> {
    let resource = request.target.resource;
    let selectors = Selectors::parse(resource, request.param("labelSelector"), request.param("fieldSelector"))?;
    let limit = match request.param("limit") {
        Some(text) => text.parse::<usize>().map_err(|_| ApiError::bad_request(format!("invalid limit \"{text}\"")))?,
        None => 0,
    };
    let (at, token) = list_revision(request)?;
    let listed = match state.store.list(&prefix(resource, request.target.namespace.as_deref()), at).await {
        Err(capstan_store::StoreError::Expired { .. }) if token.is_some() => {
            return Err(ApiError::ExpiredContinue);
        }
        other => other?,
    };

    // collect one page of matching objects after the token's key
    let mut items = Vec::new();
    let mut next = None;
    let start = token.as_ref().map(|t| t.start.as_str());
    let mut remaining = listed.items.iter().filter(|kv| start.is_none_or(|s| kv.key.as_str() > s)).peekable();
    while let Some(kv) = remaining.next() {
        let object = meta::decode_stored(resource, kv)?;
        if !selectors.matches(&object) {
            continue;
        }
        items.push(object);
        if limit > 0 && items.len() == limit {
            if remaining.peek().is_some() {
                next = Some(ContinueToken { rv: listed.revision, start: kv.key.clone() });
            }
            break;
        }
    }

    let revision = listed.revision.to_string();
    if request.wants_table() {
        let mut table = rules::table(resource, &items, rules::include_object(request.param("includeObject"))?, true, &revision);
        if let Some(token) = &next {
            table["metadata"]["continue"] = json!(token.encode());
        }
        return Ok(Reply::ok(table));
    }
    let mut metadata = json!({"resourceVersion": revision});
    if let Some(token) = &next {
        metadata["continue"] = json!(token.encode());
    }
    Ok(Reply::ok(json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    })))
}


/// Lists matching objects at the current revision, for the initial events of a watch.
pub async fn snapshot(
    state: &Shared,
    resource: &ResourceInfo,
    namespace: Option<&str>,
    selectors: &Selectors,
) -> Result<(Vec<Value>, u64), ApiError> {
    let listed = state.store.list(&prefix(resource, namespace), None).await?;
    let mut items = Vec::new();
    for kv in &listed.items {
        let object = meta::decode_stored(resource, kv)?;
        if selectors.matches(&object) {
            items.push(object);
        }
    }
    Ok((items, listed.revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_round_trips() {
        let token = ContinueToken { rv: 42, start: "/registry/core/pods/default/web".into() };
        assert_eq!(ContinueToken::decode(&token.encode()).expect("decode"), token);
    }

    #[test]
    fn garbage_continue_token_is_bad_request() {
        let error = ContinueToken::decode("%%%").expect_err("garbage");
        assert_eq!(error.code_and_reason(), (400, "BadRequest"));
    }

    #[test]
    fn namespaced_prefix_ends_with_slash() {
        let pods = capstan_api::resources::lookup("", "v1", "pods").expect("pods");
        assert_eq!(prefix(pods, Some("default")), "/registry/core/pods/default/");
        assert_eq!(prefix(pods, None), "/registry/core/pods/");
    }
}
