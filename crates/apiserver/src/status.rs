//! API errors and their `Status` bodies.
//!
//! Every failure the server returns is a `meta/v1` `Status` with the same HTTP code in
//! `code`, because kubectl prints `Error from server (<reason>): <message>` from it and
//! acts on `reason` (for example it retries `apply` on `Conflict`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_api::resources::ResourceInfo;
use serde_json::{Value, json};

/// A field-level cause inside an `Invalid` or `BadRequest` status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// A request failure, rendered as a `Status` object.
///
/// `resource` fields hold the group-qualified plural (`deployments.apps`), which is how the
/// reference server names a resource in messages.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, group: String, plural: String, name: String },
    #[error("the server could not find the requested resource")]
    PathNotFound,
    /// A 404 whose message comes from elsewhere, such as a node agent that does not run
    /// the requested container.
    #[error("{message}")]
    NotFoundMessage { message: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, group: String, plural: String, name: String },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again"
    )]
    Modified { resource: String, group: String, plural: String, name: String },
    /// A 409 with a message of its own, such as a precondition or binding conflict.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict { resource: String, group: String, plural: String, name: String, message: String },
    #[error("{message}")]
    Invalid {
        group: String,
        kind: String,
        name: String,
        message: String,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{message}")]
    Forbidden { message: String },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error(
        "the provided continue parameter is too old to display a consistent list result; \
         start a new list without the continue parameter"
    )]
    ExpiredContinue,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("{message}")]
    Timeout { message: String },
    #[error("{message}")]
    ServiceUnavailable { message: String },
    #[error("Internal error occurred: {message}")]
    Internal { message: String },
}

/// Returns the group-qualified plural used in messages: `deployments.apps`, or `pods` for core.
pub fn qualified(resource: &ResourceInfo) -> String {
    if resource.group.is_empty() {
        resource.plural.to_string()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

impl ApiError {
    pub fn not_found(resource: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound {
            resource: qualified(resource),
            group: resource.group.to_string(),
            plural: resource.plural.to_string(),
            name: name.to_string(),
        }
    }

    pub fn already_exists(resource: &ResourceInfo, name: &str) -> Self {
        ApiError::AlreadyExists {
            resource: qualified(resource),
            group: resource.group.to_string(),
            plural: resource.plural.to_string(),
            name: name.to_string(),
        }
    }

    pub fn modified(resource: &ResourceInfo, name: &str) -> Self {
        ApiError::Modified {
            resource: qualified(resource),
            group: resource.group.to_string(),
            plural: resource.plural.to_string(),
            name: name.to_string(),
        }
    }

    pub fn conflict(resource: &ResourceInfo, name: &str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            resource: qualified(resource),
            group: resource.group.to_string(),
            plural: resource.plural.to_string(),
            name: name.to_string(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into() }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::Internal { message: message.to_string() }
    }

    /// Returns the HTTP status code and the `reason` of the Status.
    pub fn code_and_reason(&self) -> (u16, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound | ApiError::NotFoundMessage { .. } => {
                (404, "NotFound")
            }
            ApiError::AlreadyExists { .. } => (409, "AlreadyExists"),
            ApiError::Modified { .. } | ApiError::Conflict { .. } => (409, "Conflict"),
            ApiError::Invalid { .. } => (422, "Invalid"),
            ApiError::BadRequest { .. } => (400, "BadRequest"),
            ApiError::Forbidden { .. } => (403, "Forbidden"),
            ApiError::Unauthorized => (401, "Unauthorized"),
            ApiError::Expired { .. } | ApiError::ExpiredContinue => (410, "Expired"),
            ApiError::MethodNotAllowed => (405, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType { .. } => (415, "UnsupportedMediaType"),
            ApiError::Timeout { .. } => (504, "Timeout"),
            ApiError::ServiceUnavailable { .. } => (503, "ServiceUnavailable"),
            ApiError::Internal { .. } => (500, "InternalError"),
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::NotFound { group, plural, name, .. }
            | ApiError::AlreadyExists { group, plural, name, .. }
            | ApiError::Modified { group, plural, name, .. }
            | ApiError::Conflict { group, plural, name, .. } => {
                Some(json!({"name": name, "group": group, "kind": plural}))
            }
            ApiError::Invalid { group, kind, name, causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                Some(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
            }
            ApiError::Internal { message } => {
                Some(json!({"causes": [{"message": message}]}))
            }
            _ => None,
        }
    }

    /// Renders the `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code,
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }
}

impl From<capstan_store::StoreError> for ApiError {
    fn from(error: capstan_store::StoreError) -> Self {
        use capstan_store::StoreError;
        match error {
            StoreError::Expired { requested, oldest } => ApiError::Expired { requested, oldest },
            StoreError::FutureRevision { requested, current } => ApiError::Timeout {
                message: format!(
                    "Too large resource version: {requested}, current: {current}"
                ),
            },
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_and_reason();
        if code >= 500 {
            tracing::error!(error = %self, "request failed");
        }
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.to_status())).into_response()
    }
}

/// A `Status` with `status: Success`, as DELETE returns when it has no object to show.
pub fn success(resource: &ResourceInfo, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "group": resource.group, "kind": resource.plural});
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceInfo {
        capstan_api::resources::lookup("apps", "v1", "deployments").expect("deployments")
    }

    #[test]
    fn not_found_names_group_and_plural() {
        let status = ApiError::not_found(deployments(), "web").to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["details"]["kind"], "deployments");
        assert_eq!(status["details"]["group"], "apps");
    }

    #[test]
    fn modified_message_matches_reference() {
        let status = ApiError::modified(deployments(), "web").to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(
            status["message"],
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been \
             modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let error = ApiError::Invalid {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            message: "Deployment.apps \"web\" is invalid".into(),
            causes: vec![Cause {
                reason: "FieldValueInvalid".into(),
                message: "must be greater than or equal to 0".into(),
                field: "spec.replicas".into(),
            }],
        };
        let status = error.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");
    }

    #[test]
    fn core_resource_has_no_group_suffix() {
        let pods = capstan_api::resources::lookup("", "v1", "pods").expect("pods");
        assert_eq!(qualified(pods), "pods");
    }
}
