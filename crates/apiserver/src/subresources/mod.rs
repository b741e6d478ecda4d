//! Subresources with their own request and response types: `scale`, `binding`,
//! `eviction` and `log`.
//! The `status` subresource shares the main handlers (see `update::merge_server_fields`).

pub mod binding;
pub mod eviction;
pub mod log;
pub mod scale;
