//! Validation: turns `Settings` into the parts the broker is built from, collecting every
//! problem with the key it belongs to.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::{Host, Url};

use super::registries;
use super::secrets::{missing, resolve};
use super::{ConfigErrors, Profile, RedisTopology, Settings, StoreKind, StoreSettings};
use crate::client_metadata::{AddressPolicy, FetchConfig};
use crate::clock::UnixTime;
use crate::crypto::fresh_key_id;
use crate::crypto::seal::KeyRing;
use crate::crypto::signing::SigningKeys;
use crate::http::limits::Rates;
use crate::oauth::RegistrationPolicy;
use crate::oauth::background::BackgroundRefresh;
use crate::oauth::documents::CachePolicy;
use crate::oauth::refresh::RefreshPolicy;
use crate::oauth::registry::Registry;
use crate::oauth::tokens::Lifetimes;
use crate::store::WriteSchema;
use crate::store::{ClientCaps, RedisTarget, Topology};
use crate::upstream::ProviderConfig;
use ipnet::IpNet;

/// Client ID Metadata Documents: how to fetch them and how long to keep them.
#[derive(Debug)]
pub struct DocumentSettings {
    pub fetch: FetchConfig,
    pub cache: CachePolicy,
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsChoice {
    Off,
    /// On the main listener.
    Shared,
    /// On a listener of its own.
    Separate(SocketAddr),
}

#[derive(Debug)]
pub enum StoreChoice {
    Memory,
    Redis { target: RedisTarget, prefix: String, timeout: Duration, schema: WriteSchema },
}

/// Everything validated configuration yields.
#[derive(Debug)]
pub struct Built {
    pub profile: Profile,
    pub issuer: String,
    pub bind: SocketAddr,
    pub workers: usize,
    pub client_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How long to go on serving, unready, between SIGTERM and closing the listener.
    pub shutdown_delay: Duration,
    pub metrics: MetricsChoice,
    pub registry: Registry,
    pub providers: Vec<ProviderConfig>,
    pub keyring: KeyRing,
    pub signing: SigningKeys,
    pub lifetimes: Lifetimes,
    /// How many verified access tokens introspection remembers (0: none).
    pub verified_cache: usize,
    pub registration: RegistrationPolicy,
    pub store: StoreChoice,
    /// `None` when Client ID Metadata Documents are disabled.
    pub documents: Option<DocumentSettings>,
    pub refresh: RefreshPolicy,
    /// `None` when background refresh is off.
    pub background: Option<BackgroundRefresh>,
    pub rates: Rates,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub audit: crate::audit::AuditSettings,
    /// `None` when the admin API is off.
    pub admin: Option<super::admin::AdminSettings>,
    /// The login provider's id, when people sign in to Tether there first.
    pub login: Option<String>,
    /// Trusted enterprise identity providers (ID-JAG).
    pub enterprise: Vec<crate::oauth::enterprise::TrustedIdp>,
    /// Things that work but an operator should know (ephemeral keys, memory store).
    pub warnings: Vec<String>,
}

/// Validates `settings`; `now` dates ephemeral development keys.
pub fn build(settings: &Settings, now: UnixTime) -> Result<Built, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut warnings = Vec::new();
    let production = settings.profile == Profile::Production;

    let issuer = check_issuer(&settings.issuer, production, &mut errors);
    let bind = settings
        .server
        .bind
        .parse::<SocketAddr>()
        .map_err(|e| errors.push("server.bind", format!("`{}` is not host:port ({e})", settings.server.bind)))
        .ok();
    let lifetimes = lifetimes(settings, &mut errors);
    let store = store(settings, production, &mut errors, &mut warnings);
    let keys = keys(settings, production, now, &mut errors, &mut warnings);
    let callback = issuer.as_ref().and_then(|i| Url::parse(&format!("{i}/callback")).ok());
    let providers = registries::providers(settings, callback.as_ref(), production, &mut errors);
    let resources = registries::resources(settings, production, &mut errors);
    let clients = registries::clients(settings, now, &mut errors);
    let documents = documents(settings, &mut errors);
    let (refresh, background) = upstream(settings, &providers, &mut errors);
    let audit = super::audit::audit(&settings.audit, production, &mut errors);
    let admin = super::admin::admin(&settings.admin, bind, &mut errors);
    let login = login(settings, &providers, &mut errors);
    let enterprise = enterprise(settings, login.as_deref(), &providers, documents.is_some(), &mut errors);
    if login.is_some() && settings.tokens.session_ttl_secs == 0 {
        errors.push("tokens.session_ttl_secs", "must be above 0 with [login]: the sign-in is the session");
    }
    let r = &settings.registration;
    if !(600..=31_536_000).contains(&r.unused_client_ttl_secs) {
        errors.push("registration.unused_client_ttl_secs", "must be between 600 and 31536000 seconds");
    }
    if r.client_ttl_secs < settings.tokens.refresh_token_ttl_secs {
        errors.push(
            "registration.client_ttl_secs",
            "must not be shorter than tokens.refresh_token_ttl_secs (refresh tokens would outlive their client)",
        );
    }
    if !(1..=300).contains(&settings.server.client_timeout_secs) {
        errors.push("server.client_timeout_secs", "must be between 1 and 300");
    }
    let trusted_proxies = networks(&settings.server.trusted_proxies, "server.trusted_proxies", &mut errors);
    if !(1..=3600).contains(&settings.server.shutdown_timeout_secs) {
        errors.push("server.shutdown_timeout_secs", "must be between 1 and 3600");
    }
    if settings.server.shutdown_delay_secs > 600 {
        errors.push("server.shutdown_delay_secs", "must be at most 600");
    }
    let metrics = match (settings.metrics.enabled, settings.metrics.bind.trim()) {
        (false, _) => MetricsChoice::Off,
        (true, "") => MetricsChoice::Shared,
        (true, addr) => match addr.parse::<SocketAddr>() {
            Ok(addr) if Some(addr) == bind => {
                errors.push("metrics.bind", "must differ from server.bind (leave it empty to share the listener)");
                MetricsChoice::Off
            }
            Ok(addr) => MetricsChoice::Separate(addr),
            Err(e) => {
                errors.push("metrics.bind", format!("`{addr}` is not host:port ({e})"));
                MetricsChoice::Off
            }
        },
    };
    if !(1..=60_000).contains(&settings.store.timeout_ms) {
        errors.push("store.timeout_ms", "must be between 1 and 60000");
    }
    if WriteSchema::parse(settings.store.write_schema).is_none() {
        errors
            .push("store.write_schema", "must be 1 or 2 (the record format new grants and connections are written in)");
    }

    match (issuer, bind, lifetimes, store, keys) {
        (Some(issuer), Some(bind), Some(lifetimes), Some(store), Some((keyring, signing))) if errors.0.is_empty() => {
            Ok(Built {
                profile: settings.profile,
                issuer,
                bind,
                workers: settings.server.workers,
                client_timeout: Duration::from_secs(settings.server.client_timeout_secs),
                shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
                shutdown_delay: Duration::from_secs(settings.server.shutdown_delay_secs),
                metrics,
                registry: Registry::new(resources, clients),
                providers,
                keyring,
                signing,
                lifetimes,
                verified_cache: settings.tokens.verified_cache_entries,
                registration: RegistrationPolicy {
                    enabled: settings.registration.enabled,
                    caps: ClientCaps {
                        max_clients: settings.limits.max_clients,
                        per_hour: settings.limits.registrations_per_hour,
                    },
                },
                store,
                documents,
                refresh,
                background,
                rates: Rates {
                    register_per_minute: settings.limits.register_per_minute,
                    authorize_per_minute: settings.limits.authorize_per_minute,
                    token_per_minute: settings.limits.token_per_minute,
                    introspect_per_second: settings.limits.introspect_per_second,
                    upstream_rejected_per_minute: settings.limits.upstream_rejected_per_minute,
                },
                trusted_proxies,
                audit,
                admin,
                login,
                enterprise,
                warnings,
            })
        }
        _ => Err(errors),
    }
}

/// RFC 8414 §2: "a case-sensitive URL that uses the https scheme and has no query or
/// fragment components". The string is published exactly as written, so it must already be
/// in the form clients compare byte for byte.
fn check_issuer(issuer: &str, production: bool, errors: &mut ConfigErrors) -> Option<String> {
    let Ok(url) = Url::parse(issuer) else {
        errors.push("issuer", format!("`{issuer}` is not an absolute URL"));
        return None;
    };
    let problem = if url.query().is_some() || url.fragment().is_some() || issuer.contains(['?', '#']) {
        Some("must have no query and no fragment")
    } else if issuer.ends_with('/') {
        Some("must not end with `/` (clients compare the issuer byte for byte)")
    } else if !matches!(url.scheme(), "https" | "http") {
        Some("must be an https URL")
    } else if url.scheme() == "http" && (production || !is_loopback(&url)) {
        Some("must be https (http is allowed only for a loopback issuer in the development profile)")
    } else if url.username() != "" || url.password().is_some() {
        Some("must not contain credentials")
    } else if url.path() != "/" {
        // MCP clients look for metadata at the origin's /.well-known/oauth-authorization-server
        // and older ones fall back to /authorize, /token and /register at the origin.
        Some("must be an origin without a path (Tether serves its endpoints at the root); give Tether its own host")
    } else {
        None
    };
    match problem {
        Some(p) => {
            errors.push("issuer", p);
            None
        }
        None => Some(issuer.to_owned()),
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn lifetimes(settings: &Settings, errors: &mut ConfigErrors) -> Option<Lifetimes> {
    let t = &settings.tokens;
    let mut check = |key: &str, value: u64, min: u64, max: u64| {
        if !(min..=max).contains(&value) {
            errors.push(format!("tokens.{key}"), format!("must be between {min} and {max} seconds"));
        }
    };
    check("access_token_ttl_secs", t.access_token_ttl_secs, 60, 86_400);
    check("refresh_token_ttl_secs", t.refresh_token_ttl_secs, 3600, 31_536_000);
    check("code_ttl_secs", t.code_ttl_secs, 10, 600);
    check("refresh_grace_secs", t.refresh_grace_secs, 0, 3600);
    check("authorization_ttl_secs", t.authorization_ttl_secs, 60, 3600);
    check("tombstone_ttl_secs", t.tombstone_ttl_secs, 3600, 31_536_000);
    check("session_ttl_secs", t.session_ttl_secs, 0, 86_400);
    if t.verified_cache_entries > 10_000_000 {
        errors.push("tokens.verified_cache_entries", "must be at most 10000000 (about 4 GB)");
    }
    if settings.consent.remember_secs > 31_536_000 {
        errors.push("consent.remember_secs", "must be at most 31536000 (a year)");
    }
    if t.refresh_token_ttl_secs < t.access_token_ttl_secs {
        errors.push("tokens.refresh_token_ttl_secs", "must not be shorter than access_token_ttl_secs");
    }
    Some(Lifetimes {
        access_token: Duration::from_secs(t.access_token_ttl_secs),
        refresh_token: Duration::from_secs(t.refresh_token_ttl_secs),
        code: Duration::from_secs(t.code_ttl_secs),
        authorization: Duration::from_secs(t.authorization_ttl_secs),
        client_unused: Duration::from_secs(settings.registration.unused_client_ttl_secs),
        refresh_grace: Duration::from_secs(t.refresh_grace_secs),
        consent_memory: Duration::from_secs(settings.consent.remember_secs),
        client_idle: Duration::from_secs(settings.registration.client_ttl_secs),
        tombstone: Duration::from_secs(t.tombstone_ttl_secs),
        session: Duration::from_secs(t.session_ttl_secs),
    })
}

fn store(
    settings: &Settings,
    production: bool,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<String>,
) -> Option<StoreChoice> {
    let s = &settings.store;
    let prefix_ok = !s.prefix.is_empty()
        && s.prefix.len() <= 64
        && s.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !prefix_ok {
        errors.push("store.prefix", "must be 1-64 characters of A-Z a-z 0-9 - _ .");
    }
    match s.kind {
        StoreKind::Memory if production => {
            errors.push("store.kind", "the production profile needs `redis`: the memory store is not shared between replicas and loses everything on restart");
            None
        }
        StoreKind::Memory => {
            warnings.push("store.kind = \"memory\": single process only, every grant is lost on restart".to_owned());
            Some(StoreChoice::Memory)
        }
        StoreKind::Redis => {
            let file = Some(Path::new(&s.url_file));
            let Some(urls) = resolve(Some(&s.url), file, "store.url", errors) else {
                errors.push(
                    "store.url",
                    "required when store.kind = \"redis\" (redis://host:port or rediss://host:port)",
                );
                return None;
            };
            let target = redis_target(s, &urls, errors)?;
            // Checked with the other store settings.
            let schema = WriteSchema::parse(s.write_schema).unwrap_or_default();
            let timeout = Duration::from_millis(s.timeout_ms);
            Some(StoreChoice::Redis { target, prefix: s.prefix.clone(), timeout, schema })
        }
    }
}

/// The PEM CA certificates in the file `path` names (`None` when `path` is empty, or, with an
/// error for `key`, when the file is unreadable or holds no certificate).
fn ca_bundle(key: &str, path: &str, errors: &mut ConfigErrors) -> Option<Vec<u8>> {
    if path.is_empty() {
        return None;
    }
    match std::fs::read(path) {
        Ok(pem) if reqwest::Certificate::from_pem_bundle(&pem).is_ok_and(|certs| !certs.is_empty()) => Some(pem),
        Ok(_) => {
            errors.push(key, format!("{path} holds no PEM certificate"));
            None
        }
        Err(e) => {
            errors.push(key, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// The Redis deployment `store.*` describes.
fn redis_target(s: &StoreSettings, urls: &SecretString, errors: &mut ConfigErrors) -> Option<RedisTarget> {
    let mut parsed = Vec::new();
    for url in urls.expose_secret().split(',').map(str::trim) {
        match Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host().is_some() => parsed.push(u),
            _ => {
                errors.push("store.url", "each URL must be redis:// or rediss:// with a host (comma-separated)");
                return None;
            }
        }
    }
    let topology = match s.topology {
        RedisTopology::Standalone if parsed.len() > 1 => {
            errors.push("store.url", "one URL for topology = \"standalone\" (several are for cluster or sentinel)");
            return None;
        }
        RedisTopology::Standalone => Topology::Standalone,
        RedisTopology::Cluster => Topology::Cluster,
        RedisTopology::Sentinel if s.sentinel_master.trim().is_empty() => {
            errors.push("store.sentinel_master", "required for topology = \"sentinel\"");
            return None;
        }
        RedisTopology::Sentinel => Topology::Sentinel { master: s.sentinel_master.trim().to_owned() },
    };
    let password = resolve(Some(&s.password), Some(Path::new(&s.password_file)), "store.password", errors);
    let tls = parsed.iter().any(|u| u.scheme() == "rediss");
    if !s.ca_file.is_empty() && !tls {
        errors.push("store.ca_file", "applies to rediss:// URLs only");
        return None;
    }
    let ca_pem = ca_bundle("store.ca_file", &s.ca_file, errors);
    Some(RedisTarget {
        username: Some(s.username.trim().to_owned()).filter(|u| !u.is_empty()),
        password,
        ca_pem,
        ..RedisTarget::new(topology, urls.expose_secret())
    })
}

fn keys(
    settings: &Settings,
    production: bool,
    now: UnixTime,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<String>,
) -> Option<(KeyRing, SigningKeys)> {
    let k = &settings.keys;
    let key_id = fresh_key_id(now);
    let encryption = key_list(
        resolve(Some(&k.encryption), Some(Path::new(&k.encryption_file)), "keys.encryption", errors),
        KeyList { key: "keys.encryption", production, ephemeral_cost: "stored grants are unreadable after a restart" },
        KeyRing::parse,
        || Some(KeyRing::generate_spec(&key_id)),
        (errors, warnings),
    );
    let signing = key_list(
        resolve(Some(&k.signing), Some(Path::new(&k.signing_file)), "keys.signing", errors),
        KeyList { key: "keys.signing", production, ephemeral_cost: "issued tokens stop verifying after a restart" },
        SigningKeys::parse,
        || SigningKeys::generate_spec(&key_id).ok(),
        (errors, warnings),
    );
    encryption.zip(signing)
}

/// A configured key list and where it comes from (`tether keys rotate` prints where the
/// new list goes): `None` when none is configured.
pub fn configured_keys(
    settings: &Settings,
    kind: crate::crypto::rotation::KeyKind,
) -> Result<Option<(SecretString, String)>, ConfigErrors> {
    use crate::crypto::rotation::KeyKind;
    let k = &settings.keys;
    let (key, inline, file) = match kind {
        KeyKind::Signing => ("keys.signing", &k.signing, &k.signing_file),
        KeyKind::Encryption => ("keys.encryption", &k.encryption, &k.encryption_file),
    };
    let mut errors = ConfigErrors::default();
    let spec = resolve(Some(inline), Some(Path::new(file)), key, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors);
    }
    let source = if file.is_empty() { super::env_name(key) } else { file.clone() };
    Ok(spec.map(|spec| (spec, source)))
}

struct KeyList {
    key: &'static str,
    production: bool,
    /// What an ephemeral key costs, for the development warning.
    ephemeral_cost: &'static str,
}

/// A configured key list, parsed; or, when none is configured, an error in production and an
/// ephemeral key (with a warning) in development.
fn key_list<T>(
    configured: Option<SecretString>,
    list: KeyList,
    parse: impl Fn(&str) -> Result<T, crate::crypto::KeySpecError>,
    generate: impl FnOnce() -> Option<String>,
    (errors, warnings): (&mut ConfigErrors, &mut Vec<String>),
) -> Option<T> {
    let key = list.key;
    match configured {
        Some(spec) => parse(spec.expose_secret()).map_err(|e| errors.push(key, e.to_string())).ok(),
        None if list.production => {
            errors.push(key, missing(key) + " (generate with `tether keys generate`)");
            None
        }
        None => {
            warnings.push(format!("no {key} configured: using an ephemeral key; {}", list.ephemeral_cost));
            generate().and_then(|spec| parse(&spec).ok())
        }
    }
}

/// Addresses or CIDR networks; an address is its own /32 (or /128) network.
fn networks(list: &[String], key: &'static str, errors: &mut ConfigErrors) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for net in list {
        match net.parse::<IpNet>().or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(net) => nets.push(net),
            Err(_) => errors.push(key, format!("`{net}` is not an address or CIDR network")),
        }
    }
    nets
}

fn documents(settings: &Settings, errors: &mut ConfigErrors) -> Option<DocumentSettings> {
    let c = &settings.client_metadata;
    if !c.enabled {
        return None;
    }
    let allow = networks(&c.allow_networks, "client_metadata.allow_networks", errors);
    let extra_roots_pem = ca_bundle("client_metadata.ca_file", &c.ca_file, errors);
    if !(100..=30_000).contains(&c.timeout_ms) {
        errors.push("client_metadata.timeout_ms", "must be between 100 and 30000");
    }
    if !(512..=1_048_576).contains(&c.max_bytes) {
        errors.push("client_metadata.max_bytes", "must be between 512 and 1048576");
    }
    if c.cache_secs > c.max_cache_secs {
        errors.push("client_metadata.cache_secs", "must not exceed max_cache_secs");
    }
    Some(DocumentSettings {
        fetch: FetchConfig {
            timeout: Duration::from_millis(c.timeout_ms),
            max_bytes: c.max_bytes,
            policy: AddressPolicy { allow },
            extra_roots_pem,
        },
        cache: CachePolicy {
            default_ttl: c.cache_secs,
            max_ttl: c.max_cache_secs,
            stale_if_error: c.stale_if_error_secs,
        },
    })
}

fn upstream(
    settings: &Settings,
    providers: &[ProviderConfig],
    errors: &mut ConfigErrors,
) -> (RefreshPolicy, Option<BackgroundRefresh>) {
    let u = &settings.upstream;
    let slowest = providers.iter().map(|p| p.timeout).max().unwrap_or_default();
    let lock_ttl = Duration::from_millis(u.refresh_lock_ms);
    if lock_ttl <= slowest {
        errors.push(
            "upstream.refresh_lock_ms",
            format!(
                "must exceed the slowest provider timeout ({} ms), or a slow refresh could outlive its lock",
                slowest.as_millis()
            ),
        );
    }
    if !(100..=120_000).contains(&u.refresh_wait_ms) {
        errors.push("upstream.refresh_wait_ms", "must be between 100 and 120000");
    }
    if u.refresh_skew_secs > 3600 {
        errors.push("upstream.refresh_skew_secs", "must be at most 3600");
    }
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    let policy =
        RefreshPolicy { skew: secs(u.refresh_skew_secs), lock_ttl, wait: Duration::from_millis(u.refresh_wait_ms) };
    let background = u.background_refresh.then(|| {
        if u.background_interval_secs == 0 || u.background_window_secs == 0 {
            errors.push("upstream.background_interval_secs", "the interval and the window must be positive");
        }
        BackgroundRefresh {
            interval: Duration::from_secs(u.background_interval_secs.max(1)),
            window: Duration::from_secs(u.background_window_secs.max(1)),
            lead: secs(u.background_lead_secs),
        }
    });
    (policy, background)
}

/// `[enterprise.<id>]`: identity providers whose ID-JAGs are taken. Each must be the login
/// provider (its subjects are Tether's users: no guessing, no matching by email).
fn enterprise(
    settings: &Settings,
    login: Option<&str>,
    providers: &[ProviderConfig],
    fetching: bool,
    errors: &mut ConfigErrors,
) -> Vec<crate::oauth::enterprise::TrustedIdp> {
    let login_issuer = login.and_then(|id| providers.iter().find(|p| p.id == id)).and_then(|p| match &p.endpoints {
        crate::upstream::EndpointSource::Discover { issuer } => Some(issuer.clone()),
        crate::upstream::EndpointSource::Static(_) => None,
    });
    let mut out = Vec::new();
    for (id, e) in &settings.enterprise {
        let key = |member: &str| format!("enterprise.{id}.{member}");
        if login_issuer.as_deref() != Some(e.issuer.as_str()) {
            errors.push(
                key("issuer"),
                "must be the issuer of the [login] provider: its subjects are the users ID-JAGs name",
            );
        }
        if !fetching {
            errors.push(key("jwks_url"), "needs client_metadata.enabled: the keys are fetched with its address rules");
        }
        let jwks_url = match Url::parse(&e.jwks_url) {
            Ok(url) if url.scheme() == "https" && url.host().is_some() => Some(url),
            _ => {
                errors.push(key("jwks_url"), format!("`{}` must be an https URL", e.jwks_url));
                None
            }
        };
        let mut algorithms = Vec::new();
        for name in &e.algorithms {
            match name.parse::<jsonwebtoken::Algorithm>() {
                Ok(alg)
                    if !matches!(
                        alg,
                        jsonwebtoken::Algorithm::HS256
                            | jsonwebtoken::Algorithm::HS384
                            | jsonwebtoken::Algorithm::HS512
                    ) =>
                {
                    algorithms.push(alg);
                }
                _ => errors.push(key("algorithms"), format!("`{name}` is not an asymmetric JWS algorithm")),
            }
        }
        for resource in &e.resources {
            if !settings.resources.contains_key(resource) {
                errors.push(key("resources"), format!("unknown resource `{resource}`"));
            }
        }
        if e.resources.is_empty() || e.clients.is_empty() {
            errors.push(format!("enterprise.{id}"), "names the resources and the clients it may grant access to");
        }
        if !(30..=3600).contains(&e.max_lifetime_secs) {
            errors.push(key("max_lifetime_secs"), "must be between 30 and 3600");
        }
        if let Some(jwks_url) = jwks_url {
            out.push(crate::oauth::enterprise::TrustedIdp {
                id: id.clone(),
                issuer: e.issuer.clone(),
                jwks_url,
                algorithms,
                resources: e.resources.clone(),
                clients: e.clients.clone(),
                max_lifetime: i64::try_from(e.max_lifetime_secs).unwrap_or(300),
                create_users: e.create_users,
            });
        }
    }
    out
}

/// `[login]`: an OpenID provider of the registry (its ID token names the user).
fn login(settings: &Settings, providers: &[ProviderConfig], errors: &mut ConfigErrors) -> Option<String> {
    let login = settings.login.as_ref()?;
    match providers.iter().find(|p| p.id == login.provider) {
        Some(p) if matches!(p.kind, crate::upstream::ProviderKind::Oidc | crate::upstream::ProviderKind::Google) => {
            Some(login.provider.clone())
        }
        Some(_) => {
            errors.push("login.provider", "must be an OpenID provider (kind = \"oidc\" or \"google\")");
            None
        }
        None if settings.providers.contains_key(&login.provider) => None,
        None => {
            errors.push("login.provider", format!("`{}` is not in [providers]", login.provider));
            None
        }
    }
}
