//! `cargo run --example mcp_server`: the example MCP server `make run` starts on :9000.
//!
//! Environment: `MCP_BIND` (127.0.0.1:9000), `MCP_RESOURCE` (http://127.0.0.1:9000/mcp),
//! `TETHER_ISSUER` (http://127.0.0.1:8080), `MCP_RESOURCE_ID` (demo), `MCP_RESOURCE_SECRET`
//! (required), `UPSTREAM_USER_URL` (http://127.0.0.1:8090/user), `MCP_SESSION_PATH` (the
//! session-mode endpoint, /session-mcp), `MCP_WEBHOOK_SECRET` (Tether's connect webhook secret
//! for this resource; without it /hooks/tether answers 404 and the server long-polls).

#[path = "support/mcp_server.rs"]
mod mcp_server;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Ok(secret) = std::env::var("MCP_RESOURCE_SECRET") else {
        eprintln!("mcp_server: set MCP_RESOURCE_SECRET to the resource's introspection secret in Tether");
        return std::process::ExitCode::from(2);
    };
    let Ok(bind) = var("MCP_BIND", "127.0.0.1:9000").parse() else {
        eprintln!("mcp_server: MCP_BIND is not host:port");
        return std::process::ExitCode::from(2);
    };
    let config = mcp_server::McpServerConfig {
        bind,
        resource: var("MCP_RESOURCE", "http://127.0.0.1:9000/mcp"),
        issuer: var("TETHER_ISSUER", "http://127.0.0.1:8080"),
        resource_id: var("MCP_RESOURCE_ID", "demo"),
        secret,
        upstream_user_url: var("UPSTREAM_USER_URL", "http://127.0.0.1:8090/user"),
        session_path: var("MCP_SESSION_PATH", "/session-mcp"),
        webhook_secret: std::env::var("MCP_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty()),
    };
    let resource = config.resource.clone();
    let server = match mcp_server::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mcp_server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("example MCP server on {} (resource {resource})", server.addr);
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        return std::process::ExitCode::FAILURE;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    drop(server);
    std::process::ExitCode::SUCCESS
}
