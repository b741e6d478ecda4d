//! Subresources with their own request and response types: `scale`, `binding`,
//! `eviction`, `log`, and the streams `exec`, `attach` and `portforward` that the node
//! agent serves.
//! The `status` subresource shares the main handlers (see `update::merge_server_fields`).

pub mod binding;
pub mod eviction;
pub mod log;
mod node_agent;
pub mod scale;
pub mod stream;
mod upgrade;
