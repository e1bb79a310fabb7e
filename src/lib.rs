//! Tether: an OAuth 2.1 authorization server that brokers upstream credentials for MCP servers.
//!
//! Layers (imports flow one way): `http` → `oauth` → {`upstream`, `crypto`, `store`, `audit`}.
//! `settings`, `startup`, `telemetry` and `cli` assemble them.

pub mod audit;
pub mod cli;
pub mod client_metadata;
pub mod clock;
pub mod crypto;
pub mod home;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod resource_server;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod webhook;
