//! Validation of the three registries: providers, resources and pre-registered clients.

use std::collections::HashSet;
use std::time::Duration;

use secrecy::ExposeSecret;
use url::Url;

use super::build::is_loopback;
use super::secrets::{missing, resolve};
use super::{ConfigErrors, Settings};
use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::oauth::registration::{AUTH_METHODS, GRANT_TYPES};
use crate::oauth::registry::{OfferedScope, Resource};
use crate::oauth::{redirect, resource, scope};
use crate::store::{ClientRecord, ClientSource};
use crate::upstream::{ProviderConfig, ProviderKind, github};

/// Parameters Tether sets itself on the upstream authorization request.
const RESERVED_PARAMS: [&str; 7] =
    ["response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge", "code_challenge_method"];

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An upstream endpoint: https, or http on loopback outside production (development stand-ins).
fn endpoint(value: Option<&str>, key: &str, production: bool, errors: &mut ConfigErrors) -> Option<Url> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        errors.push(key, "required");
        return None;
    };
    match Url::parse(value) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(url),
        Ok(url) if url.scheme() == "http" && !production && is_loopback(&url) => Some(url),
        Ok(_) => {
            errors.push(key, format!("`{value}` must be an https URL (http only on loopback, outside production)"));
            None
        }
        Err(e) => {
            errors.push(key, format!("`{value}` is not a URL ({e})"));
            None
        }
    }
}

pub(super) fn providers(
    settings: &Settings,
    callback: Option<&Url>,
    production: bool,
    errors: &mut ConfigErrors,
) -> Vec<ProviderConfig> {
    let mut out = Vec::new();
    for (id, p) in &settings.providers {
        let key = |member: &str| format!("providers.{id}.{member}");
        if !valid_id(id) {
            errors.push(format!("providers.{id}"), "provider ids are 1-64 characters of a-z 0-9 _ -");
        }
        if p.client_id.is_empty() {
            errors.push(key("client_id"), "required");
        }
        let secret = resolve(p.client_secret.as_ref(), p.client_secret_file.as_deref(), &key("client_secret"), errors);
        if secret.is_none() && p.kind == ProviderKind::Github {
            errors.push(key("client_secret"), missing(&key("client_secret")));
        }
        if !(1..=120).contains(&p.timeout_secs) {
            errors.push(key("timeout_secs"), "must be between 1 and 120");
        }
        for name in p.extra_authorize_params.keys() {
            if RESERVED_PARAMS.contains(&name.as_str()) {
                errors
                    .push(key("extra_authorize_params"), format!("`{name}` is set by Tether and cannot be overridden"));
            }
        }
        let (endpoints, subject_field, default_name) = match p.kind {
            ProviderKind::Oauth2 => {
                let a = endpoint(p.authorize_url.as_deref(), &key("authorize_url"), production, errors);
                let t = endpoint(p.token_url.as_deref(), &key("token_url"), production, errors);
                let u = endpoint(p.userinfo_url.as_deref(), &key("userinfo_url"), production, errors);
                (
                    a.zip(t).zip(u).map(|((a, t), u)| (a, t, u)),
                    p.subject_field.clone().unwrap_or_else(|| "sub".to_owned()),
                    id.clone(),
                )
            }
            ProviderKind::Github => {
                let web = endpoint(
                    Some(p.web_url.as_deref().unwrap_or(github::DEFAULT_WEB_URL)),
                    &key("web_url"),
                    production,
                    errors,
                );
                let api = endpoint(
                    Some(p.api_url.as_deref().unwrap_or(github::DEFAULT_API_URL)),
                    &key("api_url"),
                    production,
                    errors,
                );
                let endpoints = web.zip(api).and_then(|(w, a)| github::endpoints(&w, &a).ok());
                (endpoints, github::SUBJECT_FIELD.to_owned(), "GitHub".to_owned())
            }
        };
        if let (Some((authorize_url, token_url, userinfo_url)), Some(callback_url)) = (endpoints, callback) {
            out.push(ProviderConfig {
                id: id.clone(),
                display_name: p.display_name.clone().unwrap_or(default_name),
                kind: p.kind,
                client_id: p.client_id.clone(),
                client_secret: secret,
                token_auth: p.token_auth,
                authorize_url,
                token_url,
                userinfo_url,
                subject_field,
                scopes: p.scopes.clone(),
                extra_authorize_params: p.extra_authorize_params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                pkce: p.pkce,
                timeout: Duration::from_secs(p.timeout_secs),
                callback_url: callback_url.clone(),
            });
        }
    }
    out
}

pub(super) fn resources(settings: &Settings, production: bool, errors: &mut ConfigErrors) -> Vec<Resource> {
    let mut seen_uris = HashSet::new();
    let mut out = Vec::new();
    for (id, r) in &settings.resources {
        let key = |member: &str| format!("resources.{id}.{member}");
        if !valid_id(id) {
            errors.push(format!("resources.{id}"), "resource ids are 1-64 characters of a-z 0-9 _ -");
        }
        match resource::normalize(&r.uri) {
            Some(n) if r.uri.contains(['?', '#']) => {
                errors.push(key("uri"), format!("`{n}`: the canonical URI has no query or fragment"))
            }
            Some(n) if !seen_uris.insert(n.clone()) => {
                errors.push(key("uri"), format!("`{n}` is already another resource's URI"))
            }
            Some(_) => {}
            None => errors.push(key("uri"), format!("`{}` is not an http(s) URL", r.uri)),
        }
        if !settings.providers.contains_key(&r.provider) {
            errors.push(key("provider"), format!("unknown provider `{}`", r.provider));
        }
        let secret = resolve(r.secret.as_ref(), r.secret_file.as_deref(), &key("secret"), errors);
        match &secret {
            None => errors.push(key("secret"), missing(&key("secret"))),
            Some(s) if production && s.expose_secret().len() < 16 => {
                errors.push(key("secret"), "must be at least 16 characters in production")
            }
            Some(_) => {}
        }
        let mut names = HashSet::new();
        for s in &r.scopes {
            if scope::parse(Some(&s.name)).map_or(true, |p| p.len() != 1) || s.name == scope::OFFLINE_ACCESS {
                errors.push(key("scopes"), format!("`{}` is not a usable scope name", s.name));
            }
            if !names.insert(s.name.as_str()) {
                errors.push(key("scopes"), format!("`{}` is offered twice", s.name));
            }
        }
        out.push(Resource {
            id: id.clone(),
            uri: r.uri.clone(),
            name: r.name.clone().unwrap_or_else(|| id.clone()),
            provider: r.provider.clone(),
            scopes: r
                .scopes
                .iter()
                .map(|s| OfferedScope {
                    name: s.name.clone(),
                    upstream: s.upstream.clone(),
                    description: s.description.clone(),
                    default: s.default,
                })
                .collect(),
            secret_digest: secret.map(|s| hash::digest(s.expose_secret())).unwrap_or_default(),
        });
    }
    out
}

pub(super) fn clients(settings: &Settings, now: UnixTime, errors: &mut ConfigErrors) -> Vec<ClientRecord> {
    let mut out = Vec::new();
    for (id, c) in &settings.clients {
        let key = |member: &str| format!("clients.{id}.{member}");
        let id_ok =
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !id_ok {
            errors.push(format!("clients.{id}"), "client ids are 1-128 characters of A-Z a-z 0-9 - . _ ~");
        }
        if c.redirect_uris.is_empty() {
            errors.push(key("redirect_uris"), "at least one redirect URI is required");
        }
        for uri in &c.redirect_uris {
            if let Err(e) = redirect::validate_registered(uri, false) {
                errors.push(key("redirect_uris"), e.to_string());
            }
        }
        if !AUTH_METHODS.contains(&c.token_endpoint_auth_method.as_str()) {
            errors.push(key("token_endpoint_auth_method"), "must be none, client_secret_basic or client_secret_post");
        }
        for g in &c.grant_types {
            if !GRANT_TYPES.contains(&g.as_str()) {
                errors.push(key("grant_types"), format!("`{g}` is not supported (authorization_code, refresh_token)"));
            }
        }
        let secret = resolve(c.client_secret.as_ref(), c.client_secret_file.as_deref(), &key("client_secret"), errors);
        let confidential = c.token_endpoint_auth_method != "none";
        match (&secret, confidential) {
            (None, true) => errors.push(key("client_secret"), missing(&key("client_secret"))),
            (Some(_), false) => {
                errors.push(key("client_secret"), "a client with token_endpoint_auth_method = \"none\" has no secret")
            }
            _ => {}
        }
        out.push(ClientRecord {
            client_id: id.clone(),
            source: ClientSource::Configured,
            secret_digest: secret.map(|s| hash::digest(s.expose_secret())),
            registration_token_digest: None,
            issued_at: now,
            redirect_uris: c.redirect_uris.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
            grant_types: c.grant_types.clone(),
            response_types: vec!["code".to_owned()],
            application_type: None,
            client_name: c.name.clone(),
            client_uri: None,
            logo_uri: None,
            tos_uri: None,
            policy_uri: None,
            contacts: vec![],
            scope: None,
            software_id: None,
            software_version: None,
        });
    }
    out
}
