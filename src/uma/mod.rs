//! UMA's own words: resources, permissions, tickets, the grant, RPTs, claims, approvals. Plain
//! functions, no HTTP types.

pub mod approval;
pub mod assessment;
pub mod audit;
pub mod claims;
pub mod gathering;
pub mod grant;
pub mod permission;
pub mod resources;
pub mod rpt;
pub mod shares;
