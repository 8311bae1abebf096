//! The OnAir control plane ("Usher", after Justin.tv's): every node reports who it is, its load
//! and the channels it holds to a registry (in-process by default, Redis for a cluster); any node,
//! or a standalone `onair usher`, ranks the nodes for each viewer from that registry.
//!
//! - [`node`]: what a node reports.
//! - [`registry`]: where reports live and expire (~3 s after the last one).
//! - [`usher`]: the placement of a viewer (sans-IO).
//! - [`steering`]: the Content Steering manifest (sans-IO).
//! - [`tree`]: a channel's replication tree and the choice of a relay's parent (sans-IO).
//! - [`shrink`]: the tree's shrinking after a cool-down (sans-IO).
//! - [`locality`]: the client's address and region.
//! - [`viewers`]: the one definition of "a viewer".

pub mod locality;
pub mod node;
pub mod registry;
pub mod shrink;
pub mod steering;
pub mod tree;
pub mod usher;
pub mod viewers;

pub use node::{HeldChannel, Load, NodeInfo, NodeReport, Roles};
pub use registry::{Lease, Registry, RegistryError, WarmRequest};
pub use usher::{grow, rank, Arrivals, Decision, Offered, Outcome, Placements, Request, UsherConfig};
