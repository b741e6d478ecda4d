//! The Kubernetes object model as capstan serves it: the resource table, validation,
//! defaulting, selectors, quantities and patches. The types themselves come from
//! k8s-openapi; this crate adds the server-side rules around them.
//!
//! Start with [`resources`], the table that routing, discovery and storage derive from.

pub mod events;
pub mod quantity;
pub mod resources;
pub mod patch;
pub mod defaults;
pub mod meta;
pub mod selector;
pub mod strict;
pub mod validation;
pub mod table;
