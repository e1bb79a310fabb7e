//! `cargo run --example dev_upstream`: the development upstream provider `make run` starts.
//!
//! Options: `--port 8090`, `--client-id tether-dev`, `--client-secret S` (default: a public
//! client using PKCE), `--redirect-uri http://127.0.0.1:8080/callback` (repeatable),
//! `--access-token-ttl 3600`.

#[path = "support/dev_upstream/mod.rs"]
mod dev_upstream;

use std::time::Duration;

use dev_upstream::{DevUpstream, UpstreamConfig};

fn parse_args() -> Result<UpstreamConfig, String> {
    let mut config = UpstreamConfig { port: 8090, redirect_uris: vec![], ..UpstreamConfig::default() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => config.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--client-id" => config.client_id = value()?,
            "--client-secret" => config.client_secret = Some(value()?),
            "--redirect-uri" => config.redirect_uris.push(value()?),
            "--access-token-ttl" => {
                config.access_token_ttl =
                    Duration::from_secs(value()?.parse().map_err(|e| format!("--access-token-ttl: {e}"))?)
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if config.redirect_uris.is_empty() {
        config.redirect_uris.push("http://127.0.0.1:8080/callback".into());
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match parse_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dev_upstream: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let redirect_uris = config.redirect_uris.join(", ");
    let upstream = match DevUpstream::start(config).await {
        Ok(upstream) => upstream,
        Err(e) => {
            eprintln!("dev_upstream: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("dev upstream provider on {} (redirect URIs: {redirect_uris})", upstream.base_url);
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
