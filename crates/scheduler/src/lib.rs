//! capstan's scheduler: places pending pods on nodes.
//!
//! Start with [`run`], then read the stages in the order a pod meets them. [`cluster`]
//! is the watch-fed cache and [`queue`] picks the pod to try next. [`algorithm`] filters
//! nodes with the plugins in [`filter`] and ranks them with those in [`score`]. [`bind`]
//! writes the decision, or reports why there is none.

pub mod algorithm;
pub mod bind;
pub mod cluster;
pub mod filter;
pub mod pod;
pub mod queue;
pub mod score;
mod scheduler;
pub mod snapshot;

pub use scheduler::run;

/// Settings of one scheduler instance.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` equals this name are ours; pods without one
    /// are `default-scheduler`'s.
    pub scheduler_name: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { scheduler_name: "default-scheduler".to_string() }
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("a scheduler task ended unexpectedly")]
    LoopEnded,
    #[error("a scheduler task failed: {source}")]
    TaskFailed {
        #[source]
        source: tokio::task::JoinError,
    },
}
