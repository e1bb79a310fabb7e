//! Validation of the three registries: providers, resources and pre-registered clients.

use std::collections::{BTreeMap, HashSet};
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
use crate::upstream::shape::{IdentityPaths, TokenShape};
use crate::upstream::{
    EndpointSource, ExtraCall, ProviderConfig, ProviderKind, Quirks, RevocationStyle, StaticEndpoints, SubjectSource,
    TenantRule, github,
};

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
        if secret.is_none() && matches!(p.kind, ProviderKind::Github | ProviderKind::Google) {
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
        let Some(kind) = kind_settings(id, p, production, errors) else { continue };
        let mut scopes = if p.scopes.is_empty() {
            kind.default_scopes.iter().map(|s| (*s).to_owned()).collect()
        } else {
            p.scopes.clone()
        };
        if kind.subject == SubjectSource::IdToken && !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        for required in &p.required_scopes {
            if !scopes.contains(required) {
                scopes.push(required.clone());
            }
        }
        // Kind defaults first, then the configured parameters, which win.
        let mut params: Vec<(String, String)> = kind
            .default_params
            .iter()
            .filter(|(k, _)| !p.extra_authorize_params.contains_key(*k))
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        params.extend(p.extra_authorize_params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let Some(callback_url) = callback else { continue };
        out.push(ProviderConfig {
            id: id.clone(),
            display_name: p.display_name.clone().unwrap_or(kind.display_name),
            kind: p.kind,
            client_id: p.client_id.clone(),
            client_secret: secret,
            token_auth: p.token_auth,
            endpoints: kind.endpoints,
            subject: kind.subject,
            scopes,
            extra_authorize_params: params,
            pkce: p.pkce,
            timeout: Duration::from_secs(p.timeout_secs),
            callback_url: callback_url.clone(),
            revoke_upstream: p.revoke_upstream,
            github_api_url: kind.github_api_url,
            quirks: quirks(id, p, production, errors),
            account_url: match p.account_url.as_deref() {
                Some(url) => endpoint(Some(url), &format!("providers.{id}.account_url"), production, errors),
                None => kind.account_url,
            },
        });
    }
    out
}

/// What a provider kind contributes: endpoints, how users are identified, defaults.
struct KindSettings {
    endpoints: EndpointSource,
    subject: SubjectSource,
    display_name: String,
    default_scopes: &'static [&'static str],
    default_params: &'static [(&'static str, &'static str)],
    github_api_url: Option<Url>,
    /// Where people see the apps they authorized at the provider, when it is well known.
    account_url: Option<Url>,
}

/// Google issues a refresh token only with `access_type=offline`, and again on a repeated
/// authorization only with `prompt=consent`; `include_granted_scopes` makes a new
/// authorization add to, not replace, what the user granted before.
const GOOGLE_PARAMS: &[(&str, &str)] =
    &[("access_type", "offline"), ("prompt", "consent"), ("include_granted_scopes", "true")];
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// Google's "Third-party apps with account access".
const GOOGLE_ACCOUNT_URL: &str = "https://myaccount.google.com/connections";

fn kind_settings(
    id: &str,
    p: &super::ProviderSettings,
    production: bool,
    errors: &mut ConfigErrors,
) -> Option<KindSettings> {
    let key = |member: &str| format!("providers.{id}.{member}");
    let unused = |errors: &mut ConfigErrors, members: &[(&str, &Option<String>)]| {
        for (member, value) in members {
            if value.is_some() {
                errors.push(key(member), format!("does not apply to kind = \"{}\"", kind_name(p.kind)));
            }
        }
    };
    match p.kind {
        ProviderKind::Oauth2 => {
            unused(errors, &[("issuer", &p.issuer), ("web_url", &p.web_url), ("api_url", &p.api_url)]);
            let a = endpoint(p.authorize_url.as_deref(), &key("authorize_url"), production, errors);
            let t = endpoint(p.token_url.as_deref(), &key("token_url"), production, errors);
            let from_token = p.identity == Some(super::IdentitySource::TokenResponse);
            // The user endpoint is needed unless the token answer names the user.
            let u = match (from_token, p.userinfo_url.as_deref()) {
                (true, None) => None,
                (_, url) => Some(endpoint(url, &key("userinfo_url"), production, errors)?),
            };
            let r =
                p.revocation_url.as_deref().and_then(|r| endpoint(Some(r), &key("revocation_url"), production, errors));
            let (authorize_url, token_url) = (a?, t?);
            let subject_field = p.subject_field.clone().unwrap_or_else(|| "sub".to_owned());
            Some(KindSettings {
                endpoints: EndpointSource::Static(Box::new(StaticEndpoints {
                    authorize_url,
                    token_url,
                    userinfo_url: u,
                    revocation_url: r,
                })),
                subject: if from_token { SubjectSource::TokenResponse } else { SubjectSource::Userinfo(subject_field) },
                display_name: id.to_owned(),
                default_scopes: &[],
                default_params: &[],
                github_api_url: None,
                account_url: None,
            })
        }
        ProviderKind::Github => {
            unused(
                errors,
                &[
                    ("issuer", &p.issuer),
                    ("authorize_url", &p.authorize_url),
                    ("token_url", &p.token_url),
                    ("userinfo_url", &p.userinfo_url),
                    ("revocation_url", &p.revocation_url),
                ],
            );
            let web = endpoint(
                Some(p.web_url.as_deref().unwrap_or(github::DEFAULT_WEB_URL)),
                &key("web_url"),
                production,
                errors,
            )?;
            let api = endpoint(
                Some(p.api_url.as_deref().unwrap_or(github::DEFAULT_API_URL)),
                &key("api_url"),
                production,
                errors,
            )?;
            let (authorize_url, token_url, userinfo_url) = github::endpoints(&web, &api).ok()?;
            Some(KindSettings {
                endpoints: EndpointSource::Static(Box::new(StaticEndpoints {
                    authorize_url,
                    token_url,
                    userinfo_url: Some(userinfo_url),
                    revocation_url: None,
                })),
                subject: SubjectSource::Userinfo(github::SUBJECT_FIELD.to_owned()),
                display_name: "GitHub".to_owned(),
                default_scopes: &[],
                default_params: &[],
                github_api_url: Some(api),
                account_url: github::with_trailing_slash(&web).join("settings/applications").ok(),
            })
        }
        ProviderKind::Google | ProviderKind::Oidc => {
            unused(
                errors,
                &[
                    ("authorize_url", &p.authorize_url),
                    ("token_url", &p.token_url),
                    ("userinfo_url", &p.userinfo_url),
                    ("revocation_url", &p.revocation_url),
                    ("web_url", &p.web_url),
                    ("api_url", &p.api_url),
                ],
            );
            let google = p.kind == ProviderKind::Google;
            let issuer = match (&p.issuer, google) {
                (Some(issuer), _) => issuer.clone(),
                (None, true) => GOOGLE_ISSUER.to_owned(),
                (None, false) => {
                    errors.push(key("issuer"), "required for kind = \"oidc\" (the provider's issuer URL; Tether reads {issuer}/.well-known/openid-configuration)");
                    return None;
                }
            };
            let url = endpoint(Some(&issuer), &key("issuer"), production, errors)?;
            if url.query().is_some() || url.fragment().is_some() {
                errors.push(key("issuer"), "an issuer has no query or fragment");
                return None;
            }
            Some(KindSettings {
                endpoints: EndpointSource::Discover { issuer },
                subject: SubjectSource::IdToken,
                display_name: if google { "Google".to_owned() } else { id.to_owned() },
                default_scopes: if google { &["openid", "email"] } else { &["openid"] },
                default_params: if google { GOOGLE_PARAMS } else { &[] },
                github_api_url: None,
                account_url: google.then(|| Url::parse(GOOGLE_ACCOUNT_URL).ok()).flatten(),
            })
        }
    }
}

/// The departures from plain OAuth 2.0 a provider is configured with (kind = "oauth2" only).
fn quirks(id: &str, p: &super::ProviderSettings, production: bool, errors: &mut ConfigErrors) -> Quirks {
    let key = |member: &str| format!("providers.{id}.{member}");
    let oauth2_only = [
        ("token_body", p.token_body.is_some()),
        ("token_path", p.token_path.is_some()),
        ("success_field", p.success_field.is_some()),
        ("scope_separator", p.scope_separator.is_some()),
        ("scope_param", p.scope_param.is_some()),
        ("refresh_url", p.refresh_url.is_some()),
        ("userinfo_headers", !p.userinfo_headers.is_empty()),
        ("userinfo_method", p.userinfo_method.is_some()),
        ("userinfo_body", p.userinfo_body.is_some()),
        ("identity", p.identity.is_some()),
        ("account_field", p.account_field.is_some()),
        ("name_field", p.name_field.is_some()),
        ("email_field", p.email_field.is_some()),
    ];
    // What OpenID providers may use too (Keycloak's, Okta's and Microsoft's quirks).
    let not_github = [
        ("default_expires_in", p.default_expires_in.is_some()),
        ("extra_values", !p.extra_values.is_empty()),
        ("refresh_params", !p.refresh_params.is_empty()),
        ("refresh_scope", p.refresh_scope),
        ("api_base_url", p.api_base_url.is_some()),
        ("api_headers", !p.api_headers.is_empty()),
        ("userinfo_values", !p.userinfo_values.is_empty()),
        ("extra_call", p.extra_call.is_some()),
        ("revocation_style", p.revocation_style.is_some()),
        ("required_scopes", !p.required_scopes.is_empty()),
    ];
    let oidc_only = [("tenant_claim", p.tenant_claim.is_some()), ("allowed_tenants", !p.allowed_tenants.is_empty())];
    let refuse = |errors: &mut ConfigErrors, knobs: &[(&str, bool)], applies: &str| {
        for (name, _) in knobs.iter().filter(|(_, on)| *on) {
            errors.push(key(name), format!("does not apply to kind = \"{}\" (only to {applies})", kind_name(p.kind)));
        }
    };
    let oidc = matches!(p.kind, ProviderKind::Oidc | ProviderKind::Google);
    if p.kind != ProviderKind::Oauth2 {
        refuse(errors, &oauth2_only, "\"oauth2\"");
    }
    if p.kind == ProviderKind::Github {
        refuse(errors, &not_github, "\"oauth2\", \"oidc\" and \"google\"");
    }
    if !oidc {
        refuse(errors, &oidc_only, "\"oidc\"");
    }
    if !p.allowed_tenants.is_empty() && p.tenant_claim.is_none() {
        errors.push(key("allowed_tenants"), "needs tenant_claim (the ID token claim naming the tenant, \"tid\")");
    }
    for tenant in &p.allowed_tenants {
        if !crate::upstream::id_token::is_tenant_id(tenant) {
            errors.push(key("allowed_tenants"), format!("`{tenant}` is not a tenant id (a GUID or a domain name)"));
        }
    }
    for scope in &p.required_scopes {
        if scope.is_empty() || scope.contains(' ') {
            errors.push(key("required_scopes"), format!("`{scope}` is not one scope"));
        }
    }
    let style = p.revocation_style.unwrap_or_default();
    if style == RevocationStyle::Delete && !p.revocation_url.as_deref().is_some_and(|u| u.contains("{refresh_token}")) {
        errors.push(key("revocation_style"), "\"delete\" needs a revocation_url with {refresh_token} in its path");
    }
    if style != RevocationStyle::Rfc7009 && p.revocation_url.is_none() && p.kind == ProviderKind::Oauth2 {
        errors.push(key("revocation_style"), "needs revocation_url");
    }
    let extra_call = p.extra_call.as_ref().and_then(|call| {
        value_names(&call.values, &key("extra_call.values"), errors);
        let url = endpoint(Some(&call.url), &key("extra_call.url"), production, errors)?;
        Some(ExtraCall { url, values: call.values.iter().map(|(k, v)| (k.clone(), v.clone())).collect() })
    });
    value_names(&p.userinfo_values, &key("userinfo_values"), errors);
    let from_token = p.identity == Some(super::IdentitySource::TokenResponse);
    let post = p.userinfo_method == Some(super::UserinfoMethod::Post);
    if let Some(body) = &p.userinfo_body {
        if !post {
            errors.push(key("userinfo_body"), "applies with userinfo_method = \"post\" only");
        }
        if serde_json::from_str::<serde_json::Value>(body).is_err() {
            errors.push(key("userinfo_body"), "must be JSON (it is sent as application/json)");
        }
    }
    value_names(&p.extra_values, &key("extra_values"), errors);
    for (name, value) in [("scope_separator", &p.scope_separator), ("scope_param", &p.scope_param)] {
        if value.as_deref().is_some_and(|v| v.is_empty() || v.len() > 32) {
            errors.push(key(name), "must be 1-32 characters");
        }
    }
    if p.scope_param.as_deref().is_some_and(|v| RESERVED_PARAMS.contains(&v) && v != "scope") {
        errors.push(key("scope_param"), "names a parameter Tether sets itself");
    }
    let mut hints = BTreeMap::new();
    if let Some(base) = &p.api_base_url {
        match Url::parse(base) {
            Ok(url) if url.scheme() == "https" || (!production && url.scheme() == "http") => {
                hints.insert("api_base_url".to_owned(), serde_json::Value::from(base.clone()));
            }
            _ => errors.push(key("api_base_url"), format!("`{base}` must be an https URL")),
        }
    }
    if !p.api_headers.is_empty() {
        let headers: serde_json::Map<String, serde_json::Value> =
            p.api_headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect();
        hints.insert("api_headers".to_owned(), serde_json::Value::Object(headers));
    }
    for (name, value) in p.api_headers.iter().chain(&p.userinfo_headers) {
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok()
            && !name.eq_ignore_ascii_case("authorization");
        if !valid {
            errors.push(key("api_headers"), format!("`{name}` is not a header Tether can pass on"));
        }
    }
    Quirks {
        shape: TokenShape {
            json_body: p.token_body == Some(super::TokenBody::Json),
            token_path: p.token_path.clone(),
            success_field: p.success_field.clone(),
            default_expires_in: p.default_expires_in,
            extra: p.extra_values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            identity: from_token.then(|| IdentityPaths {
                subject: p.subject_field.clone().unwrap_or_else(|| "sub".to_owned()),
                account: p.account_field.clone(),
                name: p.name_field.clone(),
                email: p.email_field.clone(),
            }),
        },
        scope_separator: p.scope_separator.clone(),
        scope_param: p.scope_param.clone(),
        refresh_url: p.refresh_url.as_deref().and_then(|u| endpoint(Some(u), &key("refresh_url"), production, errors)),
        refresh_params: p.refresh_params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        api_hints: hints,
        userinfo_headers: p.userinfo_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        userinfo_post: post,
        userinfo_body: p.userinfo_body.clone(),
        // With the identity in the token answer, these are paths there (see `shape`).
        account_field: p.account_field.clone().filter(|_| !from_token),
        name_field: p.name_field.clone().filter(|_| !from_token),
        email_field: p.email_field.clone().filter(|_| !from_token),
        userinfo_values: p.userinfo_values.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        extra_call,
        revocation_style: style,
        refresh_scope: p.refresh_scope,
        id_token_subject: p.subject_field.clone().filter(|_| oidc),
        tenant: p.tenant_claim.clone().filter(|_| oidc).map(|claim| TenantRule {
            claim,
            allowed: p.allowed_tenants.iter().map(|t| t.to_ascii_lowercase()).collect(),
        }),
    }
}

/// Names of values handed to MCP servers: ids, not those Tether sets itself.
fn value_names(values: &BTreeMap<String, String>, key: &str, errors: &mut ConfigErrors) {
    for (name, path) in values {
        if !valid_id(name) || ["api_base_url", "api_headers", "tenant_id"].contains(&name.as_str()) {
            errors.push(
                key,
                format!(
                    "`{name}`: names are 1-64 characters of a-z 0-9 _ -, and not api_base_url, api_headers or tenant_id (set by Tether)"
                ),
            );
        }
        if path.is_empty() || path.len() > 128 {
            errors.push(key, format!("`{name}`: the path must be 1-128 characters (\".\" for the whole answer)"));
        }
    }
}

fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Oauth2 => "oauth2",
        ProviderKind::Github => "github",
        ProviderKind::Google => "google",
        ProviderKind::Oidc => "oidc",
    }
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
        let webhook = connect_webhook(r, production, &key, errors);
        for target in &r.may_exchange_for {
            match settings.resources.get(target) {
                None => errors.push(key("may_exchange_for"), format!("unknown resource `{target}`")),
                Some(_) if target == id => errors.push(key("may_exchange_for"), "a resource cannot chain to itself"),
                // The chained token carries the same upstream credential: it must be for the
                // same provider.
                Some(other) if other.provider != r.provider => errors.push(
                    key("may_exchange_for"),
                    format!(
                        "`{target}` uses provider `{}`, this resource `{}`: a chain passes one upstream credential on",
                        other.provider, r.provider
                    ),
                ),
                Some(_) => {}
            }
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
            webhook,
            may_exchange_for: r.may_exchange_for.clone(),
        });
    }
    out
}

/// A resource's connect webhook: an http(s) URL (https in production) and its signing secret.
fn connect_webhook(
    r: &super::ResourceSettings,
    production: bool,
    key: &dyn Fn(&str) -> String,
    errors: &mut ConfigErrors,
) -> Option<crate::webhook::Webhook> {
    let secret_key = key("connect_webhook_secret");
    let secret =
        resolve(r.connect_webhook_secret.as_ref(), r.connect_webhook_secret_file.as_deref(), &secret_key, errors);
    let Some(url) = r.connect_webhook.as_deref().filter(|u| !u.trim().is_empty()) else {
        if secret.is_some() {
            errors.push(secret_key, "does not apply without connect_webhook");
        }
        return None;
    };
    let url = match url::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && !production) => Some(u),
        Ok(_) if production => {
            errors.push(key("connect_webhook"), "must be an https URL in production");
            None
        }
        _ => {
            errors.push(key("connect_webhook"), format!("`{url}` is not an http(s) URL"));
            None
        }
    };
    let secret = match secret {
        Some(s) if s.expose_secret().len() >= 16 => Some(s),
        Some(_) => {
            errors.push(secret_key, "must be at least 16 characters");
            None
        }
        None => {
            errors.push(secret_key.clone(), missing(&secret_key));
            None
        }
    };
    Some(crate::webhook::Webhook { url: url?, secret: secret? })
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
