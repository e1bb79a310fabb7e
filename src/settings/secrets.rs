//! Secrets come from the environment or from files, never from a config file's text.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{ConfigErrors, env_name};

/// Secret members of the registries: (registry, member).
const REGISTRY_SECRETS: [(&str, &str); 4] = [
    ("providers", "client_secret"),
    ("resources", "secret"),
    ("resources", "connect_webhook_secret"),
    ("clients", "client_secret"),
];

/// Refuses secrets written into the config files (the embedded defaults and `--config`).
pub(super) fn refuse_secrets_in_files(files: &config::Config) -> Result<(), ConfigErrors> {
    let doc: Value =
        files.clone().try_deserialize().map_err(|e| ConfigErrors::single("(configuration file)", e.to_string()))?;
    let mut errors = ConfigErrors::default();
    let mut refuse = |key: String| {
        errors.push(
            key.clone(),
            format!("secrets must not be written in a config file; set {} or {key}_file", env_name(&key)),
        );
    };
    for key in ["keys.encryption", "keys.signing", "store.password", "audit.webhook_secret"] {
        if lookup(&doc, key).and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
            refuse(key.to_owned());
        }
    }
    for (registry, member) in REGISTRY_SECRETS {
        if let Some(entries) = doc.get(registry).and_then(Value::as_object) {
            for (id, entry) in entries {
                if entry.get(member).is_some() {
                    refuse(format!("{registry}.{id}.{member}"));
                }
            }
        }
    }
    if let Some(tokens) = lookup(&doc, "admin.tokens").and_then(Value::as_object) {
        for (id, token) in tokens {
            if token.get("token").is_some() {
                refuse(format!("admin.tokens.{id}.token"));
            }
        }
    }
    if let Some(urls) = lookup(&doc, "store.url").and_then(Value::as_str)
        && urls.split(',').any(|url| url::Url::parse(url.trim()).is_ok_and(|u| u.password().is_some()))
    {
        refuse("store.url".to_owned());
    }
    if errors.0.is_empty() { Ok(()) } else { Err(errors) }
}

fn lookup<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(doc, |v, part| v.get(part))
}

/// A secret given inline (from the environment) or as a file path; one, not both.
/// A missing secret is `None` without an error: whether it is required is the caller's call.
pub(super) fn resolve(
    inline: Option<&SecretString>,
    file: Option<&Path>,
    key: &str,
    errors: &mut ConfigErrors,
) -> Option<SecretString> {
    let inline = inline.filter(|s| !s.expose_secret().is_empty());
    let file = file.filter(|p| !p.as_os_str().is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => {
            errors.push(key, format!("set either {} or {key}_file, not both", env_name(key)));
            None
        }
        (Some(secret), None) => Some(secret.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => Some(SecretString::from(text.trim().to_owned())),
            Ok(_) => {
                errors.push(format!("{key}_file"), format!("{} is empty", path.display()));
                None
            }
            Err(e) => {
                errors.push(format!("{key}_file"), format!("cannot read {}: {e}", path.display()));
                None
            }
        },
        (None, None) => None,
    }
}

/// The message for a required secret that is missing.
pub(super) fn missing(key: &str) -> String {
    format!("missing: set {} or {key}_file", env_name(key))
}
