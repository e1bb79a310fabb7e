//! The test harness: spawns the real application (as `tether serve` builds it) on a free
//! port, with a real Redis or the memory store and the development upstream stand-in, and
//! offers typed helpers for each endpoint and for a browser walking the flow.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod enterprise;
pub mod process;
pub mod redis;
#[path = "../../examples/support/tls_server.rs"]
pub mod tls_server;

#[path = "../../examples/support/dev_upstream/mod.rs"]
pub mod dev_upstream;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tether::clock::{Clock, ManualClock, SystemClock};
use tether::startup::Application;

#[allow(unused_imports)] // each test binary uses some of these
pub use dev_upstream::{
    ClientAuth, DevUpstream, IdTokenFault, Oidc, PERSONAL_TENANT, Profile, Rotation, Rules, UpstreamConfig, tenant_id,
};
#[allow(unused_imports)]
pub use redis::{RedisCluster, RedisSentinel, RedisServer};

pub const RESOURCE_ID: &str = "files";
pub const RESOURCE_URI: &str = "https://files.example/mcp";
pub const RESOURCE_SECRET: &str = "files-introspection-secret";
pub const OTHER_RESOURCE_ID: &str = "calendar";
pub const OTHER_RESOURCE_URI: &str = "https://calendar.example/mcp";
pub const OTHER_RESOURCE_SECRET: &str = "calendar-introspection-secret";
pub const UPSTREAM_SECRET: &str = "dev-upstream-secret";
pub const CLIENT_REDIRECT: &str = "http://127.0.0.1/callback";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// One Tether instance as its callers see it: a base URL and the issuer it publishes, with
/// typed helpers for each endpoint.
#[derive(Clone)]
pub struct Tether {
    /// Where this instance listens.
    pub base: String,
    /// The issuer (the same for every instance of a cluster).
    pub issuer: String,
    pub api: reqwest::Client,
}

impl Tether {
    pub fn new(base: &str, issuer: &str) -> Self {
        let api = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: base.to_owned(), issuer: issuer.to_owned(), api }
    }
}

/// An in-process instance (the application `tether serve` builds) with its stand-in and store.
pub struct TestApp {
    pub tether: Tether,
    pub upstream: Arc<DevUpstream>,
    pub redis: Option<RedisServer>,
    pub clock: ManualClock,
    pub kind: Kind,
    /// The admin API's base URL, when the configuration turns it on.
    pub admin: Option<String>,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestApp {
    type Target = Tether;
    fn deref(&self) -> &Tether {
        &self.tether
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// The upstream stand-in, speaking `kind`, accepting these Tether callbacks.
async fn stand_in(callbacks: &[String], options: &Options) -> DevUpstream {
    let defaults = UpstreamConfig::default();
    DevUpstream::start(UpstreamConfig {
        client_secret: Some(UPSTREAM_SECRET.into()),
        redirect_uris: callbacks.to_vec(),
        profile: options.kind.profile(),
        // Slack (without the opt-in), Notion and Figma take no PKCE.
        require_pkce: !matches!(
            options.kind,
            Kind::Slack | Kind::Notion | Kind::Figma | Kind::Atlassian | Kind::Box | Kind::Discord
        ),
        rules: options.kind.rules(),
        access_token_ttl: options.upstream_ttl.unwrap_or(defaults.access_token_ttl),
        ..defaults
    })
    .await
    .unwrap()
}

/// Several Tether instances sharing one Redis, one issuer, one key set and one upstream, as
/// replicas behind a load balancer do. Browser flows go through the first instance.
pub struct TestCluster {
    pub apps: Vec<TestApp>,
    pub redis: RedisServer,
    pub issuer: String,
    upstream: Arc<DevUpstream>,
    options: Options,
    /// A handle on each instance's listening socket, so a restarted instance keeps its port.
    listeners: Vec<TcpListener>,
    keys: tempfile::TempDir,
}

impl TestCluster {
    pub async fn spawn(n: usize, options: Options) -> Self {
        Self::spawn_with_keys(n, options, key_files()).await
    }

    /// `n` instances reading their keys from the files `encryption` and `signing` in `keys`.
    pub async fn spawn_with_keys(n: usize, options: Options, keys: tempfile::TempDir) -> Self {
        let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let issuer = format!("http://127.0.0.1:{}", listeners[0].local_addr().unwrap().port());
        let upstream = Arc::new(stand_in(&[format!("{issuer}/callback")], &options).await);
        let redis = RedisServer::start();
        let apps = listeners
            .iter()
            .map(|l| {
                let listener = l.try_clone().unwrap();
                TestApp::start(listener, &issuer, upstream.clone(), Some(redis.url()), Some(keys.path()), &options)
            })
            .collect();
        Self { apps, redis, issuer, upstream, options, listeners, keys }
    }

    /// Rolling restart of instance `i` with the key files in `keys`: the old process stops
    /// (in-flight requests finish), the new one serves on the same port and clock time.
    pub async fn restart(&mut self, i: usize, keys: &std::path::Path) {
        let options = self.options.clone();
        self.restart_configured(i, keys, &options).await;
    }

    /// Rolling restart of instance `i` with `lines` in its `[store]` table (its keys as before).
    pub async fn restart_with_store(&mut self, i: usize, lines: &str) {
        let options = Options { store_extra: lines.to_owned(), ..self.options.clone() };
        let keys = self.keys.path().to_owned();
        self.restart_configured(i, &keys, &options).await;
    }

    async fn restart_configured(&mut self, i: usize, keys: &std::path::Path, options: &Options) {
        let listener = self.listeners[i].try_clone().unwrap();
        let elapsed = self.apps[i].clock.now() - SystemClock.now();
        let fresh =
            TestApp::start(listener, &self.issuer, self.upstream.clone(), Some(self.redis.url()), Some(keys), options);
        fresh.clock.advance(elapsed.max(0));
        let old = std::mem::replace(&mut self.apps[i], fresh);
        old.handle.stop(true).await;
    }

    /// Lets time pass on every instance's clock.
    pub fn advance(&self, secs: i64) {
        for app in &self.apps {
            app.clock.advance(secs);
        }
    }
}

/// Variations of the test configuration.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// TOML appended to the configuration (`{upstream}`: the stand-in's base URL).
    pub extra: String,
    /// Lines added to the `[server]` table (which `extra` cannot reopen).
    pub server: String,
    /// The `[store]` table's lines for a Redis of the test's own (a cluster, say), instead of
    /// the backend's.
    pub store: Option<String>,
    /// Lines added to the `[store]` table, whichever store it is.
    pub store_extra: String,
    /// Lines added to the files resource's table.
    pub files: String,
    /// Serve only the files resource (no calendar).
    pub single_resource: bool,
    /// The kind of provider the files resource is bound to (the stand-in speaks it).
    pub kind: Kind,
    /// Revoke upstream when a grant is revoked (the files resource's provider).
    pub revoke_upstream: bool,
    /// The stand-in's OIDC discovery is down when Tether starts.
    pub discovery_down: bool,
    /// Lifetime of the stand-in's access tokens (default one hour).
    pub upstream_ttl: Option<Duration>,
    /// Environment variables of `tether serve` processes (`process::Replicas`).
    pub env: Vec<(String, String)>,
    /// The quirk kinds' provider table, instead of the built-in one (a preset, say);
    /// `{upstream}` stands for the stand-in's base URL, `{dir}` for the directory holding
    /// `dev-secret`.
    pub provider: Option<String>,
    /// Publish an https issuer (cookies become `__Host-` and `Secure`); browser flows over the
    /// plain-http test listener then lose their cookies, so only for inspecting responses.
    pub https_issuer: bool,
}

/// Provider kinds the files resource can be bound to, each against a stand-in speaking it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    #[default]
    OAuth2,
    GitHubApp,
    GitHubOAuthApp,
    Oidc,
    Google,
    /// The quirk profiles, configured with the `oauth2` kind's knobs (or a preset).
    Slack,
    Notion,
    Salesforce,
    /// The `gitlab` preset against the plain (rotating) stand-in at GitLab's paths.
    GitLab,
    Figma,
    Dropbox,
    Linear,
    /// The presets of the catalogue's other providers, each against the plain or OpenID
    /// stand-in taking on the provider's quirk classes (`Rules`).
    Microsoft,
    Atlassian,
    Box,
    HubSpot,
    Zoom,
    Asana,
    Discord,
    Okta,
    Auth0,
    Keycloak,
}

/// The audience the Auth0 preset is given in the tests.
pub const AUTH0_AUDIENCE: &str = "https://api.dev.example";

impl Kind {
    pub fn profile(self) -> Profile {
        match self {
            Kind::OAuth2 => Profile::OAuth2,
            Kind::GitHubApp => Profile::GitHub { expiring: true },
            Kind::GitHubOAuthApp => Profile::GitHub { expiring: false },
            Kind::Oidc => Profile::Oidc,
            Kind::Google => Profile::Google,
            Kind::Slack => Profile::Slack,
            Kind::Notion => Profile::Notion,
            Kind::Salesforce => Profile::Salesforce,
            Kind::GitLab => Profile::OAuth2,
            Kind::Figma => Profile::Figma,
            Kind::Dropbox => Profile::Dropbox,
            Kind::Linear => Profile::Linear,
            Kind::Microsoft | Kind::Okta | Kind::Auth0 | Kind::Keycloak => Profile::Oidc,
            Kind::Atlassian | Kind::Box | Kind::HubSpot | Kind::Zoom | Kind::Asana | Kind::Discord => Profile::OAuth2,
        }
    }

    /// The quirk classes of the provider this kind stands for.
    pub fn rules(self) -> Rules {
        let offline = Some("offline_access".to_owned());
        let extra = |v: Value| v.as_object().cloned().unwrap_or_default();
        match self {
            Kind::Microsoft => Rules {
                multi_tenant: true,
                offline_scope: offline,
                rotation: Rotation::ReissueKeepOld,
                ..Rules::default()
            },
            Kind::Atlassian => Rules {
                client_auth: ClientAuth::Body,
                offline_scope: offline,
                required_params: vec![
                    ("audience".into(), "api.atlassian.com".into()),
                    ("prompt".into(), "consent".into()),
                ],
                ..Rules::default()
            },
            Kind::Box => {
                Rules { client_auth: ClientAuth::Body, code_ttl: Some(Duration::from_secs(30)), ..Rules::default() }
            }
            Kind::HubSpot | Kind::Asana => {
                Rules { client_auth: ClientAuth::Body, rotation: Rotation::Keep, ..Rules::default() }
            }
            Kind::Zoom => Rules {
                client_auth: ClientAuth::Basic,
                token_extra: extra(json!({"api_url": "https://api-eu.zoom.us"})),
                ..Rules::default()
            },
            Kind::Okta => Rules {
                offline_scope: offline,
                refresh_needs_scope: true,
                issuer_path: "/oauth2/default".into(),
                ..Rules::default()
            },
            Kind::Auth0 => Rules {
                offline_scope: offline,
                issuer_path: "/".into(),
                required_params: vec![("audience".into(), AUTH0_AUDIENCE.into())],
                ..Rules::default()
            },
            Kind::Keycloak => Rules {
                offline_scope: offline,
                rotation: Rotation::ReissueKeepOld,
                issuer_path: "/realms/dev".into(),
                token_extra: extra(json!({"refresh_expires_in": 0, "not-before-policy": 0, "session_state": "s-dev"})),
                ..Rules::default()
            },
            _ => Rules::default(),
        }
    }

    /// The provider id the configuration gives this kind.
    pub fn provider_id(self) -> &'static str {
        match self {
            Kind::OAuth2 => "dev",
            Kind::GitHubApp | Kind::GitHubOAuthApp => "gh",
            Kind::Oidc => "idp",
            Kind::Google => "gg",
            Kind::Slack => "slack",
            Kind::Notion => "notion",
            Kind::Salesforce => "sf",
            Kind::GitLab => "gitlab",
            Kind::Figma => "figma",
            Kind::Dropbox => "dropbox",
            Kind::Linear => "linear",
            Kind::Microsoft => "ms",
            Kind::Atlassian => "atlassian",
            Kind::Box => "box",
            Kind::HubSpot => "hubspot",
            Kind::Zoom => "zoom",
            Kind::Asana => "asana",
            Kind::Discord => "discord",
            Kind::Okta => "okta",
            Kind::Auth0 => "auth0",
            Kind::Keycloak => "keycloak",
        }
    }
}

fn config_toml(issuer: &str, upstream: &str, store: &str, dir: &std::path::Path, options: &Options) -> String {
    let d = dir.display();
    let other = if options.single_resource {
        String::new()
    } else {
        format!(
            r#"[resources.{OTHER_RESOURCE_ID}]
uri = "{OTHER_RESOURCE_URI}"
name = "Calendar"
provider = "dev"
secret_file = "{d}/calendar-secret"
[[resources.{OTHER_RESOURCE_ID}.scopes]]
name = "calendar:read"
upstream = ["cal"]
default = true"#
        )
    };
    // `{upstream}` in the extra configuration stands for the stand-in's base URL.
    let extra = &options.extra.replace("{upstream}", upstream);
    let (server, files) = (&options.server, &options.files);
    let revoke = options.revoke_upstream;
    let provider = match options.kind {
        Kind::OAuth2 => String::new(),
        Kind::GitHubApp | Kind::GitHubOAuthApp => format!(
            "[providers.gh]\nkind = \"github\"\nclient_id = \"tether-dev\"\nclient_secret_file = \"{d}/dev-secret\"\nweb_url = \"{upstream}\"\napi_url = \"{upstream}\"\nscopes = [\"user\"]\ntimeout_secs = 2\nrevoke_upstream = {revoke}"
        ),
        Kind::Oidc => format!(
            "[providers.idp]\nkind = \"oidc\"\nclient_id = \"tether-dev\"\nclient_secret_file = \"{d}/dev-secret\"\nissuer = \"{upstream}\"\ntimeout_secs = 2\nrevoke_upstream = {revoke}"
        ),
        Kind::Google => format!(
            "[providers.gg]\nkind = \"google\"\nclient_id = \"tether-dev\"\nclient_secret_file = \"{d}/dev-secret\"\nissuer = \"{upstream}\"\ntimeout_secs = 2\nrevoke_upstream = {revoke}"
        ),
        // The catalogue's presets, pointed at the stand-in: the endpoints are overridden
        // (operator values win) where the preset names the real provider's host.
        Kind::Slack | Kind::Notion | Kind::Salesforce | Kind::GitLab | Kind::Figma | Kind::Dropbox | Kind::Linear
        | Kind::Microsoft | Kind::Atlassian | Kind::Box | Kind::HubSpot | Kind::Zoom | Kind::Asana | Kind::Discord
        | Kind::Okta | Kind::Auth0 | Kind::Keycloak => {
            options.provider.as_ref().map(|p| p.replace("{upstream}", upstream).replace("{dir}", &d.to_string())).unwrap_or_else(|| {
            let id = options.kind.provider_id();
            let here = format!("authorize_url = \"{upstream}/authorize\"\ntoken_url = \"{upstream}/token\"");
            let knobs = match options.kind {
                Kind::Slack => format!("preset = \"slack\"\n{here}"),
                Kind::Notion => format!("preset = \"notion\"\n{here}\nrevocation_url = \"{upstream}/revoke\""),
                Kind::Salesforce => format!(
                    "preset = \"salesforce\"\n{here}\nrevocation_url = \"{upstream}/revoke\"\ndefault_expires_in = 120\nscopes = []"
                ),
                Kind::Figma => format!(
                    "preset = \"figma\"\nauthorize_url = \"{upstream}/authorize\"\ntoken_url = \"{upstream}/api/oauth/token\"\nrefresh_url = \"{upstream}/api/oauth/refresh\""
                ),
                Kind::Dropbox => format!(
                    "preset = \"dropbox\"\n{here}\nuserinfo_url = \"{upstream}/2/users/get_current_account\"\nrevocation_url = \"{upstream}/2/auth/token/revoke\"\nrevoke_upstream = {revoke}"
                ),
                Kind::Linear => format!("preset = \"linear\"\n{here}\nuserinfo_url = \"{upstream}/graphql\"\nrevocation_url = \"{upstream}/oauth/revoke\"\nrevoke_upstream = {revoke}"),
                Kind::Microsoft => format!("preset = \"microsoft\"\nissuer = \"{upstream}/common/v2.0\""),
                Kind::Atlassian => format!(
                    "preset = \"atlassian\"\nvariables = {{ auth_url = \"{upstream}\", api_url = \"{upstream}\" }}"
                ),
                Kind::Box => format!("preset = \"box\"\n{here}\nuserinfo_url = \"{upstream}/2.0/users/me\"\nrevocation_url = \"{upstream}/revoke\"\nrevoke_upstream = {revoke}"),
                Kind::HubSpot => format!(
                    "preset = \"hubspot\"\n{here}\nuserinfo_url = \"{upstream}/oauth/v1/access-tokens/{{access_token}}\"\nrevocation_url = \"{upstream}/oauth/v1/refresh-tokens/{{refresh_token}}\"\nrevoke_upstream = {revoke}"
                ),
                Kind::Zoom => format!("preset = \"zoom\"\n{here}\nuserinfo_url = \"{upstream}/v2/users/me\"\nrevocation_url = \"{upstream}/revoke\"\nrevoke_upstream = {revoke}"),
                Kind::Asana => format!("preset = \"asana\"\n{here}\nuserinfo_url = \"{upstream}/api/1.0/users/me\"\nrevocation_url = \"{upstream}/revoke\"\nrevoke_upstream = {revoke}"),
                Kind::Discord => format!("preset = \"discord\"\n{here}\nuserinfo_url = \"{upstream}/api/users/@me\"\nrevocation_url = \"{upstream}/revoke\"\nrevoke_upstream = {revoke}"),
                Kind::Okta => format!(
                    "preset = \"okta\"\nvariables = {{ domain = \"okta.dev.example\" }}\nissuer = \"{upstream}/oauth2/default\"\nrevoke_upstream = {revoke}"
                ),
                Kind::Auth0 => format!(
                    "preset = \"auth0\"\nvariables = {{ domain = \"auth0.dev.example\", audience = \"{AUTH0_AUDIENCE}\" }}\nissuer = \"{upstream}/\"\nrevoke_upstream = {revoke}"
                ),
                Kind::Keycloak => format!(
                    "preset = \"keycloak\"\nvariables = {{ base_url = \"{upstream}\", realm = \"dev\" }}\nrevoke_upstream = {revoke}"
                ),
                _ => format!("preset = \"gitlab\"\nvariables = {{ base_url = \"{upstream}\" }}\nscopes = [\"user\"]\nrevoke_upstream = {revoke}"),
            };
            format!(
                "[providers.{id}]\nclient_id = \"tether-dev\"\nclient_secret_file = \"{d}/dev-secret\"\ntimeout_secs = 2\n{knobs}"
            )
            })
        }
    };
    let files_provider = options.kind.provider_id();
    let dev_revocation = if revoke && options.kind == Kind::OAuth2 {
        format!("revocation_url = \"{upstream}/revoke\"\nrevoke_upstream = true")
    } else {
        String::new()
    };
    format!(
        r#"
issuer = "{issuer}"
[server]
bind = "127.0.0.1:0"
workers = 2
{server}
[store]
{store}
[providers.dev]
kind = "oauth2"
display_name = "Dev Upstream"
client_id = "tether-dev"
client_secret_file = "{d}/dev-secret"
authorize_url = "{upstream}/authorize"
token_url = "{upstream}/token"
userinfo_url = "{upstream}/user"
subject_field = "id"
scopes = ["user"]
timeout_secs = 2
{dev_revocation}
{provider}
[resources.{RESOURCE_ID}]
uri = "{RESOURCE_URI}"
name = "Files"
provider = "{files_provider}"
secret_file = "{d}/files-secret"
{files}
[[resources.{RESOURCE_ID}.scopes]]
name = "files:read"
upstream = ["repo:read"]
default = true
[[resources.{RESOURCE_ID}.scopes]]
name = "files:write"
upstream = ["repo:write"]
{other}
{extra}
"#
    )
}

/// Writes the test configuration, and the secret files it names, into `dir`; returns its path.
fn write_config(
    dir: &std::path::Path,
    issuer: &str,
    upstream: &str,
    redis_url: Option<&str>,
    keys: Option<&std::path::Path>,
    options: &Options,
) -> std::path::PathBuf {
    let mut store = match (&options.store, redis_url) {
        (Some(lines), _) => format!("kind = \"redis\"\nprefix = \"test\"\ntimeout_ms = 1000\n{lines}"),
        (None, Some(url)) => format!("kind = \"redis\"\nurl = \"{url}\"\nprefix = \"test\"\ntimeout_ms = 500"),
        (None, None) => "kind = \"memory\"".to_owned(),
    };
    if !options.store_extra.is_empty() {
        store = format!("{store}\n{}", options.store_extra);
    }
    if let Some(keys) = keys {
        let k = keys.display();
        store.push_str(&format!("\n[keys]\nencryption_file = \"{k}/encryption\"\nsigning_file = \"{k}/signing\""));
    }
    std::fs::write(dir.join("dev-secret"), UPSTREAM_SECRET).unwrap();
    std::fs::write(dir.join("files-secret"), RESOURCE_SECRET).unwrap();
    std::fs::write(dir.join("calendar-secret"), OTHER_RESOURCE_SECRET).unwrap();
    let config = dir.join("tether.toml");
    std::fs::write(&config, config_toml(issuer, upstream, &store, dir, options)).unwrap();
    config
}

/// Fresh encryption and signing keys in the files `encryption` and `signing` of a new folder.
pub fn key_files() -> tempfile::TempDir {
    let keys = tempfile::tempdir().unwrap();
    let id = tether::crypto::fresh_key_id(SystemClock.now());
    std::fs::write(keys.path().join("encryption"), tether::crypto::seal::KeyRing::generate_spec(&id)).unwrap();
    std::fs::write(keys.path().join("signing"), tether::crypto::signing::SigningKeys::generate_spec(&id).unwrap())
        .unwrap();
    keys
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_single_resource(backend: Backend) -> Self {
        Self::spawn_with(backend, Options { single_resource: true, ..Options::default() }).await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let upstream = Arc::new(stand_in(&[format!("{base}/callback")], &options).await);
        upstream.fail_discovery(options.discovery_down);
        let redis = (backend == Backend::Redis).then(RedisServer::start);
        let issuer = if options.https_issuer { "https://tether.test".to_owned() } else { base.clone() };
        let mut app = Self::start(listener, &issuer, upstream, redis.as_ref().map(RedisServer::url), None, &options);
        app.redis = redis;
        app
    }

    /// Starts one instance on `listener` with the given issuer, stand-in, store and keys.
    fn start(
        listener: TcpListener,
        issuer: &str,
        upstream: Arc<DevUpstream>,
        redis_url: Option<String>,
        keys: Option<&std::path::Path>,
        options: &Options,
    ) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            drop(tether::telemetry::init(tether::settings::LogFormat::Pretty, "debug"));
        }
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), issuer, &upstream.base_url, redis_url.as_deref(), keys, options);

        let clock = ManualClock::starting_at(SystemClock.now());
        let (built, _log) = tether::settings::load_and_build(Some(&config), clock.now())
            .unwrap_or_else(|e| panic!("test configuration is invalid:\n{e}"));
        let app = Application::build_on(built, listener, Arc::new(clock.clone())).unwrap();
        let handle = app.handle();
        let admin = app.admin_port().map(|port| format!("http://127.0.0.1:{port}"));
        tokio::spawn(app.run_until_stopped());
        Self {
            tether: Tether::new(&base, issuer),
            upstream,
            redis: None,
            clock,
            kind: options.kind,
            admin,
            handle,
            _dir: dir,
        }
    }

    /// The provider the files resource is bound to.
    pub fn provider_id(&self) -> &'static str {
        self.kind.provider_id()
    }

    pub fn browser(&self) -> Browser {
        Browser::new()
    }

    /// The stand-in's `/user` answer for an upstream access token.
    pub async fn upstream_user(&self, upstream_token: &str) -> Value {
        let response =
            self.api.get(format!("{}/user", self.upstream.base_url)).bearer_auth(upstream_token).send().await;
        response.unwrap().json().await.unwrap()
    }
}

impl Tether {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs a JSON document from Tether.
    pub async fn get_json(&self, path: &str) -> Value {
        self.api.get(self.url(path)).send().await.unwrap().json().await.unwrap()
    }

    /// In `browser`: opens the consent page for `authorize_url`, approves, and returns the
    /// upstream authorization URL Tether redirects to.
    /// (A browser that already approved the client goes straight upstream.)
    pub async fn go_upstream(&self, browser: &Browser, authorize_url: &str) -> String {
        let consent_page = browser.get(authorize_url).await;
        if consent_page.status() == 302 {
            return location(&consent_page);
        }
        assert_eq!(consent_page.status(), 200, "authorize did not show the consent page");
        let html = consent_page.text().await.unwrap();
        let to_upstream = browser.consent(&self.url("/consent"), &consent_id(&html), "approve").await;
        assert_eq!(to_upstream.status(), 303, "consent did not redirect upstream");
        location(&to_upstream)
    }

    pub async fn register(&self, body: &Value) -> reqwest::Response {
        self.api.post(self.url("/register")).json(body).send().await.unwrap()
    }

    /// Registers a client like the MCP SDKs do; `method` is its token endpoint auth method.
    pub async fn register_client(&self, method: &str) -> TestClient {
        let response = self
            .register(&json!({
                "client_name": "Test Client",
                "redirect_uris": [CLIENT_REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": method,
            }))
            .await;
        assert_eq!(response.status(), 201, "registration failed");
        let body: Value = response.json().await.unwrap();
        TestClient {
            client_id: body["client_id"].as_str().unwrap().to_owned(),
            client_secret: body["client_secret"].as_str().map(str::to_owned),
            redirect_uri: CLIENT_REDIRECT.to_owned(),
        }
    }

    /// The `/authorize` URL for `client` with PKCE and the files resource, plus overrides.
    pub fn authorize_url(&self, client: &TestClient, pkce: &Pkce, overrides: &[(&str, Option<&str>)]) -> String {
        let mut params: Vec<(&str, Option<&str>)> = vec![
            ("response_type", Some("code")),
            ("client_id", Some(&client.client_id)),
            ("redirect_uri", Some(&client.redirect_uri)),
            ("state", Some("client-state-123")),
            ("code_challenge", Some(&pkce.challenge)),
            ("code_challenge_method", Some("S256")),
            ("resource", Some(RESOURCE_URI)),
            ("scope", Some("files:read")),
        ];
        for (name, value) in overrides {
            match params.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = *value,
                None => params.push((name, *value)),
            }
        }
        let mut url = url::Url::parse(&self.url("/authorize")).unwrap();
        for (name, value) in params {
            if let Some(value) = value {
                url.query_pairs_mut().append_pair(name, value);
            }
        }
        url.to_string()
    }

    /// Walks the whole browser flow (authorize, consent, upstream login, callback) and
    /// returns the query of the final redirect to the client.
    pub async fn authorize(&self, browser: &Browser, url: &str, user: &str) -> HashMap<String, String> {
        let upstream = self.go_upstream(browser, url).await;
        let callback = browser.upstream_login(&upstream, user, "approve").await;
        let to_client = browser.get(&location(&callback)).await;
        assert_eq!(
            to_client.status(),
            302,
            "callback did not redirect to the client: {}",
            to_client.text().await.unwrap()
        );
        query(&location(&to_client))
    }

    /// Runs the flow for `client` and exchanges the code.
    pub async fn tokens_for(&self, client: &TestClient, user: &str) -> Value {
        let pkce = Pkce::new();
        let result = self.authorize(&Browser::new(), &self.authorize_url(client, &pkce, &[]), user).await;
        let response = self.exchange_code(client, &result["code"], &pkce.verifier).await;
        assert_eq!(response.status(), 200, "code exchange failed");
        response.json().await.unwrap()
    }

    pub async fn token(&self, client: &TestClient, form: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let mut request = self.api.post(self.url("/token"));
        match &client.client_secret {
            Some(secret) => request = request.basic_auth(&client.client_id, Some(secret)),
            None => form.push(("client_id", &client.client_id)),
        }
        request.form(&form).send().await.unwrap()
    }

    pub async fn exchange_code(&self, client: &TestClient, code: &str, verifier: &str) -> reqwest::Response {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", verifier),
                ("resource", RESOURCE_URI),
            ],
        )
        .await
    }

    pub async fn refresh(&self, client: &TestClient, refresh_token: &str) -> reqwest::Response {
        self.token(
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("resource", RESOURCE_URI)],
        )
        .await
    }

    pub async fn introspect_as(&self, id: &str, secret: &str, token: &str) -> reqwest::Response {
        self.api
            .post(self.url("/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
    }

    /// Introspects as the files resource and returns the JSON answer.
    pub async fn introspect(&self, token: &str) -> Value {
        let response = self.introspect_as(RESOURCE_ID, RESOURCE_SECRET, token).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn revoke(&self, client: &TestClient, token: &str) -> reqwest::Response {
        let mut form = vec![("token", token)];
        let mut request = self.api.post(self.url("/revoke"));
        match &client.client_secret {
            Some(secret) => request = request.basic_auth(&client.client_id, Some(secret)),
            None => form.push(("client_id", &client.client_id)),
        }
        request.form(&form).send().await.unwrap()
    }
}

/// The whole flow over HTTP: register → authorize → consent → upstream → callback → token →
/// introspect → refresh → revoke → introspect inactive. Every provider kind runs it.
pub async fn core_flow(app: &TestApp, user: &str) {
    // Discovery: the issuer exactly as configured.
    let metadata = app.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["issuer"], app.base.as_str());
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));

    let client = app.register_client("none").await;
    assert!(client.client_secret.is_none());
    let pkce = Pkce::new();
    let browser = app.browser();
    let result = app
        .authorize(&browser, &app.authorize_url(&client, &pkce, &[("scope", Some("files:read files:write"))]), user)
        .await;
    assert_eq!(result["state"], "client-state-123");
    assert_eq!(result["iss"], app.base, "RFC 9207 iss must be the issuer");

    let response = app.exchange_code(&client, &result["code"], &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 600);
    assert_eq!(tokens["scope"], "files:read files:write");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let claims = jwt_claims(access);
    assert_eq!(claims["aud"], RESOURCE_URI);
    assert_eq!(claims["client_id"], client.client_id.as_str());
    // The token verifies against the published JWKS by its kid (RFC 9068 at+jwt, ES256).
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(app.get_json("/.well-known/jwks.json").await).unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("signing key published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[RESOURCE_URI]);
    validation.set_issuer(&[app.base.as_str()]);
    jsonwebtoken::decode::<Value>(access, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
    let alice = app.upstream.user_id(user).to_string();
    assert_eq!(claims["sub"], alice.as_str());

    // The MCP server resolves the token to the upstream credential.
    let answer = app.introspect(access).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], alice.as_str());
    assert_eq!(answer["aud"], RESOURCE_URI);
    assert_eq!(answer["scope"], "files:read files:write");
    assert_eq!(answer["upstream"]["provider"], app.provider_id());
    let upstream_token = answer["upstream"]["access_token"].as_str().unwrap();
    assert!(upstream_token.starts_with("dev_at_"));
    let upstream_scope = answer["upstream"]["scope"].as_str().unwrap();
    assert!(upstream_scope.contains("repo:read") && upstream_scope.contains("repo:write"), "{upstream_scope}");
    // ...and the upstream credential really works upstream.
    assert_eq!(app.upstream_user(upstream_token).await["login"], user);

    // Refresh rotates: a new pair, the old refresh token stops working.
    let response = app.refresh(&client, refresh).await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let new_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(app.introspect(rotated["access_token"].as_str().unwrap()).await["active"], true);
    // A racing duplicate within the grace window gets the very same pair (no second rotation).
    let duplicate: Value = app.refresh(&client, refresh).await.json().await.unwrap();
    assert_eq!(duplicate, rotated);

    // Revoking the refresh token kills the grant: every access token goes inactive.
    assert_eq!(app.revoke(&client, new_refresh).await.status(), 200);
    assert_eq!(app.introspect(access).await, serde_json::json!({"active": false}));
    assert_eq!(app.introspect(rotated["access_token"].as_str().unwrap()).await, serde_json::json!({"active": false}));
    assert_eq!(app.refresh(&client, new_refresh).await.status(), 400);
}

#[derive(Debug, Clone)]
pub struct TestClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_uri: String,
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = format!("{}-verifier-{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

/// A browser: keeps cookies, does not follow redirects (the tests follow them explicitly).
pub struct Browser {
    pub client: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        let client =
            reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { client }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    pub async fn consent(&self, consent_url: &str, consent_id: &str, decision: &str) -> reqwest::Response {
        self.client.post(consent_url).form(&[("consent", consent_id), ("decision", decision)]).send().await.unwrap()
    }

    /// Signs in at the upstream stand-in as a person would: the login form posts back the
    /// authorization request's parameters with the user name and the decision.
    pub async fn upstream_login(&self, upstream_authorize: &str, user: &str, decision: &str) -> reqwest::Response {
        let page = self.get(upstream_authorize).await;
        assert_eq!(page.status(), 200, "upstream login page: {}", page.text().await.unwrap());
        let url = url::Url::parse(upstream_authorize).unwrap();
        let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        form.push(("username".into(), user.into()));
        form.push(("decision".into(), decision.into()));
        let action = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        let response = self.client.post(format!("{action}{}", url.path())).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 302, "upstream did not redirect back");
        response
    }
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location header (status {})", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The consent id from the consent page's hidden field.
pub fn consent_id(html: &str) -> String {
    let marker = "name=\"consent\" value=\"";
    let start = html.find(marker).unwrap_or_else(|| panic!("no consent field in page:\n{html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Decodes a JWT's claims without verifying (tests inspect what Tether signed).
pub fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Asserts an OAuth JSON error: status, `error` code, a description, and `no-store`.
pub async fn expect_error(response: reqwest::Response, status: u16, error: &str, case: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "{case}: status");
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "{case}: content type {content_type}");
    assert_eq!(response.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{case}: cache");
    let body: Value = response.json().await.unwrap_or_else(|e| panic!("{case}: body is not JSON: {e}"));
    assert_eq!(body["error"], error, "{case}: {body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{case}: no description: {body}");
    body
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// GETs a Prometheus exposition.
pub async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

/// Validates a configuration written from `toml` (over the embedded defaults), returning the
/// error text, or "" when it is valid.
pub fn config_errors(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, toml).unwrap();
    tether::settings::load_and_build(Some(&path), 0).err().map(|e| e.to_string()).unwrap_or_default()
}

/// The Redis key of a grant's record (prefix `test`): a grant on a connection shares the
/// connection's hash tag.
pub fn grant_key(grant: &str) -> String {
    match tether::store::connection_of(grant) {
        Some(link) => format!("test:v1:grant:{{{link}}}{}", &grant[link.len()..]),
        None => format!("test:v1:grant:{{{grant}}}"),
    }
}

/// The Redis key of the connection a grant is on (prefix `test`).
pub fn link_key(grant: &str) -> String {
    format!("test:v1:link:{{{}}}", tether::store::connection_of(grant).expect("a grant on a connection"))
}

/// The audit events in the application's Redis stream (oldest first) once `done` says enough
/// have arrived (delivery is asynchronous); fails after 5 s.
pub async fn events_until(app: &TestApp, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let url = app.redis.as_ref().expect("the audit stream needs the Redis backend").url();
    let mut conn = ::redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let entries: Vec<(String, Vec<(String, String)>)> =
            ::redis::cmd("XRANGE").arg("test:v1:audit").arg("-").arg("+").query_async(&mut conn).await.unwrap();
        let events: Vec<Value> = entries
            .iter()
            .flat_map(|(_, fields)| fields)
            .map(|(_, json)| serde_json::from_str(json).unwrap())
            .collect();
        if done(&events) {
            return events;
        }
        assert!(std::time::Instant::now() < deadline, "the expected events did not arrive: {:#?}", types(&events));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events' types without the `dev.tether.` prefix.
pub fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().trim_start_matches("dev.tether.").to_owned()).collect()
}

pub fn has(events: &[Value], kind: &str) -> bool {
    types(events).iter().any(|t| t == kind)
}

/// The value of the form field `name` (`name="..." value="..."`) in a page's `html`.
pub fn field<'a>(html: &'a str, name: &str) -> &'a str {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    &html[start..start + html[start..].find('"').unwrap()]
}

/// An active connection `id` of user `dev:42` (account octocat) holding `tokens`.
pub fn sample_link(id: &str, tokens: &[u8]) -> tether::store::LinkRecord {
    use tether::store::{LinkInfo, LinkRecord, LinkStatus};
    LinkRecord {
        id: id.into(),
        info: LinkInfo {
            user: "dev:42".into(),
            provider: "dev".into(),
            subject: "42".into(),
            account: Some("octocat".into()),
            scope: vec!["repo".into()],
            created_at: 1,
            connected_at: 1,
            ..LinkInfo::default()
        },
        status: LinkStatus::Active,
        upstream: tokens.to_vec(),
    }
}
