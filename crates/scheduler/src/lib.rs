//! capstan-scheduler.
