//! HTTP: actix handlers, one file per endpoint. Each handler parses, reads the time once,
//! authenticates the caller once, calls into `oauth`, and shapes the response.

use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, web};

use limits::{Endpoint, throttle};

use crate::clock::Clock;
use crate::oauth::Broker;

mod account;
pub mod admin;
mod authorize;
mod callback;
mod connect;
mod consent;
pub mod error;
mod health;
mod introspect;
pub mod limits;
mod metadata;
pub mod observe;
mod pages;
mod reconnect;
mod register;
mod revoke;
mod token;

/// Shared state of every worker.
pub struct AppState {
    pub broker: Broker,
    pub clock: Arc<dyn Clock>,
    pub metadata: metadata::Documents,
    pub limits: limits::Limits,
    /// Set once SIGTERM arrived: `/readyz` answers 503 while the listener drains.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    binding_cookie: &'static str,
    consent_cookie: &'static str,
    session_cookie: &'static str,
    secure_cookies: bool,
}

impl AppState {
    pub fn new(broker: Broker, clock: Arc<dyn Clock>, limits: limits::Limits) -> Self {
        let secure = broker.issuer.starts_with("https://");
        let metadata = metadata::Documents::new(&broker);
        Self {
            broker,
            clock,
            metadata,
            limits,
            draining: Arc::default(),
            // `__Host-` cookies require Secure, which a plain-http development issuer cannot set.
            binding_cookie: if secure { "__Host-tether-binding" } else { "tether-binding" },
            consent_cookie: if secure { "__Host-tether-consent" } else { "tether-consent" },
            session_cookie: if secure { "__Host-tether-session" } else { "tether-session" },
            secure_cookies: secure,
        }
    }

    /// The browser-binding cookie value, if the browser sent one.
    fn binding(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.binding_cookie).map(|c| c.value().to_owned())
    }

    /// The sign-in session cookie value, if the browser sent one.
    fn session(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.session_cookie).map(|c| c.value().to_owned())
    }

    /// The sign-in session cookie: same attributes as the binding cookie, short-lived (the
    /// session record lasts as long; the cookie alone signs no one in).
    fn session_cookie(&self, value: String) -> Cookie<'static> {
        self.cookie(self.session_cookie, value, self.broker.lifetimes.session.as_secs())
    }

    /// Removes the sign-in session cookie (signing out).
    fn session_cookie_removal(&self) -> Cookie<'static> {
        self.cookie(self.session_cookie, String::new(), 0)
    }

    /// The remembered-consent cookie value, if the browser sent one.
    fn consent(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.consent_cookie).map(|c| c.value().to_owned())
    }

    /// The remembered-consent cookie (signed, see `oauth::consent`), same attributes as the
    /// binding cookie, kept as long as approvals are remembered.
    fn consent_cookie(&self, value: String) -> Cookie<'static> {
        let max_age = self.broker.lifetimes.consent_memory.as_secs();
        self.cookie(self.consent_cookie, value, max_age)
    }

    fn cookie(&self, name: &'static str, value: String, max_age: u64) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::seconds(i64::try_from(max_age).unwrap_or(86_400)))
            .finish()
    }

    /// The browser-binding cookie: first-party, `HttpOnly`, `SameSite=Lax` (sent on the
    /// upstream provider's top-level redirect back), `Secure` and `__Host-` over https. It
    /// lives as long as refresh tokens: it also names the browser's earlier grants (step-up).
    fn binding_cookie(&self, value: String) -> Cookie<'static> {
        self.cookie(self.binding_cookie, value, self.broker.lifetimes.refresh_token.as_secs())
    }
}

/// CORS for the endpoints browser-based clients call directly (MCP Inspector's direct mode,
/// web UIs): any origin, never credentials (`Access-Control-Allow-Origin: *`), and the
/// `MCP-Protocol-Version` header clients add. Not for `/authorize`, which is a navigation
/// (RFC 9700 §2.6), nor `/introspect`, which only MCP servers call.
fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allowed_headers(["content-type", "authorization", "mcp-protocol-version"])
        .expose_headers(["www-authenticate"])
        .max_age(86_400)
}

fn cors_management() -> actix_cors::Cors {
    cors().allowed_methods(["GET", "DELETE", "OPTIONS"])
}

/// Size limits for request bodies: OAuth requests are small. (The browser forms, read as
/// bytes, have the same limit as the API forms.)
const FORM_LIMIT: usize = 16 * 1024;
const JSON_LIMIT: usize = 64 * 1024;

/// Mounts every endpoint at the issuer's root (MCP 2025-03-26 clients fall back to these
/// exact paths when metadata discovery fails).
pub fn routes(cfg: &mut web::ServiceConfig, registration_enabled: bool) {
    let not_allowed = || web::to(error::method_not_allowed);
    cfg.app_data(web::PayloadConfig::new(FORM_LIMIT))
        .app_data(web::FormConfig::default().limit(FORM_LIMIT).error_handler(error::form_error))
        .app_data(web::JsonConfig::default().limit(JSON_LIMIT).error_handler(error::json_error_handler))
        .service(metadata::scope().wrap(cors()))
        .service(
            web::resource("/authorize")
                .wrap(from_fn(|req, next| throttle(Endpoint::Authorize, req, next)))
                .route(web::get().to(authorize::get))
                .route(web::post().to(authorize::post))
                .default_service(not_allowed()),
        )
        .service(web::resource("/consent").route(web::post().to(consent::post)).default_service(not_allowed()))
        .service(web::resource("/callback").route(web::get().to(callback::get)).default_service(not_allowed()))
        .service(
            web::resource("/token")
                .wrap(from_fn(|req, next| throttle(Endpoint::Token, req, next)))
                .wrap(cors())
                .route(web::post().to(token::post))
                .default_service(not_allowed()),
        )
        .service(web::resource("/introspect").route(web::post().to(introspect::post)).default_service(not_allowed()))
        .service(
            web::resource("/introspect/upstream-rejected")
                .route(web::post().to(introspect::upstream_rejected))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/revoke").wrap(cors()).route(web::post().to(revoke::post)).default_service(not_allowed()),
        )
        .service(web::resource("/connect").route(web::post().to(connect::start)).default_service(not_allowed()))
        .service(
            web::resource("/connect/resolve").route(web::post().to(connect::resolve)).default_service(not_allowed()),
        )
        .service(web::resource("/connect/finish").route(web::get().to(connect::finish)).default_service(not_allowed()))
        .service(
            web::resource("/connect/link/{token}").route(web::get().to(connect::link)).default_service(not_allowed()),
        )
        .service(
            web::resource("/connect/{id}")
                .route(web::get().to(connect::status))
                .route(web::delete().to(connect::disconnect))
                .default_service(not_allowed()),
        )
        .service(web::resource("/account").route(web::get().to(account::page)).default_service(not_allowed()))
        .service(
            // Each opening stores a pending sign-in, like /authorize: the same limit.
            web::resource("/reconnect/{link}")
                .wrap(from_fn(|req, next| throttle(Endpoint::Authorize, req, next)))
                .route(web::get().to(reconnect::get))
                .default_service(not_allowed()),
        )
        .service(
            // Each sign-in stores a pending record, like /authorize: the same limit.
            web::resource("/account/sign-in")
                .wrap(from_fn(|req, next| throttle(Endpoint::Authorize, req, next)))
                .route(web::get().to(account::sign_in))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/account/remove")
                .route(web::get().to(account::confirm_remove))
                .route(web::post().to(account::remove))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/account/remove-all")
                .route(web::get().to(account::confirm_remove_all))
                .route(web::post().to(account::remove_all))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/account/disconnect")
                .route(web::get().to(account::confirm_disconnect))
                .route(web::post().to(account::disconnect))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/account/reconnect")
                .route(web::post().to(account::reconnect))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/account/logout")
                .route(web::get().to(account::confirm_logout))
                .route(web::post().to(account::logout))
                .default_service(not_allowed()),
        )
        .service(web::resource("/assets/tether.css").route(web::get().to(pages::stylesheet)))
        .service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)));
    if registration_enabled {
        cfg.service(
            web::resource("/register")
                .wrap(from_fn(|req, next| throttle(Endpoint::Register, req, next)))
                .wrap(cors())
                .route(web::post().to(register::post))
                .default_service(not_allowed()),
        )
        .service(
            web::resource("/register/{client_id}")
                .wrap(cors_management())
                .route(web::get().to(register::read))
                .route(web::delete().to(register::delete))
                .default_service(not_allowed()),
        );
    }
}

/// The MCP server calling: HTTP Basic with its resource id and secret (RFC 7662 §2.1).
fn resource_caller<'a>(
    req: &HttpRequest,
    state: &'a AppState,
) -> Result<&'a crate::oauth::registry::Resource, crate::oauth::OAuthError> {
    use crate::oauth::OAuthError;
    let header = authorization_header(req)
        .ok_or_else(|| OAuthError::invalid_client("authenticate with the resource's credentials (HTTP Basic)"))?;
    let (id, secret) = crate::oauth::client_auth::parse_basic(&header)?;
    let caller = state
        .broker
        .registry
        .authenticate_resource(&id, &secret)
        .ok_or_else(|| OAuthError::invalid_client("unknown resource or wrong secret"))?;
    tracing::Span::current().record("resource", caller.id.as_str());
    Ok(caller)
}

/// The request, as audit events name it: the client's address (see
/// `server.trusted_proxies`), user agent, request id and the caller's W3C trace id.
pub fn origin(req: &HttpRequest, state: &AppState) -> crate::audit::Origin {
    use actix_web::HttpMessage as _;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let user_agent = header("user-agent").map(|ua| ua.chars().filter(|c| !c.is_control()).take(256).collect());
    // traceparent: version-traceid-parentid-flags (W3C Trace Context §3.2).
    let trace_id = header("traceparent")
        .and_then(|t| t.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    crate::audit::Origin {
        ip: state.limits.client_ip(req).map(|ip| ip.to_string()),
        user_agent,
        request_id: req.extensions().get::<tracing_actix_web::RequestId>().map(ToString::to_string),
        trace_id,
    }
}

/// The `Authorization` header as text, when present and readable.
fn authorization_header(req: &HttpRequest) -> Option<String> {
    req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
