//! capstan-agent.
