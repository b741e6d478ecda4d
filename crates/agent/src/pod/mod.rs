//! Pod lifecycle: one worker per pod bound to the node.
//!
//! Start with [`worker::PodWorker`]: its `sync` moves a pod one step toward its spec.
//! [`container`] contains the per-container state machine, [`status`] turns both into the
//! API status, and [`start`] and [`stop`] create, probe and tear down containers.

pub mod backoff;
pub mod container;
pub mod dns;
pub mod env;
pub mod manager;
pub mod probe;
mod service_env;
mod start;
pub mod status;
mod stop;
pub mod volumes;
pub mod worker;
