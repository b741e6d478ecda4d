//! Watch: a chunked stream of JSON events, one per line.
//!
//! The store watch is opened before the response starts, so an expired resource version
//! is an HTTP 410; if the store ends the stream with `Expired` later, the client gets an
//! `ERROR` event carrying the 410 `Status` instead.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use capstan_api::resources::ResourceInfo;
use capstan_api::table::IncludeObject;
use capstan_store::{Event, StoreError, WatchStream};
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::list;
use crate::meta;
use crate::routes::{ApiRequest, Shared};
use crate::rules;
use crate::select::Selectors;
use crate::status::{ApiError, Cause};

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK event.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Bounds of the random timeout of a watch without `timeoutSeconds`, in seconds, as the
/// reference server picks it (its minimum request timeout and twice that).
const DEFAULT_TIMEOUT_RANGE: std::ops::Range<u64> = 1800..3600;
/// Events buffered per watch before the producer waits for the client.
const EVENT_BUFFER: usize = 64;
/// Annotation of the BOOKMARK that ends the initial events of a watch-list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// The event renderer and filter of one watch.
struct Encoder {
    resource: &'static ResourceInfo,
    selectors: Selectors,
    name: Option<String>,
    /// `Some(includeObject)` when the client asked for Table output.
    table: Option<IncludeObject>,
    columns_sent: bool,
}

impl Encoder {
    fn matches(&self, object: &Value) -> bool {
        self.selectors.matches(object) && self.name.as_ref().is_none_or(|n| meta::name(object).as_ref() == Some(n))
    }

    fn line(&mut self, event_type: &str, object: Value) -> Bytes {
        let object = match (&self.table, event_type) {
            (Some(include), "ADDED" | "MODIFIED" | "DELETED") => {
                let rv = meta::resource_version(&object).unwrap_or_default();
                let table = rules::table(self.resource, &[object], *include, !self.columns_sent, &rv);
                self.columns_sent = true;
                table
            }
            _ => object,
        };
        let mut bytes = serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    }

    fn bookmark(&self, revision: u64, initial_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata})
    }

    /// Turns a store event into a watch event, applying the selectors the way the
    /// reference watch cache does: an object that stops matching is sent as DELETED.
    fn convert(&self, event: Event) -> Result<Option<(&'static str, Value)>, ApiError> {
        match event {
            Event::Put { kv, prev } => {
                let object = meta::decode_stored(self.resource, &kv)?;
                let was = match &prev {
                    Some(prev) => self.matches(&meta::decode_stored(self.resource, prev)?),
                    None => false,
                };
                let is = self.matches(&object);
                Ok(match (was, is) {
                    (false, true) => Some(("ADDED", object)),
                    (true, true) => Some(("MODIFIED", object)),
                    (true, false) => Some(("DELETED", object)),
                    (false, false) => None,
                })
            }
            Event::Delete { prev, revision } => {
                let mut object = meta::decode_stored(self.resource, &prev)?;
                meta::stamp(self.resource, &mut object, revision);
                Ok(self.matches(&object).then_some(("DELETED", object)))
            }
        }
    }
}

pub async fn serve(state: &Shared, request: ApiRequest) -> Result<Response, ApiError> {
    let resource = request.target.resource;
    let namespace = request.target.namespace.clone();
    let selectors = Selectors::parse(resource, request.param("labelSelector"), request.param("fieldSelector"))?;
    let send_initial = parse_send_initial(&request)?;
    let timeout = match request.param("timeoutSeconds") {
        Some(text) => Duration::from_secs(
            text.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds \"{text}\"")))?,
        ),
        None => Duration::from_secs(rand::rng().random_range(DEFAULT_TIMEOUT_RANGE)),
    };
    let table = match request.wants_table() {
        true => Some(rules::include_object(request.param("includeObject"))?),
        false => None,
    };
    let mut encoder = Encoder {
        resource,
        selectors,
        name: request.target.name.clone(),
        table,
        columns_sent: false,
    };

    // initial state, then the store watch from the snapshot's revision
    let rv = request.param("resourceVersion");
    let initial = send_initial.unwrap_or(rv.is_none() || rv == Some("0"));
    let (objects, start) = if initial {
        list::snapshot(state, resource, namespace.as_deref(), &encoder.selectors).await?
    } else {
        match rv {
            Some(text) if text != "0" => (Vec::new(), meta::parse_revision(text)?),
            _ => (Vec::new(), state.store.current_revision().await?),
        }
    };
    let stream = state.store.watch(&list::prefix(resource, namespace.as_deref()), start).await?;

    let (sender, receiver) = mpsc::channel::<Result<Bytes, Infallible>>(EVENT_BUFFER);
    let mut initial_lines = Vec::new();
    for object in objects {
        if encoder.name.as_ref().is_none_or(|n| meta::name(&object).as_ref() == Some(n)) {
            initial_lines.push(encoder.line("ADDED", object));
        }
    }
    if send_initial == Some(true) {
        let bookmark = encoder.bookmark(start, true);
        initial_lines.push(encoder.line("BOOKMARK", bookmark));
    }
    let bookmarks = request.flag("allowWatchBookmarks");
    tracing::debug!(resource = resource.plural, start, ?timeout, "watch started");
    tokio::spawn(async move {
        for line in initial_lines {
            if sender.send(Ok(line)).await.is_err() {
                return;
            }
        }
        pump(encoder, stream, sender, start, timeout, bookmarks).await;
    });

    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(ApiError::internal)
}

fn parse_send_initial(request: &ApiRequest) -> Result<Option<bool>, ApiError> {
    let value = match request.param("sendInitialEvents") {
        None => return Ok(None),
        Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(ApiError::bad_request(format!("invalid sendInitialEvents \"{other}\""))),
    };
    if request.param("resourceVersionMatch") != Some("NotOlderThan") {
        let message = "sendInitialEvents requires resourceVersionMatch=NotOlderThan".to_string();
        return Err(ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            name: String::new(),
            message: format!("ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: {message}"),
            causes: vec![Cause { reason: "FieldValueForbidden".into(), message, field: "resourceVersionMatch".into() }],
        });
    }
    Ok(Some(value))
}

/// Forwards store events to the client until the timeout, the end of the store stream or
/// the client's disconnect.
async fn pump(
    mut encoder: Encoder,
    mut stream: WatchStream,
    sender: mpsc::Sender<Result<Bytes, Infallible>>,
    start: u64,
    timeout: Duration,
    bookmarks: bool,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
    let mut last_revision = start;
    loop {
        let line = tokio::select! {
            _ = &mut deadline => break,
            _ = sender.closed() => break,
            _ = ticker.tick(), if bookmarks => {
                let bookmark = encoder.bookmark(last_revision, false);
                encoder.line("BOOKMARK", bookmark)
            }
            next = stream.next() => match next {
                None => break,
                Some(Ok(event)) => {
                    last_revision = event.revision();
                    match encoder.convert(event) {
                        Ok(Some((event_type, object))) => encoder.line(event_type, object),
                        Ok(None) => continue,
                        Err(error) => encoder.line("ERROR", error.to_status()),
                    }
                }
                Some(Err(error)) => {
                    let status = match error {
                        StoreError::Expired { requested, oldest } => ApiError::Expired { requested, oldest },
                        other => ApiError::internal(other),
                    };
                    tracing::debug!(error = %status, "watch ended by the store");
                    let _ = sender.send(Ok(encoder.line("ERROR", status.to_status()))).await;
                    break;
                }
            },
        };
        if sender.send(Ok(line)).await.is_err() {
            break;
        }
    }
}
