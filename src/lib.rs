//! Tether: an OAuth 2.1 authorization server that brokers upstream credentials for MCP servers.
//!
//! Layers (imports flow one way): `http` → `oauth` → {`upstream`, `crypto`, `store`}.

pub mod clock;
pub mod crypto;
pub mod oauth;
pub mod store;
pub mod upstream;
