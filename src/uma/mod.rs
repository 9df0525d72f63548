//! UMA's own words: resources, permissions, tickets. Plain functions, no HTTP types.

pub mod permission;
pub mod resources;
pub mod shares;
