//! Settings: the layered configuration (embedded defaults → file → `TETHER__` environment)
//! and its validation into the parts the broker is built from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::upstream::{Pkce, ProviderKind, RevocationStyle, TokenAuth};

pub mod admin;
mod audit;
mod build;
pub mod presets;
mod registries;
mod secrets;

pub use build::{Built, DocumentSettings, MetricsChoice, StoreChoice, build, configured_keys};

/// The embedded defaults, documented key by key.
pub const DEFAULTS: &str = include_str!("../../config/default.toml");
const ENV_PREFIX: &str = "TETHER";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub profile: Profile,
    pub issuer: String,
    pub server: ServerSettings,
    pub metrics: MetricsSettings,
    pub store: StoreSettings,
    pub tokens: TokenSettings,
    pub registration: RegistrationSettings,
    pub consent: ConsentSettings,
    pub limits: LimitSettings,
    pub upstream: UpstreamSettings,
    pub client_metadata: ClientMetadataSettings,
    pub keys: KeySettings,
    pub log: LogSettings,
    pub audit: audit::AuditConfig,
    pub admin: admin::AdminConfig,
    /// Sign people in with the company's identity provider before connecting upstream.
    #[serde(default)]
    pub login: Option<LoginSettings>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceSettings>,
    #[serde(default)]
    pub clients: BTreeMap<String, ClientSettings>,
    /// Trusted enterprise identity providers (ID-JAG, MCP enterprise-managed authorization).
    #[serde(default)]
    pub enterprise: BTreeMap<String, EnterpriseSettings>,
}

/// `[enterprise.<id>]`: an identity provider whose ID-JAGs Tether takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseSettings {
    /// Its issuer: the `[login]` provider's (its subjects are Tether's users).
    pub issuer: String,
    /// Where its signing keys are published (https, fetched with the client_metadata rules).
    pub jwks_url: String,
    /// Signature algorithms accepted (asymmetric only).
    #[serde(default = "default_jag_algorithms")]
    pub algorithms: Vec<String>,
    /// MCP servers (resource ids) its ID-JAGs may grant access to.
    pub resources: Vec<String>,
    /// Clients (client ids at Tether) that may present its ID-JAGs.
    pub clients: Vec<String>,
    /// The longest ID-JAG life accepted (exp - iat).
    #[serde(default = "default_jag_lifetime")]
    pub max_lifetime_secs: u64,
    /// Whether an assertion may name a person Tether has never seen: they become a user, with
    /// the "connect first" answer until they connect the MCP server's provider.
    #[serde(default)]
    pub create_users: bool,
}

fn default_jag_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned()]
}

fn default_jag_lifetime() -> u64 {
    300
}

/// `[login]`: the user is who signs in at this OpenID provider (from `[providers]`), and
/// upstream identities become the user's connections.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    pub provider: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: usize,
    pub client_timeout_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub shutdown_delay_secs: u64,
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    pub bind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisTopology {
    Standalone,
    Cluster,
    Sentinel,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub topology: RedisTopology,
    pub url: SecretString,
    pub url_file: String,
    pub sentinel_master: String,
    pub username: String,
    pub password: SecretString,
    pub password_file: String,
    pub ca_file: String,
    pub prefix: String,
    pub timeout_ms: u64,
    pub write_schema: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub refresh_grace_secs: u64,
    pub verified_cache_entries: usize,
    pub code_ttl_secs: u64,
    pub authorization_ttl_secs: u64,
    pub tombstone_ttl_secs: u64,
    pub session_ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationSettings {
    pub enabled: bool,
    pub unused_client_ttl_secs: u64,
    pub client_ttl_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSettings {
    pub remember_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub register_per_minute: u32,
    pub authorize_per_minute: u32,
    pub token_per_minute: u32,
    pub introspect_per_second: u32,
    pub upstream_rejected_per_minute: u32,
    pub registrations_per_hour: u64,
    pub max_clients: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    pub refresh_skew_secs: u64,
    pub refresh_lock_ms: u64,
    pub refresh_wait_ms: u64,
    pub background_refresh: bool,
    pub background_interval_secs: u64,
    pub background_window_secs: u64,
    pub background_lead_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMetadataSettings {
    pub enabled: bool,
    pub timeout_ms: u64,
    pub max_bytes: usize,
    pub cache_secs: u64,
    pub max_cache_secs: u64,
    pub stale_if_error_secs: u64,
    pub allow_networks: Vec<String>,
    pub ca_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub encryption: SecretString,
    pub encryption_file: String,
    pub signing: SecretString,
    pub signing_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// A provider of the catalogue (`tether providers list`): fills in everything below that
    /// is not set here.
    #[serde(default)]
    pub preset: Option<String>,
    /// The preset's variables (tenant, instance host, ...).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub kind: ProviderKind,
    pub display_name: Option<String>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_token_auth")]
    pub token_auth: TokenAuth,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    /// "required" (the default; `true`), "optional", or "off" (`false`).
    #[serde(default, deserialize_with = "pkce_setting")]
    pub pkce: Pkce,
    #[serde(default = "default_provider_timeout")]
    pub timeout_secs: u64,
    /// Revoke the upstream grant when Tether's grant is revoked.
    #[serde(default)]
    pub revoke_upstream: bool,
    /// The provider's own page where people see and remove the apps they authorized (linked
    /// from Tether's account page). GitHub and Google have defaults.
    pub account_url: Option<String>,
    // kind = "oauth2"
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub revocation_url: Option<String>,
    pub subject_field: Option<String>,
    // Departures from plain OAuth 2.0 (kind = "oauth2"; see config/default.toml).
    pub token_body: Option<TokenBody>,
    pub token_path: Option<String>,
    pub success_field: Option<String>,
    pub default_expires_in: Option<u64>,
    #[serde(default)]
    pub extra_values: BTreeMap<String, String>,
    pub scope_separator: Option<String>,
    pub scope_param: Option<String>,
    pub refresh_url: Option<String>,
    #[serde(default)]
    pub refresh_params: BTreeMap<String, String>,
    pub api_base_url: Option<String>,
    #[serde(default)]
    pub api_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub userinfo_headers: BTreeMap<String, String>,
    pub userinfo_method: Option<UserinfoMethod>,
    pub userinfo_body: Option<String>,
    pub identity: Option<IdentitySource>,
    pub account_field: Option<String>,
    pub name_field: Option<String>,
    pub email_field: Option<String>,
    /// Values for MCP servers from the user endpoint's answer (name = path).
    #[serde(default)]
    pub userinfo_values: BTreeMap<String, String>,
    /// One GET after the code exchange whose answer yields values for MCP servers.
    pub extra_call: Option<ExtraCallSettings>,
    pub revocation_style: Option<RevocationStyle>,
    /// Always requested, whatever `scopes` says (`offline_access`).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Send the granted scopes with every refresh request.
    #[serde(default)]
    pub refresh_scope: bool,
    // kind = "oidc": multi-tenant issuers
    pub tenant_claim: Option<String>,
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    // kind = "github"
    pub web_url: Option<String>,
    pub api_url: Option<String>,
    // kind = "oidc" (required) and "google" (defaults to https://accounts.google.com)
    pub issuer: Option<String>,
}

/// `extra_call = { url = "...", values = { cloud_id = "0.id" } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraCallSettings {
    pub url: String,
    pub values: BTreeMap<String, String>,
}

/// `pkce = true | false | "required" | "optional" | "off"`.
fn pkce_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Pkce, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Flag(bool),
        Mode(Pkce),
        // From the environment every value is text.
        Text(String),
    }
    Ok(match Given::deserialize(d) {
        Ok(Given::Flag(true)) => Pkce::Required,
        Ok(Given::Flag(false)) => Pkce::Off,
        Ok(Given::Mode(mode)) => mode,
        Ok(Given::Text(text)) if text == "true" => Pkce::Required,
        Ok(Given::Text(text)) if text == "false" => Pkce::Off,
        _ => return Err(serde::de::Error::custom("expected \"required\", \"optional\" or \"off\"")),
    })
}

/// How the token request's parameters are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenBody {
    Form,
    Json,
}

/// How the user endpoint is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserinfoMethod {
    Get,
    /// Dropbox (`users/get_current_account`), GraphQL APIs (Linear) with `userinfo_body`.
    Post,
}

/// Where the user's identity is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// The user endpoint (`userinfo_url`, `subject_field`).
    Userinfo,
    /// The token answer (`subject_field` and the other fields are paths in it).
    TokenResponse,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    pub uri: String,
    pub name: Option<String>,
    pub provider: String,
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Vec<ScopeSettings>,
    /// Where connect-flow events are POSTed (signed), if anywhere.
    pub connect_webhook: Option<String>,
    pub connect_webhook_secret: Option<SecretString>,
    pub connect_webhook_secret_file: Option<PathBuf>,
    /// Other resources this one may exchange its tokens for (MCP server chains, RFC 8693).
    #[serde(default)]
    pub may_exchange_for: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSettings {
    pub name: String,
    #[serde(default)]
    pub upstream: Vec<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_client_auth")]
    pub token_endpoint_auth_method: String,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_grant_types")]
    pub grant_types: Vec<String>,
}

fn default_token_auth() -> TokenAuth {
    TokenAuth::ClientSecretBasic
}
fn default_provider_timeout() -> u64 {
    10
}
fn default_client_auth() -> String {
    "client_secret_basic".to_owned()
}
fn default_grant_types() -> Vec<String> {
    vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
}

/// One configuration problem, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

/// Every problem found, so that one run of `check-config` reports them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl ConfigErrors {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue { key: key.into(), message: message.into() });
    }

    fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(key, message);
        errors
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem{}):", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for issue in &self.0 {
            writeln!(f, "  - {}: {}", issue.key, issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The environment variable that overrides `key`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

/// Loads the layered configuration. `file` is `--config` (or `TETHER_CONFIG`).
pub fn load(file: Option<&Path>) -> Result<Settings, ConfigErrors> {
    let files = file_layers(file)?;
    secrets::refuse_secrets_in_files(&files)?;
    load_layers(files)
}

fn load_layers(files: config::Config) -> Result<Settings, ConfigErrors> {
    let merged = config::Config::builder()
        .add_source(files)
        .add_source(config::Environment::with_prefix(ENV_PREFIX).prefix_separator("__").separator("__"))
        .build()
        .map_err(|e| ConfigErrors::single("(environment)", e.to_string()))?;
    let merged = with_presets(merged)?;
    merged.try_deserialize::<Settings>().map_err(|e| ConfigErrors::single(error_key(&e), e.to_string()))
}

/// Fills in the providers that name a preset (see `presets`), before anything is typed.
fn with_presets(merged: config::Config) -> Result<config::Config, ConfigErrors> {
    let providers = merged.get_table("providers").unwrap_or_default();
    let named = providers
        .values()
        .any(|p| p.clone().into_table().is_ok_and(|t| t.contains_key("preset") || t.contains_key("variables")));
    if !named {
        return Ok(merged);
    }
    let mut tree: serde_json::Value =
        merged.try_deserialize().map_err(|e| ConfigErrors::single(error_key(&e), e.to_string()))?;
    let mut errors = ConfigErrors::default();
    if let Some(providers) = tree.get_mut("providers").and_then(serde_json::Value::as_object_mut) {
        presets::apply(providers, &mut errors);
    }
    if !errors.0.is_empty() {
        return Err(errors);
    }
    config::Config::builder()
        .add_source(config::File::from_str(&tree.to_string(), config::FileFormat::Json))
        .build()
        .map_err(|e| ConfigErrors::single("(providers)", e.to_string()))
}

/// The file layers alone (defaults and the optional file), without the environment.
fn file_layers(file: Option<&Path>) -> Result<config::Config, ConfigErrors> {
    let mut builder = config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigErrors::single("--config", format!("{} is not a readable file", path.display())));
        }
        // JSON for generated files (the Helm chart renders one), TOML otherwise.
        let format = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            config::FileFormat::Json
        } else {
            config::FileFormat::Toml
        };
        builder = builder.add_source(config::File::from(path).format(format).required(true));
    }
    builder
        .build()
        .map_err(|e| ConfigErrors::single(file.map_or("(defaults)".into(), |p| p.display().to_string()), e.to_string()))
}

/// The key a `config` error is about: `for key `a.b`` plus an `unknown field `c``, if any.
fn error_key(e: &config::ConfigError) -> String {
    let text = e.to_string();
    let quoted_after =
        |marker: &str| text.split(marker).nth(1).and_then(|rest| rest.split('`').next()).map(str::to_owned);
    match (quoted_after("for key `"), quoted_after("unknown field `")) {
        (Some(key), Some(field)) => format!("{key}.{field}"),
        (Some(key), None) => key,
        (None, Some(field)) => field,
        (None, None) => "(configuration)".to_owned(),
    }
}

/// Loads and validates in one go, reporting the problems of both steps together.
pub fn load_and_build(file: Option<&Path>, now: crate::clock::UnixTime) -> Result<(Built, LogSettings), ConfigErrors> {
    let files = file_layers(file)?;
    let secret_errors = secrets::refuse_secrets_in_files(&files).err().unwrap_or_default();
    let settings = match load_layers(files) {
        Ok(settings) => settings,
        Err(mut errors) => {
            errors.0.splice(0..0, secret_errors.0);
            return Err(errors);
        }
    };
    match build(&settings, now) {
        Ok(built) if secret_errors.0.is_empty() => Ok((built, settings.log)),
        Ok(_) => Err(secret_errors),
        Err(mut errors) => {
            errors.0.splice(0..0, secret_errors.0);
            Err(errors)
        }
    }
}
