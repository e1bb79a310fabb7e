//! A development upstream provider that behaves like a strict OAuth 2.0 server.
//!
//! It is what Tether talks to when GitHub or Google cannot be reached: `make run` uses it
//! and so do the tests. Tether treats it as any `oauth2` (or `github`) provider. It is strict
//! where real providers are: registered redirect URI only, PKCE S256 checked, codes single
//! use and short-lived, access tokens expiring, refresh tokens rotated on every use. Knobs
//! let tests make it fail the way real providers fail.
#![allow(dead_code)] // each user (example, test binaries) uses a different part

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use maud::{DOCTYPE, html};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub port: u16,
    pub client_id: String,
    /// `None`: a public client (PKCE only), as Tether's demo registers.
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    pub access_token_ttl: Duration,
    pub require_pkce: bool,
    /// Answer token errors with status 200, as GitHub does.
    pub github_style_errors: bool,
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
            github_style_errors: false,
        }
    }
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    user: String,
    expires: Instant,
}

struct Access {
    user: String,
    expires: Instant,
}

struct Refresh {
    user: String,
    scope: String,
}

#[derive(Default)]
struct Faults {
    token_status: Option<u16>,
    token_delay: Option<Duration>,
}

#[derive(Default)]
struct Db {
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
    users: HashMap<String, u64>,
    faults: Faults,
    token_calls: u64,
}

struct Shared {
    config: UpstreamConfig,
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
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared { config, db: Mutex::new(Db::default()) });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/authorize", web::get().to(authorize_page))
                .route("/authorize", web::post().to(authorize_decision))
                .route("/login/oauth/authorize", web::get().to(authorize_page))
                .route("/login/oauth/authorize", web::post().to(authorize_decision))
                .route("/token", web::post().to(token))
                .route("/login/oauth/access_token", web::post().to(token))
                .route("/user", web::get().to(user))
        })
        .workers(1)
        // Whoever embeds the stand-in decides when it stops (tests drop it, `main` waits).
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self { base_url: format!("http://127.0.0.1:{port}"), shared, handle })
    }

    /// Make the token endpoint answer `status` (e.g. 503) until cleared with `None`.
    pub fn fail_token_endpoint(&self, status: Option<u16>) {
        self.shared.db().faults.token_status = status;
    }

    /// Delay every token response (timeouts).
    pub fn delay_token_endpoint(&self, delay: Option<Duration>) {
        self.shared.db().faults.token_delay = delay;
    }

    /// How many token requests were made.
    pub fn token_calls(&self) -> u64 {
        self.shared.db().token_calls
    }

    /// The numeric id the stand-in gives `username` (as GitHub's `/user` `id`).
    pub fn user_id(&self, username: &str) -> u64 {
        user_id(&mut self.shared.db(), username)
    }

    /// Revokes every refresh token (the user disconnected the app upstream).
    pub fn revoke_all_refresh_tokens(&self) {
        self.shared.db().refresh.clear();
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

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
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

fn check_request(shared: &Shared, q: &AuthorizeQuery) -> Result<(), &'static str> {
    if q.response_type.as_deref() != Some("code") {
        return Err("unsupported_response_type");
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
    if let Err(error) = check_request(&shared, &q) {
        let mut params = vec![("error", error)];
        if let Some(s) = q.state.as_deref() {
            params.push(("state", s));
        }
        return redirect(&redirect_uri, &params);
    }
    let hidden: Vec<(&str, &str)> = [
        ("response_type", q.response_type.as_deref()),
        ("client_id", q.client_id.as_deref()),
        ("redirect_uri", q.redirect_uri.as_deref()),
        ("state", q.state.as_deref()),
        ("scope", q.scope.as_deref()),
        ("code_challenge", q.code_challenge.as_deref()),
        ("code_challenge_method", q.code_challenge_method.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let page = html! {
        (DOCTYPE)
        html { head { title { "Dev Upstream: sign in" } }
        body style="font-family:sans-serif;max-width:30rem;margin:3rem auto" {
            h1 { "Dev Upstream" }
            p { "A development stand-in for GitHub/Google. Sign in as any user name." }
            p { "Requested scopes: " code { (q.scope.as_deref().unwrap_or("(none)")) } }
            form method="post" action=(req.path()) {
                @for (k, v) in &hidden { input type="hidden" name=(k) value=(v); }
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

async fn authorize_decision(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let Ok(q) = serde_urlencoded::from_bytes::<AuthorizeQuery>(&body) else {
        return bad_request("malformed form");
    };
    let redirect_uri = match check_client(&shared, &q) {
        Ok(uri) => uri,
        Err(message) => return bad_request(message),
    };
    let state = q.state.clone().unwrap_or_default();
    if let Err(error) = check_request(&shared, &q) {
        return redirect(&redirect_uri, &[("error", error), ("state", &state)]);
    }
    if q.decision.as_deref() != Some("approve") {
        return redirect(&redirect_uri, &[("error", "access_denied"), ("state", &state)]);
    }
    let user = q.username.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| "octocat".into());
    let code = random();
    shared.db().codes.insert(
        code.clone(),
        Code {
            client_id: shared.config.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            challenge: q.code_challenge.clone(),
            scope: q.scope.clone().unwrap_or_default(),
            user,
            expires: Instant::now() + Duration::from_secs(60),
        },
    );
    redirect(&redirect_uri, &[("code", &code), ("state", &state)])
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn token_error(shared: &Shared, status: u16, error: &str) -> HttpResponse {
    let status = if shared.config.github_style_errors { 200 } else { status };
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"error": error, "error_description": format!("dev upstream: {error}")}))
}

/// RFC 6749 §2.3.1 client authentication: Basic, or the body; PKCE-only public clients.
fn client_ok(shared: &Shared, req: &HttpRequest, form: &TokenForm) -> bool {
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (form.client_id.clone(), form.client_secret.clone()),
    };
    id.as_deref() == Some(shared.config.client_id.as_str())
        && match &shared.config.client_secret {
            Some(expected) => secret.as_deref() == Some(expected.as_str()),
            None => true,
        }
}

async fn token(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let (fault, delay) = {
        let mut db = shared.db();
        db.token_calls += 1;
        (db.faults.token_status, db.faults.token_delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = fault {
        return HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE),
        )
        .content_type("text/html")
        .body("<html><body>upstream trouble</body></html>");
    }
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body) else {
        return token_error(&shared, 400, "invalid_request");
    };
    if !client_ok(&shared, &req, &form) {
        return token_error(&shared, 401, "invalid_client");
    }
    let mut db = shared.db();
    let (user, scope) = match form.grant_type.as_deref() {
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
            if code.expires < Instant::now()
                || code.client_id != shared.config.client_id
                || form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str())
                || !verifier_ok
            {
                return token_error(&shared, 400, "invalid_grant");
            }
            (code.user, code.scope)
        }
        Some("refresh_token") => {
            // Rotation: the presented refresh token is consumed.
            let Some(old) = form.refresh_token.as_deref().and_then(|t| db.refresh.remove(t)) else {
                return token_error(&shared, 400, "invalid_grant");
            };
            (old.user, old.scope)
        }
        _ => return token_error(&shared, 400, "unsupported_grant_type"),
    };
    let access = format!("dev_at_{}", random());
    let refresh = format!("dev_rt_{}", random());
    let ttl = shared.config.access_token_ttl;
    db.access.insert(access.clone(), Access { user: user.clone(), expires: Instant::now() + ttl });
    db.refresh.insert(refresh.clone(), Refresh { user, scope: scope.clone() });
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
        "refresh_token": refresh,
        "scope": scope,
    }))
}

async fn user(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::to_owned);
    let mut db = shared.db();
    let user = token.and_then(|t| db.access.get(&t).filter(|a| a.expires > Instant::now()).map(|a| a.user.clone()));
    match user {
        Some(user) => {
            let id = user_id(&mut db, &user);
            HttpResponse::Ok().json(json!({"id": id, "login": user, "name": format!("Dev User {user}")}))
        }
        None => HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"})),
    }
}
