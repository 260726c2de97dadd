//! Orchestrators (in progress).
