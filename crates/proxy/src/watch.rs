//! The proxy's cache of the cluster: reflectors over Services and EndpointSlices whose
//! contents are joined into [`ServiceEntry`] lists and published on a watch channel.
//!
//! Consumers (the data path and the DNS server) always read the newest list whole, so a
//! consumer that falls behind skips intermediate states instead of replaying them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{Notify, watch};

use crate::model::{ServiceEntry, build_services};

/// How long the cache waits after a change for more changes before it publishes, so a
/// rollout that touches many slices at once programs the data path once.
const SETTLE_DELAY: Duration = Duration::from_millis(50);

/// The newest joined view of the cluster's Services.
pub type ServiceView = Arc<Vec<ServiceEntry>>;

/// Watches Services and EndpointSlices in every namespace and publishes the joined view on
/// `sender` after each change. Returns only when a watch stream ends, which the kube
/// watcher does not do on its own: it retries failures with backoff.
pub async fn run_cache(client: Client, sender: watch::Sender<ServiceView>) {
    let changed = Arc::new(Notify::new());
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();

    let service_stream = reflector::reflector(
        service_writer,
        watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff(),
    );
    let slice_stream = reflector::reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff(),
    );
    let drive_services = drive("Service", service_stream, changed.clone());
    let drive_slices = drive("EndpointSlice", slice_stream, changed.clone());
    let publish = publish(services, slices, changed, sender);

    tokio::select! {
        () = drive_services => {}
        () = drive_slices => {}
        () = publish => {}
    }
}

/// Polls a reflector stream so that it fills its store, and wakes the publisher on every
/// event. Watch errors are logged; the watcher retries them with backoff.
async fn drive<S, K>(kind: &'static str, stream: S, changed: Arc<Notify>)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
        }
    }
    tracing::warn!(kind, "watch stream ended");
}

async fn publish(
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    changed: Arc<Notify>,
    sender: watch::Sender<ServiceView>,
) {
    // Publishing before both lists arrived would briefly remove every Service.
    if services.wait_until_ready().await.is_err() || slices.wait_until_ready().await.is_err() {
        return;
    }
    loop {
        let service_list: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let slice_list: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let view = build_services(&service_list, &slice_list);
        sender.send_if_modified(|current| {
            if **current == view {
                return false;
            }
            *current = Arc::new(view);
            true
        });
        changed.notified().await;
        tokio::time::sleep(SETTLE_DELAY).await;
    }
}
