//! `cargo run --example dev_upstream`: the development upstream provider `make run` starts.
//!
//! Options: `--port 8090`, `--client-id tether-dev`, `--client-secret S` (default: a public
//! client using PKCE), `--redirect-uri http://127.0.0.1:8080/callback` (repeatable),
//! `--access-token-ttl 3600`, `--profile oauth2|oidc`.
//!
//! As the company identity provider of `make run-enterprise` (`--profile oidc`):
//! `--id-jag-client-id agent` issues ID-JAGs for that client id at Tether, and
//! `--jwks-https-port 8443 --ca-out PATH` also publishes the signing keys at
//! `https://127.0.0.1:8443/jwks` (Tether fetches keys over https only) under a CA written to PATH.

#[path = "support/dev_upstream/mod.rs"]
mod dev_upstream;
#[path = "support/tls_server.rs"]
mod tls_server;

use std::time::Duration;

use dev_upstream::{DevUpstream, Profile, UpstreamConfig};

struct Args {
    config: UpstreamConfig,
    jwks_https_port: Option<u16>,
    ca_out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut config = UpstreamConfig { port: 8090, redirect_uris: vec![], ..UpstreamConfig::default() };
    let (mut jwks_https_port, mut ca_out) = (None, None);
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
            "--profile" => {
                config.profile = match value()?.as_str() {
                    "oauth2" => Profile::OAuth2,
                    "oidc" => Profile::Oidc,
                    other => return Err(format!("--profile: `{other}` is not oauth2 or oidc")),
                }
            }
            "--id-jag-client-id" => config.id_jag_client_id = Some(value()?),
            "--jwks-https-port" => {
                jwks_https_port = Some(value()?.parse().map_err(|e| format!("--jwks-https-port: {e}"))?)
            }
            "--ca-out" => ca_out = Some(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if config.redirect_uris.is_empty() {
        config.redirect_uris.push("http://127.0.0.1:8080/callback".into());
    }
    if jwks_https_port.is_some() != ca_out.is_some() || (jwks_https_port.is_some() && config.profile != Profile::Oidc) {
        return Err("--jwks-https-port and --ca-out go together, with --profile oidc".into());
    }
    Ok(Args { config, jwks_https_port, ca_out })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Args { config, jwks_https_port, ca_out } = match parse_args() {
        Ok(args) => args,
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
    // Kept alive until the end: the https server of the signing keys.
    let mut _keys = None;
    if let (Some(port), Some(ca_out), Some(jwks)) = (jwks_https_port, ca_out, upstream.jwks()) {
        let server = tls_server::DocumentServer::start_on(port).await;
        server.route("/jwks", tls_server::Route::json(&jwks, "max-age=300"));
        if let Err(e) = std::fs::write(&ca_out, &server.ca_pem) {
            eprintln!("dev_upstream: cannot write {ca_out}: {e}");
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("signing keys at {} (CA in {ca_out})", server.url("/jwks"));
        _keys = Some(server);
    }
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
