//! Service proxy and cluster DNS for one node.

pub mod model;
pub mod nft;
