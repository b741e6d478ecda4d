//! The node agent: registers its Node, renews its Lease, runs the pods bound to the node
//! through a [`runtime::Runtime`], probes them and reports their status.

pub mod runtime;
