//! `[admin]`: the admin API's listener and the tokens that may call it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigErrors;
use super::secrets::{missing, resolve};

/// What an admin token may do.
pub const SCOPES: [&str; 3] = ["grants:read", "grants:revoke", "events:read"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub bind: String,
    #[serde(default)]
    pub tokens: BTreeMap<String, AdminTokenConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    pub scopes: Vec<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// An admin token as Tether keeps it: its id, the SHA-256 of the token, its scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub id: String,
    pub digest: String,
    pub scopes: Vec<String>,
}

/// The admin API: where it listens and who may call it.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub bind: SocketAddr,
    pub tokens: Vec<AdminToken>,
}

pub(super) fn admin(
    config: &AdminConfig,
    server_bind: Option<SocketAddr>,
    errors: &mut ConfigErrors,
) -> Option<AdminSettings> {
    let mut tokens = Vec::new();
    for (id, token) in &config.tokens {
        let key = |member: &str| format!("admin.tokens.{id}.{member}");
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            errors.push(format!("admin.tokens.{id}"), "token ids are letters, digits, - and _");
        }
        for scope in &token.scopes {
            if !SCOPES.contains(&scope.as_str()) {
                errors.push(key("scopes"), format!("`{scope}` is not a scope ({})", SCOPES.join(", ")));
            }
        }
        if token.scopes.is_empty() {
            errors.push(key("scopes"), format!("give the token at least one scope ({})", SCOPES.join(", ")));
        }
        match resolve(token.token.as_ref(), token.token_file.as_deref(), &key("token"), errors) {
            Some(secret) if secret.expose_secret().len() >= 32 => tokens.push(AdminToken {
                id: id.clone(),
                digest: crate::crypto::hash::digest(secret.expose_secret()),
                scopes: token.scopes.clone(),
            }),
            Some(_) => errors.push(key("token"), "must be at least 32 characters (e.g. `openssl rand -base64 32`)"),
            None => errors.push(key("token"), missing(&key("token"))),
        }
    }
    let bind = config.bind.trim();
    if bind.is_empty() {
        return None;
    }
    let bind = match bind.parse::<SocketAddr>() {
        // Port 0 asks the system for a free port: two such binds never meet.
        Ok(addr) if Some(addr) == server_bind && addr.port() != 0 => {
            errors.push("admin.bind", "must differ from server.bind: the admin API never shares the public listener");
            return None;
        }
        Ok(addr) => addr,
        Err(e) => {
            errors.push("admin.bind", format!("`{bind}` is not host:port ({e})"));
            return None;
        }
    };
    if config.tokens.is_empty() {
        errors
            .push("admin.tokens", "the admin API is on (admin.bind) but no token may call it: add [admin.tokens.<id>]");
    }
    Some(AdminSettings { bind, tokens })
}
