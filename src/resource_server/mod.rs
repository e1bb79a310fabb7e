//! For MCP servers written in Rust: ask Tether who a bearer token belongs to and get the
//! upstream credential (`IntrospectionClient`), and answer MCP clients the way the MCP
//! authorization spec requires (`metadata`, `challenge`). No web framework is assumed.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tether::resource_server::{IntrospectionClient, IntrospectionConfig, TokenStatus};
//! let tether = IntrospectionClient::new(IntrospectionConfig::new(
//!     "https://tether.example.com/introspect", "repos", "the-introspection-secret",
//! ))?;
//! match tether.introspect("eyJ...").await? {
//!     TokenStatus::Active(token) => println!("{} via {}", token.sub, token.upstream.provider),
//!     TokenStatus::Inactive => println!("answer 401 with a Bearer challenge"),
//! }
//! # Ok(()) }
//! ```

mod challenge;
mod connect;
mod introspection;

pub use challenge::{BearerChallenge, protected_resource_metadata, resource_metadata_url};
pub use connect::{ConnectClient, ConnectError, ConnectLink, ConnectedSession, ConnectionState};
pub use introspection::{
    ActiveToken, ExchangeStatus, ExchangedToken, IntrospectionClient, IntrospectionConfig, IntrospectionError,
    NeedsConnection, TokenStatus, UpstreamCredential,
};
