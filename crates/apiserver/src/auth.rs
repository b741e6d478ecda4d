//! Authentication by client certificate, and the authorization hook.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use capstan_pki::ClientIdentity;

use crate::routes::Target;
use crate::status::ApiError;

/// Paths served without a client certificate, as the reference server serves them to
/// `system:anonymous`.
const PUBLIC_PATHS: &[&str] = &["/version", "/healthz", "/livez", "/readyz"];

/// An API verb, as RBAC rules name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Rejects requests without a verified client certificate, except on public paths.
///
/// The TLS layer stores `Option<ClientIdentity>` in the request extensions; rustls has
/// already checked that the certificate chains to the cluster CA.
pub async fn authenticate(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let public = PUBLIC_PATHS.iter().any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let identified = matches!(request.extensions().get::<Option<ClientIdentity>>(), Some(Some(_)));
    if !public && !identified {
        tracing::debug!(path, "rejected a request without a client certificate");
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// Decides whether `user` may perform `verb` on `target`.
///
/// NOTE: every authenticated user is allowed everything until RBAC lands; this is the one
/// place where RBAC rules will be evaluated.
pub fn authorize(user: Option<&ClientIdentity>, verb: Verb, target: &Target) -> Result<(), ApiError> {
    tracing::trace!(
        user = user.map(|u| u.user.as_str()).unwrap_or("system:anonymous"),
        verb = verb.as_str(),
        resource = target.resource.plural,
        "authorized"
    );
    Ok(())
}
