//! `[audit]`: how long the trail is kept, how credential releases are coalesced, and the
//! optional signed webhook.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::ConfigErrors;
use super::secrets::{missing, resolve};
use crate::audit::{AuditSettings, EventType};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    pub enabled: bool,
    pub retention_days: u64,
    pub max_events: u64,
    pub release_interval_secs: u64,
    pub webhook: String,
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
    pub webhook_types: Vec<String>,
}

pub(super) fn audit(config: &AuditConfig, production: bool, errors: &mut ConfigErrors) -> AuditSettings {
    if production && !config.enabled {
        errors
            .push("audit.enabled", "the production profile keeps the audit trail on (turn it off only to measure it)");
    }
    if !(1..=3650).contains(&config.retention_days) {
        errors.push("audit.retention_days", "must be between 1 and 3650");
    }
    if !(1..=86_400).contains(&config.release_interval_secs) {
        errors.push("audit.release_interval_secs", "must be between 1 and 86400");
    }
    if !(1_000..=1_000_000_000).contains(&config.max_events) {
        errors.push("audit.max_events", "must be between 1000 and 1000000000");
    }
    let secret =
        resolve(config.webhook_secret.as_ref(), config.webhook_secret_file.as_deref(), "audit.webhook_secret", errors);
    let mut types = Vec::new();
    for name in &config.webhook_types {
        match EventType::parse(name) {
            Some(kind) => types.push(kind),
            None => errors.push("audit.webhook_types", format!("`{name}` is not an event type (e.g. grant.revoked)")),
        }
    }
    let webhook = match config.webhook.trim() {
        "" => {
            if secret.is_some() {
                errors.push("audit.webhook_secret", "does not apply without audit.webhook");
            }
            None
        }
        url => {
            let url = match url::Url::parse(url) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && !production) => Some(u),
                Ok(_) if production => {
                    errors.push("audit.webhook", "must be an https URL in production");
                    None
                }
                _ => {
                    errors.push("audit.webhook", format!("`{url}` is not an http(s) URL"));
                    None
                }
            };
            let secret = match secret {
                Some(s) if s.expose_secret().len() >= 16 => Some(s),
                Some(_) => {
                    errors.push("audit.webhook_secret", "must be at least 16 characters");
                    None
                }
                None => {
                    errors.push("audit.webhook_secret", missing("audit.webhook_secret"));
                    None
                }
            };
            url.zip(secret).map(|(url, secret)| (crate::webhook::Webhook { url, secret }, types))
        }
    };
    AuditSettings {
        enabled: config.enabled,
        retention: Duration::from_secs(config.retention_days.saturating_mul(86_400)),
        max_events: config.max_events,
        release_interval: Duration::from_secs(config.release_interval_secs),
        webhook,
    }
}
