//! A development upstream provider that behaves like strict real ones.
//!
//! It is what Tether talks to when GitHub or Google cannot be reached: `make run` uses it and
//! so do the tests. Tether treats it as any provider of the kind it is configured as. Strict
//! where real providers are: registered redirect URI only, PKCE S256 checked, codes single use
//! and short-lived, access tokens expiring, refresh tokens rotated. A profile makes it speak
//! like a plain OAuth 2.0 server, GitHub (OAuth App or GitHub App), an OpenID provider or
//! Google; knobs let tests make it fail the way real providers fail, and counters show what
//! Tether asked of it.
#![allow(dead_code)] // each user (example, test binaries) uses a different part
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test server: a poisoned lock may panic

mod oidc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use maud::{DOCTYPE, html};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

#[allow(unused_imports)] // the tests sign ID-JAGs with `Oidc`; the example binary does not
pub use oidc::{IdTokenFault, Oidc};

/// Which real provider the stand-in imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A strict plain OAuth 2.0 server: expiring access tokens, refresh tokens rotated.
    OAuth2,
    /// GitHub. `expiring`: a GitHub App with expiring user tokens (8 h) and refresh tokens
    /// with their own lifetime; otherwise an OAuth App (tokens never expire, no refresh).
    /// Token errors come back with status 200, as GitHub sends them.
    GitHub { expiring: bool },
    /// An OpenID provider: discovery, JWKS (ES256), ID tokens with the nonce, rotation.
    Oidc,
    /// Google: OpenID (RS256) that issues a refresh token only with `access_type=offline`
    /// and never rotates it.
    Google,
    /// Slack-shaped (OAuth v2 with token rotation on): user scopes in `user_scope`, comma
    /// separated; the user's token nested under `authed_user` beside a bot token; errors are
    /// status 200 with `ok: false`; refresh tokens rotate; no PKCE (the app has not opted in).
    Slack,
    /// Notion-shaped: `owner=user` required, no scopes, no PKCE; the token endpoint takes only
    /// HTTP Basic and a JSON body; the answer names the user (`owner.user`) and has no
    /// `expires_in`; refresh tokens rotate.
    Notion,
    /// Salesforce-shaped: no `expires_in` (the org's session timeout), `instance_url` and the
    /// identity URL `id` in every answer, `issued_at` as a string of milliseconds; refresh
    /// tokens are kept (the refresh answer has none).
    Salesforce,
    /// Figma-shaped: codes exchanged at `/api/oauth/token`, refresh only at the separate
    /// `/api/oauth/refresh` (which keeps the refresh token); the user in `user_id_string`.
    Figma,
    /// Dropbox-shaped: a refresh token only with `token_access_type=offline`, kept on refresh;
    /// the user endpoint is `POST /2/users/get_current_account` (GET is refused).
    Dropbox,
    /// Linear-shaped: comma-separated scopes; the user from GraphQL `POST /graphql` `viewer`.
    Linear,
}

impl Profile {
    /// The profiles whose token endpoint bends RFC 6749 (answered by `quirk_token`).
    fn quirky(self) -> bool {
        matches!(self, Self::Slack | Self::Notion | Self::Salesforce | Self::Figma | Self::Dropbox | Self::Linear)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub port: u16,
    pub client_id: String,
    /// `None`: a public client (PKCE only), as Tether's demo registers.
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub access_token_ttl: Duration,
    pub require_pkce: bool,
    pub profile: Profile,
    /// Quirk classes the plain and OpenID profiles can take on (see [`Rules`]).
    pub rules: Rules,
    /// OpenID profile: also an enterprise identity provider that issues ID-JAGs (RFC 8693 at
    /// the token endpoint) for this client id at the authorization server they are for.
    pub id_jag_client_id: Option<String>,
}

/// How the client must authenticate at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic or the body (RFC 6749 §2.3.1).
    #[default]
    Any,
    /// HTTP Basic only (Zoom).
    Basic,
    /// The body only (HubSpot, Box, Asana, Atlassian as documented).
    Body,
}

/// What a refresh does to the refresh token presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    /// A new one; the old one dies (Atlassian, Box, Zoom, GitLab, Okta, Auth0 with rotation).
    #[default]
    Rotate,
    /// No new one in the answer; the old one stays (Asana, HubSpot, Dropbox).
    Keep,
    /// A new one, and the old one stays usable (Microsoft, Keycloak by default).
    ReissueKeepOld,
}

/// Quirk classes of real providers, for the plain (`OAuth2`) and OpenID (`Oidc`) profiles.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub client_auth: ClientAuth,
    /// How long a code lives (default 60 s; Box: 30 s).
    pub code_ttl: Option<Duration>,
    pub rotation: Rotation,
    /// A refresh token only when the scopes include this (`offline_access`).
    pub offline_scope: Option<String>,
    /// Authorization parameters the provider insists on (Atlassian `audience`, `prompt`).
    pub required_params: Vec<(String, String)>,
    /// Refresh requests must name the scopes (Okta).
    pub refresh_needs_scope: bool,
    /// Members added to every token answer (Zoom `api_url`, Keycloak `refresh_expires_in`).
    pub token_extra: serde_json::Map<String, serde_json::Value>,
    /// The OpenID issuer is the base URL plus this path (Keycloak `/realms/dev`, Auth0 `/`).
    pub issuer_path: String,
    /// Microsoft's multi-tenant endpoints: `/{tenant}/v2.0/...` with the issuer
    /// `/{tenantid}/v2.0` in discovery, `tid` and `oid` in ID tokens, no `iss` response
    /// parameter, codes redeemable only at the tenant path that issued them. A user name
    /// `alice@contoso` belongs to the tenant `contoso`; one without `@` is a personal account.
    pub multi_tenant: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            port: 0,
            client_id: "tether-dev".into(),
            client_secret: None,
            redirect_uris: vec!["http://127.0.0.1:8080/callback".into()],
            access_token_ttl: Duration::from_secs(3600),
            require_pkce: true,
            profile: Profile::OAuth2,
            rules: Rules::default(),
            id_jag_client_id: None,
        }
    }
}

/// Personal Microsoft accounts' tenant.
pub const PERSONAL_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The tenant id (a GUID) the multi-tenant profile gives a tenant name.
pub fn tenant_id(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The tenant a user name belongs to (`alice@contoso`), or the personal accounts' one.
fn user_tenant(user: &str) -> String {
    user.split_once('@').map_or_else(|| PERSONAL_TENANT.to_owned(), |(_, tenant)| tenant_id(tenant))
}

struct Code {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    user: String,
    nonce: Option<String>,
    offline: bool,
    expires: Instant,
    /// The tenant path it was issued under (multi-tenant profile).
    tenant: Option<String>,
}

struct Access {
    user: String,
    expires: Option<Instant>,
}

struct Refresh {
    user: String,
    scope: String,
}

#[derive(Default)]
struct Faults {
    token_status: Option<u16>,
    token_delay: Option<Duration>,
    discovery_down: bool,
    omit_id_token: bool,
}

/// What Tether asked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Sign-ins completed at the login page (a person approving).
    pub logins: u64,
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub jwks_fetches: u64,
    pub discovery_fetches: u64,
    pub revocations: u64,
}

#[derive(Default)]
struct Db {
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    users: HashMap<String, u64>,
    /// ID tokens issued, and whose: the subject tokens of ID-JAG requests.
    id_tokens: HashMap<String, String>,
    faults: Faults,
    counts: Counts,
}

struct Shared {
    config: UpstreamConfig,
    base_url: String,
    oidc: Option<oidc::Oidc>,
    db: Mutex<Db>,
}

impl Shared {
    fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running stand-in; stops when dropped.
pub struct DevUpstream {
    pub base_url: String,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl Drop for DevUpstream {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl DevUpstream {
    pub async fn start(config: UpstreamConfig) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))?;
        let base_url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
        let oidc = match config.profile {
            Profile::Oidc => Some(oidc::Oidc::new(jsonwebtoken::Algorithm::ES256)),
            Profile::Google => Some(oidc::Oidc::new(jsonwebtoken::Algorithm::RS256)),
            _ => None,
        };
        let shared = Arc::new(Shared { config, base_url: base_url.clone(), oidc, db: Mutex::new(Db::default()) });
        let data = web::Data::from(shared.clone());
        let issuer_path = shared.config.rules.issuer_path.trim_end_matches('/').to_owned();
        let server = HttpServer::new(move || {
            let mut app = App::new().app_data(data.clone());
            if !issuer_path.is_empty() {
                app = app.route(&format!("{issuer_path}/.well-known/openid-configuration"), web::get().to(discovery));
            }
            app
                // Microsoft's multi-tenant paths.
                .route("/{tenant}/v2.0/.well-known/openid-configuration", web::get().to(discovery))
                .route("/{tenant}/oauth2/v2.0/authorize", web::get().to(authorize_page))
                .route("/{tenant}/oauth2/v2.0/authorize", web::post().to(authorize_decision))
                .route("/{tenant}/oauth2/v2.0/token", web::post().to(token))
                .route("/{tenant}/discovery/v2.0/keys", web::get().to(jwks))
                // User endpoints in the shapes of Atlassian, Box, Zoom, Asana and Discord, and
                // Atlassian's sites, HubSpot's token information and refresh-token deletion.
                .route("/me", web::get().to(shaped_user))
                .route("/2.0/users/me", web::get().to(shaped_user))
                .route("/v2/users/me", web::get().to(shaped_user))
                .route("/api/1.0/users/me", web::get().to(shaped_user))
                .route("/api/users/@me", web::get().to(shaped_user))
                .route("/oauth/token/accessible-resources", web::get().to(accessible_resources))
                .route("/oauth/v1/access-tokens/{token}", web::get().to(token_info))
                .route("/oauth/v1/refresh-tokens/{token}", web::delete().to(revoke))
                .route("/2/auth/token/revoke", web::post().to(revoke))
                .route("/authorize", web::get().to(authorize_page))
                .route("/authorize", web::post().to(authorize_decision))
                .route("/login/oauth/authorize", web::get().to(authorize_page))
                .route("/login/oauth/authorize", web::post().to(authorize_decision))
                .route("/token", web::post().to(token))
                .route("/login/oauth/access_token", web::post().to(token))
                .route("/user", web::get().to(user))
                .route("/userinfo", web::get().to(user))
                .route("/.well-known/openid-configuration", web::get().to(discovery))
                .route("/jwks", web::get().to(jwks))
                .route("/revoke", web::post().to(revoke))
                // GitLab's paths (a GitLab preset pointed at the stand-in).
                .route("/oauth/authorize", web::get().to(authorize_page))
                .route("/oauth/authorize", web::post().to(authorize_decision))
                .route("/oauth/token", web::post().to(token))
                .route("/oauth/revoke", web::post().to(revoke))
                .route("/api/v4/user", web::get().to(user))
                // Figma's, Dropbox's and Linear's.
                .route("/api/oauth/token", web::post().to(token))
                .route("/api/oauth/refresh", web::post().to(token))
                .route("/2/users/get_current_account", web::post().to(dropbox_user))
                .route("/graphql", web::post().to(graphql_user))
                .route("/applications/{client_id}/grant", web::delete().to(revoke))
        })
        .workers(1)
        // Whoever embeds the stand-in decides when it stops (tests drop it, `main` waits).
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { base_url, shared, handle })
    }

    /// Make the token endpoint answer `status` (e.g. 503) until cleared with `None`.
    pub fn fail_token_endpoint(&self, status: Option<u16>) {
        self.shared.db().faults.token_status = status;
    }

    /// Delay every token response (timeouts).
    pub fn delay_token_endpoint(&self, delay: Option<Duration>) {
        self.shared.db().faults.token_delay = delay;
    }

    /// Make OIDC discovery answer 503 until cleared.
    pub fn fail_discovery(&self, down: bool) {
        self.shared.db().faults.discovery_down = down;
    }

    /// Make the ID tokens issued from now on faulty (`None`: correct again).
    pub fn id_token_fault(&self, fault: Option<IdTokenFault>) {
        if let Some(oidc) = &self.shared.oidc {
            *oidc.fault.lock().unwrap() = fault;
        }
    }

    /// Leave the ID token out of token responses (identity then comes from userinfo).
    pub fn omit_id_token(&self, omit: bool) {
        self.shared.db().faults.omit_id_token = omit;
    }

    /// Start signing ID tokens with a new key (the old one stays published).
    pub fn rotate_signing_key(&self) {
        if let Some(oidc) = &self.shared.oidc {
            oidc.rotate();
        }
    }

    pub fn counts(&self) -> Counts {
        self.shared.db().counts
    }

    /// How many token requests were made.
    pub fn token_calls(&self) -> u64 {
        let c = self.counts();
        c.code_exchanges + c.refreshes
    }

    /// The id the stand-in gives `username` (GitHub's numeric `/user` `id`, OIDC's `sub`).
    /// The OpenID profile's signing keys (JWKS), to publish elsewhere too.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.shared.oidc.as_ref().map(oidc::Oidc::jwks)
    }

    pub fn user_id(&self, username: &str) -> u64 {
        user_id(&mut self.shared.db(), username)
    }

    /// Revokes every refresh token (the user disconnected the app upstream).
    pub fn revoke_all_refresh_tokens(&self) {
        self.shared.db().refresh.clear();
    }

    /// Ends every access token (the user removed the app at the provider; GitHub OAuth App
    /// tokens, which never expire, die only this way).
    pub fn revoke_access_tokens(&self) {
        self.shared.db().access.clear();
    }

    /// Whether `access_token` is still accepted by the user endpoint.
    pub fn accepts(&self, access_token: &str) -> bool {
        self.shared.db().access.get(access_token).is_some_and(|a| a.expires.is_none_or(|e| e > Instant::now()))
    }
}

fn user_id(db: &mut Db, username: &str) -> u64 {
    let next = 1000 + db.users.len() as u64;
    *db.users.entry(username.to_owned()).or_insert(next)
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Unix time for ID tokens: the stand-in is a separate server with its own clock.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    access_type: Option<String>,
    user_scope: Option<String>,
    owner: Option<String>,
    token_access_type: Option<String>,
    username: Option<String>,
    decision: Option<String>,
}

fn bad_request(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().content_type("text/plain").body(message.to_owned())
}

/// Checks what must hold before anything can be redirected back.
fn check_client(shared: &Shared, q: &AuthorizeQuery) -> Result<String, &'static str> {
    if q.client_id.as_deref() != Some(shared.config.client_id.as_str()) {
        return Err("unknown client_id");
    }
    match &q.redirect_uri {
        Some(uri) if shared.config.redirect_uris.contains(uri) => Ok(uri.clone()),
        _ => Err("redirect_uri is not registered"),
    }
}

fn check_request(shared: &Shared, q: &AuthorizeQuery, raw: &[u8]) -> Result<(), &'static str> {
    if q.response_type.as_deref() != Some("code") {
        return Err("unsupported_response_type");
    }
    let given: Vec<(String, String)> = url::form_urlencoded::parse(raw).into_owned().collect();
    if !shared.config.rules.required_params.iter().all(|needed| given.contains(needed)) {
        return Err("invalid_request");
    }
    if shared.oidc.is_some() && !q.scope.as_deref().unwrap_or("").split(' ').any(|s| s == "openid") {
        return Err("invalid_scope");
    }
    match shared.config.profile {
        // Slack: user scopes in `user_scope`, comma-separated; PKCE only for apps that opted in.
        Profile::Slack => {
            let spaced = |v: &Option<String>| v.as_deref().is_some_and(|s| s.contains(' '));
            if q.user_scope.as_deref().is_none_or(str::is_empty) || spaced(&q.user_scope) || spaced(&q.scope) {
                return Err("invalid_scope");
            }
            if q.code_challenge.is_some() {
                return Err("invalid_request");
            }
            return Ok(());
        }
        Profile::Notion => {
            return if q.owner.as_deref() == Some("user") { Ok(()) } else { Err("invalid_request") };
        }
        Profile::Linear if q.scope.as_deref().is_some_and(|s| s.contains(' ')) => return Err("invalid_scope"),
        _ => {}
    }
    match (&q.code_challenge, q.code_challenge_method.as_deref()) {
        (Some(_), Some("S256")) => Ok(()),
        (Some(_), _) => Err("invalid_request"),
        (None, _) if shared.config.require_pkce => Err("invalid_request"),
        (None, _) => Ok(()),
    }
}

fn redirect(uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let mut url = match url::Url::parse(uri) {
        Ok(url) => url,
        Err(_) => return bad_request("bad redirect_uri"),
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
    }
    HttpResponse::Found().insert_header(("Location", url.to_string())).finish()
}

async fn authorize_page(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let Ok(q) = serde_urlencoded::from_str::<AuthorizeQuery>(req.query_string()) else {
        return bad_request("malformed query");
    };
    let redirect_uri = match check_client(&shared, &q) {
        Ok(uri) => uri,
        Err(message) => return bad_request(message),
    };
    if let Err(error) = check_request(&shared, &q, req.query_string().as_bytes()) {
        let mut params = vec![("error", error)];
        if let Some(s) = q.state.as_deref() {
            params.push(("state", s));
        }
        return redirect(&redirect_uri, &params);
    }
    // The login form carries the request along; a person signs in as any name.
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    let page = html! {
        (DOCTYPE)
        html { head { title { "Dev Upstream: sign in" } }
        body style="font-family:sans-serif;max-width:30rem;margin:3rem auto" {
            h1 { "Dev Upstream" }
            p { "A development stand-in for GitHub/Google. Sign in as any user name." }
            p { "Requested scopes: " code { (q.scope.as_deref().unwrap_or("(none)")) } }
            form method="post" action=(req.path()) {
                @for (k, v) in &pairs { input type="hidden" name=(k) value=(v); }
                label { "User name " input name="username" value="octocat"; }
                p {
                    button type="submit" name="decision" value="approve" { "Authorize" }
                    " "
                    button type="submit" name="decision" value="deny" { "Cancel" }
                }
            }
        } }
    };
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page.into_string())
}

async fn authorize_decision(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let Ok(q) = serde_urlencoded::from_bytes::<AuthorizeQuery>(&body) else {
        return bad_request("malformed form");
    };
    let redirect_uri = match check_client(&shared, &q) {
        Ok(uri) => uri,
        Err(message) => return bad_request(message),
    };
    let state = q.state.clone().unwrap_or_default();
    // RFC 9207: an OpenID provider names itself in every authorization response (not
    // Microsoft's multi-tenant endpoints, whose issuer depends on the user).
    let issuer = issuer(&shared);
    let iss = (shared.oidc.is_some() && !shared.config.rules.multi_tenant).then_some(("iss", issuer.as_str()));
    let answer = |params: &[(&str, &str)]| {
        let params: Vec<(&str, &str)> = params.iter().copied().chain(iss).collect();
        redirect(&redirect_uri, &params)
    };
    if let Err(error) = check_request(&shared, &q, &body) {
        return answer(&[("error", error), ("state", &state)]);
    }
    if q.decision.as_deref() != Some("approve") {
        return answer(&[("error", "access_denied"), ("state", &state)]);
    }
    let user = q.username.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "octocat".into());
    let code = random();
    let mut db = shared.db();
    db.counts.logins += 1;
    db.codes.insert(
        code.clone(),
        Code {
            redirect_uri: redirect_uri.clone(),
            challenge: q.code_challenge.clone(),
            scope: match shared.config.profile {
                Profile::Slack => q.user_scope.clone().unwrap_or_default(),
                _ => q.scope.clone().unwrap_or_default(),
            },
            user,
            nonce: q.nonce.clone(),
            offline: q.access_type.as_deref() == Some("offline") || q.token_access_type.as_deref() == Some("offline"),
            expires: Instant::now() + shared.config.rules.code_ttl.unwrap_or(Duration::from_secs(60)),
            tenant: req.match_info().get("tenant").map(str::to_owned),
        },
    );
    drop(db);
    answer(&[("code", &code), ("state", &state)])
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    requested_token_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
}

fn token_error(shared: &Shared, status: u16, error: &str) -> HttpResponse {
    let status = if matches!(shared.config.profile, Profile::GitHub { .. }) { 200 } else { status };
    let mut body = json!({"error": error, "error_description": format!("dev upstream: {error}")});
    if shared.config.rules.multi_tenant {
        // Microsoft's extras beside the standard members.
        body["error_codes"] = json!([70008]);
        body["timestamp"] = json!("2026-01-01 00:00:00Z");
        body["trace_id"] = json!(random());
        body["correlation_id"] = json!(random());
    }
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)).json(body)
}

/// RFC 6749 §2.3.1 client authentication: Basic, or the body; PKCE-only public clients.
fn client_ok(shared: &Shared, req: &HttpRequest, form_id: Option<&str>, form_secret: Option<&str>) -> bool {
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    match (shared.config.rules.client_auth, &basic) {
        (ClientAuth::Basic, None) | (ClientAuth::Body, Some(_)) => return false,
        _ => {}
    }
    let (id, secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (form_id.map(str::to_owned), form_secret.map(str::to_owned)),
    };
    id.as_deref() == Some(shared.config.client_id.as_str())
        && match &shared.config.client_secret {
            Some(expected) => secret.as_deref() == Some(expected.as_str()),
            None => true,
        }
}

/// The provider's fault knobs, applied to token-endpoint-like requests.
async fn apply_faults(shared: &Shared) -> Option<HttpResponse> {
    let (fault, delay) = {
        let db = shared.db();
        (db.faults.token_status, db.faults.token_delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    fault.map(|status| {
        HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE))
            .content_type("text/html")
            .body("<html><body>upstream trouble</body></html>")
    })
}

async fn token(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    if shared.config.profile.quirky() {
        return quirk_token(&req, &body, &shared).await;
    }
    let form = serde_urlencoded::from_bytes::<TokenForm>(&body).ok();
    {
        let mut db = shared.db();
        match form.as_ref().and_then(|f| f.grant_type.as_deref()) {
            Some("refresh_token") => db.counts.refreshes += 1,
            _ => db.counts.code_exchanges += 1,
        }
    }
    if let Some(response) = apply_faults(&shared).await {
        return response;
    }
    let Some(form) = form else {
        return token_error(&shared, 400, "invalid_request");
    };
    if !client_ok(&shared, &req, form.client_id.as_deref(), form.client_secret.as_deref()) {
        return token_error(&shared, 401, "invalid_client");
    }
    if form.grant_type.as_deref() == Some(TOKEN_EXCHANGE) {
        return id_jag(&shared, &form);
    }
    let profile = shared.config.profile;
    let rules = &shared.config.rules;
    let mut db = shared.db();
    let (user, scope, id_token, issue_refresh) = match form.grant_type.as_deref() {
        Some("authorization_code") => {
            // Single use: the code is gone whether or not the rest checks out.
            let Some(code) = form.code.as_deref().and_then(|c| db.codes.remove(c)) else {
                return token_error(&shared, 400, "invalid_grant");
            };
            let verifier_ok = match (&code.challenge, &form.code_verifier) {
                (Some(challenge), Some(verifier)) => {
                    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == *challenge
                }
                (None, None) => !shared.config.require_pkce,
                _ => false,
            };
            // Microsoft: "Provided Authorization Code is intended to use against other tenant".
            let other_tenant = code.tenant.as_deref() != req.match_info().get("tenant");
            if code.expires < Instant::now()
                || form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str())
                || !verifier_ok
                || other_tenant
            {
                return token_error(&shared, 400, "invalid_grant");
            }
            let id = user_id(&mut db, &code.user);
            let id_token = shared.oidc.as_ref().map(|oidc| {
                let (iss, sub, claims) = if rules.multi_tenant {
                    let tid = user_tenant(&code.user);
                    let claims =
                        json!({"tid": tid, "oid": tenant_id(&format!("oid-{id}")), "preferred_username": code.user});
                    (format!("{}/{tid}/v2.0", shared.base_url), format!("pairwise-{id}"), claims)
                } else {
                    (issuer(&shared), id.to_string(), json!({}))
                };
                oidc.id_token(&iss, &shared.config.client_id, &sub, code.nonce.as_deref(), unix_now(), &claims)
            });
            let refresh = match profile {
                Profile::Google => code.offline,
                Profile::GitHub { expiring } => expiring,
                _ => rules.offline_scope.as_ref().is_none_or(|s| code.scope.split(' ').any(|x| x == s)),
            };
            (code.user, code.scope, id_token, refresh)
        }
        Some("refresh_token") => {
            if rules.refresh_needs_scope && form.scope.as_deref().is_none_or(str::is_empty) {
                return token_error(&shared, 400, "invalid_request");
            }
            let presented = form.refresh_token.clone().unwrap_or_default();
            // Google keeps its refresh token; the rules say what the others do with theirs.
            let rotation = if profile == Profile::Google { Rotation::Keep } else { rules.rotation };
            let old = if rotation == Rotation::Rotate {
                db.refresh.remove(&presented)
            } else {
                db.refresh.get(&presented).map(|r| Refresh { user: r.user.clone(), scope: r.scope.clone() })
            };
            let Some(old) = old else {
                return token_error(&shared, 400, "invalid_grant");
            };
            (old.user, old.scope, None, rotation != Rotation::Keep)
        }
        _ => return token_error(&shared, 400, "unsupported_grant_type"),
    };
    let access = format!("dev_at_{}", random());
    let expiring = !matches!(profile, Profile::GitHub { expiring: false });
    let ttl = match profile {
        Profile::GitHub { .. } => Duration::from_secs(28_800),
        _ => shared.config.access_token_ttl,
    };
    db.access.insert(access.clone(), Access { user: user.clone(), expires: expiring.then(|| Instant::now() + ttl) });
    // Microsoft never echoes `offline_access` in the granted scopes.
    let shown = if rules.multi_tenant {
        scope.split(' ').filter(|s| *s != "offline_access").collect::<Vec<_>>().join(" ")
    } else {
        scope.clone()
    };
    let mut body = json!({ "access_token": access, "token_type": "bearer", "scope": shown });
    for (name, value) in &rules.token_extra {
        body[name] = value.clone();
    }
    if expiring {
        body["expires_in"] = json!(ttl.as_secs());
    }
    if issue_refresh {
        let refresh = format!("dev_rt_{}", random());
        db.refresh.insert(refresh.clone(), Refresh { user, scope });
        body["refresh_token"] = json!(refresh);
        if matches!(profile, Profile::GitHub { expiring: true }) {
            body["refresh_token_expires_in"] = json!(15_897_600);
        }
    }
    if let Some(id_token) = id_token {
        let owner = user_of_token(&db, &access);
        db.id_tokens.insert(id_token.clone(), owner);
        body["id_token"] = json!(id_token);
    }
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(body)
}

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

fn user_of_token(db: &Db, access: &str) -> String {
    db.access.get(access).map(|a| a.user.clone()).unwrap_or_default()
}

/// An enterprise identity provider's ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant
/// §4.3): the client trades an ID token this provider issued for a signed grant naming the
/// person (`sub`, the same subject as the ID token), the authorization server (`aud`), the
/// resource and the scopes, living five minutes.
fn id_jag(shared: &Shared, form: &TokenForm) -> HttpResponse {
    let (Some(oidc), Some(client_id)) = (&shared.oidc, &shared.config.id_jag_client_id) else {
        return token_error(shared, 400, "unsupported_grant_type");
    };
    if form.requested_token_type.as_deref() != Some(ID_JAG)
        || form.subject_token_type.as_deref() != Some("urn:ietf:params:oauth:token-type:id_token")
    {
        return token_error(shared, 400, "invalid_request");
    }
    let (Some(audience), Some(resource)) = (&form.audience, &form.resource) else {
        return token_error(shared, 400, "invalid_request");
    };
    let mut db = shared.db();
    let Some(user) = form.subject_token.as_ref().and_then(|t| db.id_tokens.get(t)).cloned() else {
        return token_error(shared, 400, "invalid_grant");
    };
    let now = unix_now();
    let mut claims = json!({
        "iss": issuer(shared), "sub": user_id(&mut db, &user).to_string(), "aud": audience,
        "client_id": client_id, "jti": random(), "iat": now, "exp": now + 300, "resource": resource,
    });
    if let Some(scope) = &form.scope {
        claims["scope"] = json!(scope);
    }
    let assertion = oidc.sign("oauth-id-jag+jwt", &claims, false);
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({
        "issued_token_type": ID_JAG, "access_token": assertion, "token_type": "N_A", "expires_in": 300,
    }))
}

/// The token endpoint of the Slack-, Notion- and Salesforce-shaped profiles: as strict as
/// the real ones about what they are known to refuse, answering in their shapes.
async fn quirk_token(req: &HttpRequest, body: &[u8], shared: &Shared) -> HttpResponse {
    let profile = shared.config.profile;
    let json_body = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let error = |status: u16, error: &str| match profile {
        Profile::Slack => HttpResponse::Ok().json(json!({"ok": false, "error": error})),
        // Figma's errors are not RFC 6749's: `error` is a flag, the reason a message.
        Profile::Figma => HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
            .json(json!({"error": true, "status": status, "message": format!("dev upstream: {error}")})),
        _ => HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
            .json(json!({"error": error, "error_description": format!("dev upstream: {error}")})),
    };
    let form = if profile == Profile::Notion {
        // Notion: JSON only, client credentials only by HTTP Basic.
        if !json_body || !req.headers().contains_key("authorization") {
            return error(400, "invalid_request");
        }
        serde_json::from_slice::<TokenForm>(body).ok()
    } else if json_body {
        None
    } else {
        serde_urlencoded::from_bytes::<TokenForm>(body).ok()
    };
    {
        let mut db = shared.db();
        match form.as_ref().and_then(|f| f.grant_type.as_deref()) {
            Some("refresh_token") => db.counts.refreshes += 1,
            _ => db.counts.code_exchanges += 1,
        }
    }
    // Slack reports its rate limit as it reports everything: status 200, `ok: false`.
    if profile == Profile::Slack && shared.db().faults.token_status == Some(429) {
        return error(429, "ratelimited");
    }
    if let Some(response) = apply_faults(shared).await {
        return response;
    }
    let Some(form) = form else { return error(400, "invalid_request") };
    if !client_ok(shared, req, form.client_id.as_deref(), form.client_secret.as_deref()) {
        return error(401, "invalid_client");
    }
    let mut db = shared.db();
    let refreshing = form.grant_type.as_deref() == Some("refresh_token");
    // Figma: codes at the token endpoint, refresh tokens only at the refresh endpoint.
    if profile == Profile::Figma && refreshing != req.path().ends_with("/refresh") {
        return error(400, "unsupported_grant_type");
    }
    let mut offline = true;
    let (user, scope) = match form.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(code) = form.code.as_deref().and_then(|c| db.codes.remove(c)) else {
                return error(400, if profile == Profile::Slack { "invalid_code" } else { "invalid_grant" });
            };
            let verifier_ok = match (&code.challenge, &form.code_verifier) {
                (Some(challenge), Some(verifier)) => {
                    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == *challenge
                }
                (Some(_), None) => false,
                (None, _) => true,
            };
            if code.expires < Instant::now()
                || form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str())
                || !verifier_ok
            {
                return error(400, if profile == Profile::Slack { "invalid_code" } else { "invalid_grant" });
            }
            offline = profile != Profile::Dropbox || code.offline;
            (code.user, code.scope)
        }
        Some("refresh_token") => {
            let presented = form.refresh_token.clone().unwrap_or_default();
            // Salesforce, Figma and Dropbox keep their refresh token; the others rotate theirs.
            let keeps = matches!(profile, Profile::Salesforce | Profile::Figma | Profile::Dropbox);
            let old = if keeps {
                db.refresh.get(&presented).map(|r| Refresh { user: r.user.clone(), scope: r.scope.clone() })
            } else {
                db.refresh.remove(&presented)
            };
            let Some(old) = old else {
                return error(400, if profile == Profile::Slack { "invalid_refresh_token" } else { "invalid_grant" });
            };
            (old.user, old.scope)
        }
        _ => return error(400, "unsupported_grant_type"),
    };
    let id = user_id(&mut db, &user);
    let access = format!("dev_at_{}", random());
    let ttl = shared.config.access_token_ttl;
    db.access.insert(access.clone(), Access { user: user.clone(), expires: Some(Instant::now() + ttl) });
    let keeps = matches!(profile, Profile::Salesforce | Profile::Figma | Profile::Dropbox);
    let refresh = (offline && !(refreshing && keeps)).then(|| {
        let refresh = format!("dev_rt_{}", random());
        db.refresh.insert(refresh.clone(), Refresh { user: user.clone(), scope: scope.clone() });
        refresh
    });
    drop(db);
    let base = &shared.base_url;
    let body = match profile {
        Profile::Slack => json!({
            "ok": true, "app_id": "A0DEV", "access_token": format!("xoxb-{}", random()), "token_type": "bot",
            "scope": "commands", "bot_user_id": "B0DEV", "team": {"id": "T0DEV", "name": "Dev Team"},
            "enterprise": null, "is_enterprise_install": false,
            "authed_user": {"id": format!("U{id}"), "scope": scope.replace(' ', ","), "access_token": access,
                "token_type": "user", "refresh_token": refresh, "expires_in": ttl.as_secs()},
        }),
        Profile::Notion => json!({
            "access_token": access, "token_type": "bearer", "refresh_token": refresh, "bot_id": format!("bot-{id}"),
            "workspace_id": "ws-dev", "workspace_name": "Dev Workspace", "workspace_icon": null,
            "owner": {"type": "user", "user": {"object": "user", "id": format!("nu-{id}"), "name": format!("Dev User {user}"),
                "person": {"email": format!("{user}@dev.example")}}},
            "duplicated_template_id": null, "request_id": random(),
        }),
        Profile::Figma => json!({
            "access_token": access, "refresh_token": refresh, "expires_in": ttl.as_secs(),
            "user_id": id, "user_id_string": format!("fu-{id}"),
        }),
        Profile::Dropbox => json!({
            "access_token": access, "token_type": "bearer", "expires_in": ttl.as_secs(), "scope": scope,
            "refresh_token": refresh, "account_id": format!("dbid:{id}"), "uid": id.to_string(),
        }),
        Profile::Linear => json!({
            "access_token": access, "token_type": "Bearer", "expires_in": ttl.as_secs(), "scope": scope,
            "refresh_token": refresh,
        }),
        _ => {
            let mut body = json!({
                "access_token": access, "token_type": "Bearer", "scope": scope,
                "instance_url": format!("{base}/sf-instance"), "id": format!("{base}/id/00Dorg/005{id}"),
                "issued_at": (unix_now() * 1000).to_string(), "signature": "c2ln",
            });
            if let Some(refresh) = refresh {
                body["refresh_token"] = json!(refresh);
            }
            body
        }
    };
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(body)
}

/// The user a bearer token belongs to, if the token is live.
fn bearer_user(req: &HttpRequest, shared: &Shared) -> Option<(String, u64)> {
    let token = req.headers().get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?.to_owned();
    let mut db = shared.db();
    let user = db.access.get(&token).filter(|a| a.expires.is_none_or(|e| e > Instant::now()))?.user.clone();
    let id = user_id(&mut db, &user);
    Some((user, id))
}

/// Dropbox `POST /2/users/get_current_account` (no body).
async fn dropbox_user(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    if !body.is_empty() && body.as_ref() != b"null" {
        return HttpResponse::BadRequest().body(
            "Error in call to API function \"users/get_current_account\": request body: could not decode input as JSON",
        );
    }
    match bearer_user(&req, &shared) {
        Some((user, id)) => HttpResponse::Ok().json(json!({
            "account_id": format!("dbid:{id}"), "name": {"display_name": format!("Dev User {user}")},
            "email": format!("{user}@dev.example"), "email_verified": true,
        })),
        None => HttpResponse::Unauthorized().json(json!({"error_summary": "invalid_access_token/"})),
    }
}

/// Linear's GraphQL endpoint, for `{ viewer { id name email } }` only.
async fn graphql_user(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let query: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !query["query"].as_str().is_some_and(|q| q.contains("viewer")) {
        return HttpResponse::BadRequest().json(json!({"errors": [{"message": "Query required"}]}));
    }
    match bearer_user(&req, &shared) {
        Some((user, id)) => HttpResponse::Ok().json(json!({
            "data": {"viewer": {"id": format!("lin-{id}"), "name": format!("Dev User {user}"), "email": format!("{user}@dev.example")}}
        })),
        None => HttpResponse::Ok().json(json!({"errors": [{"message": "Authentication required", "extensions": {"code": "AUTHENTICATION_ERROR"}}]})),
    }
}

async fn user(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::to_owned);
    let mut db = shared.db();
    let user = token.and_then(|t| {
        db.access.get(&t).filter(|a| a.expires.is_none_or(|e| e > Instant::now())).map(|a| a.user.clone())
    });
    match user {
        Some(user) => {
            let id = user_id(&mut db, &user);
            HttpResponse::Ok()
                .json(json!({"id": id, "sub": id.to_string(), "login": user, "name": format!("Dev User {user}")}))
        }
        None => HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"})),
    }
}

/// The issuer the OpenID profiles sign as (base URL plus the configured path).
fn issuer(shared: &Shared) -> String {
    format!("{}{}", shared.base_url, shared.config.rules.issuer_path)
}

async fn discovery(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let down = {
        let mut db = shared.db();
        db.counts.discovery_fetches += 1;
        db.faults.discovery_down
    };
    let base = &shared.base_url;
    let doc = match (req.match_info().get("tenant"), shared.config.rules.multi_tenant) {
        (Some(tenant), true) => {
            // `common`, `organizations`, `consumers`: the issuer is a template.
            let named = if matches!(tenant, "common" | "organizations" | "consumers") { "{tenantid}" } else { tenant };
            let mut doc = oidc::Oidc::discovery(&format!("{base}/{named}/v2.0"), base);
            doc["authorization_endpoint"] = json!(format!("{base}/{tenant}/oauth2/v2.0/authorize"));
            doc["token_endpoint"] = json!(format!("{base}/{tenant}/oauth2/v2.0/token"));
            doc["jwks_uri"] = json!(format!("{base}/{tenant}/discovery/v2.0/keys"));
            doc["userinfo_endpoint"] = json!(format!("{base}/userinfo"));
            let doc = doc.as_object_mut().map(|o| {
                o.remove("revocation_endpoint");
                o.remove("authorization_response_iss_parameter_supported");
                json!(o)
            });
            doc.unwrap_or_default()
        }
        (Some(_), false) | (None, true) => return HttpResponse::NotFound().finish(),
        (None, false) => oidc::Oidc::discovery(&issuer(&shared), base),
    };
    match (&shared.oidc, down) {
        (_, true) => HttpResponse::ServiceUnavailable().finish(),
        (Some(_), false) => HttpResponse::Ok().json(doc),
        (None, false) => HttpResponse::NotFound().finish(),
    }
}

async fn jwks(shared: web::Data<Shared>) -> HttpResponse {
    shared.db().counts.jwks_fetches += 1;
    match &shared.oidc {
        Some(oidc) => HttpResponse::Ok().json(oidc.jwks()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// RFC 7009 revocation (`POST /revoke`) and GitHub's `DELETE /applications/{id}/grant`:
/// the token, and everything issued to the same user, stops working.
async fn revoke(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    // HubSpot: `DELETE /oauth/v1/refresh-tokens/{token}`; Dropbox and Linear: the bearer
    // token itself, no body. Neither takes client credentials.
    let unauthenticated = match (req.match_info().get("token"), &bearer) {
        (Some(token), _) => Some(token.to_owned()),
        (None, Some(token)) if body.is_empty() || body.as_ref() == b"null" => {
            if !shared.db().access.contains_key(token) {
                return HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}));
            }
            Some(token.clone())
        }
        _ => None,
    };
    if let Some(token) = unauthenticated {
        let mut db = shared.db();
        db.counts.revocations += 1;
        let user =
            db.refresh.get(&token).map(|r| r.user.clone()).or_else(|| db.access.get(&token).map(|a| a.user.clone()));
        let Some(user) = user else { return HttpResponse::NotFound().json(json!({"status": "error"})) };
        db.refresh.retain(|_, r| r.user != user);
        db.access.retain(|_, a| a.user != user);
        return HttpResponse::NoContent().finish();
    }
    let (token, form_id, form_secret) = if req.method() == actix_web::http::Method::DELETE {
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (doc["access_token"].as_str().map(str::to_owned), None, None)
    } else {
        let form = serde_urlencoded::from_bytes::<TokenForm>(&body).ok();
        (
            form.as_ref().and_then(|f| f.token.clone()),
            form.as_ref().and_then(|f| f.client_id.clone()),
            form.and_then(|f| f.client_secret),
        )
    };
    if !client_ok(&shared, &req, form_id.as_deref(), form_secret.as_deref()) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let mut db = shared.db();
    db.counts.revocations += 1;
    let user = token
        .as_ref()
        .and_then(|t| db.refresh.get(t).map(|r| r.user.clone()).or_else(|| db.access.get(t).map(|a| a.user.clone())));
    if let Some(user) = user {
        db.refresh.retain(|_, r| r.user != user);
        db.access.retain(|_, a| a.user != user);
    }
    if req.method() == actix_web::http::Method::DELETE {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::Ok().finish()
    }
}

/// The user endpoints of Atlassian (`/me`), Box (`/2.0/users/me`), Zoom (`/v2/users/me`),
/// Asana (`/api/1.0/users/me`) and Discord (`/api/users/@me`), each in its provider's shape.
async fn shaped_user(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let Some((user, id)) = bearer_user(&req, &shared) else {
        return HttpResponse::Unauthorized().json(json!({"message": "Unauthorized"}));
    };
    let (name, email) = (format!("Dev User {user}"), format!("{user}@dev.example"));
    let body = match req.path() {
        "/me" => {
            json!({"account_id": format!("712020:{id}"), "account_type": "atlassian", "name": name, "email": email})
        }
        "/2.0/users/me" => json!({"type": "user", "id": id.to_string(), "name": name, "login": email}),
        "/v2/users/me" => {
            json!({"id": format!("zm{id}"), "account_id": "zacct-dev", "display_name": name, "email": email})
        }
        "/api/1.0/users/me" => {
            json!({"data": {"gid": format!("{id}00"), "name": name, "email": email, "resource_type": "user"}})
        }
        _ => json!({"id": format!("8{id}"), "username": user, "global_name": name, "email": email}),
    };
    HttpResponse::Ok().json(body)
}

/// Atlassian's sites the token reaches: two, so callers must pick one.
async fn accessible_resources(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if bearer_user(&req, &shared).is_none() {
        return HttpResponse::Unauthorized().json(json!({"code": 401, "message": "Unauthorized"}));
    }
    HttpResponse::Ok().json(json!([
        {"id": "cloud-1111", "name": "dev-one", "url": "https://dev-one.atlassian.net", "scopes": ["read:jira-work"], "avatarUrl": "https://x/a.png"},
        {"id": "cloud-2222", "name": "dev-two", "url": "https://dev-two.atlassian.net", "scopes": ["read:jira-work"], "avatarUrl": "https://x/b.png"},
    ]))
}

/// HubSpot's token information: the token in the path, no other credential.
async fn token_info(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let token = req.match_info().get("token").unwrap_or_default().to_owned();
    let mut db = shared.db();
    let Some(user) =
        db.access.get(&token).filter(|a| a.expires.is_none_or(|e| e > Instant::now())).map(|a| a.user.clone())
    else {
        return HttpResponse::NotFound()
            .json(json!({"status": "error", "message": "The OAuth token used to make this call expired"}));
    };
    let id = user_id(&mut db, &user);
    HttpResponse::Ok().json(json!({
        "token": token, "user": format!("{user}@dev.example"), "hub_domain": "dev.hubspot.example", "hub_id": 62515,
        "user_id": id, "app_id": 456, "scopes": ["oauth", "crm.objects.contacts.read"], "token_type": "access", "expires_in": 1800,
    }))
}
