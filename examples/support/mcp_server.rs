//! An example MCP server protected by Tether (rmcp, streamable HTTP, axum).
//!
//! What the MCP authorization spec asks of a resource server, done with Tether:
//! - RFC 9728 protected-resource metadata at the path-inserted and root well-known URLs,
//!   naming Tether's issuer byte for byte;
//! - 401 with `WWW-Authenticate: Bearer resource_metadata="..."` (first challenge), plus
//!   `error="invalid_token"` when a token was sent; 403 `insufficient_scope` naming every
//!   scope the call needs;
//! - CORS that lets browser clients read `WWW-Authenticate` and never authenticates preflights;
//! - every request introspected at Tether; tools act with the upstream credential Tether
//!   returns, never with the client's token.
#![allow(dead_code)] // the example binary and the tests each use part of it

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use secrecy::ExposeSecret;
use tether::resource_server::{
    ActiveToken, BearerChallenge, IntrospectionClient, IntrospectionConfig, IntrospectionError, TokenStatus,
    protected_resource_metadata, resource_metadata_url,
};

/// Which scope each tool needs.
const TOOL_SCOPES: &[(&str, &str)] = &[("whoami", "files:read"), ("write_note", "files:write")];
const SCOPES: &[&str] = &["files:read", "files:write"];

#[derive(Debug, Clone)]
pub struct McpServerConfig {
    pub bind: std::net::SocketAddr,
    /// The canonical MCP endpoint URL, exactly as registered in Tether (`aud` of its tokens).
    pub resource: String,
    /// Tether's issuer, exactly as Tether publishes it.
    pub issuer: String,
    pub resource_id: String,
    pub secret: String,
    /// The upstream API `whoami` calls with the upstream token (GitHub: https://api.github.com/user).
    pub upstream_user_url: String,
}

struct Shared {
    config: McpServerConfig,
    metadata_url: String,
    tether: IntrospectionClient,
    http: reqwest::Client,
}

pub struct RunningServer {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start(config: McpServerConfig) -> Result<RunningServer, String> {
    let resource = url::Url::parse(&config.resource).map_err(|e| format!("resource: {e}"))?;
    let metadata_url = resource_metadata_url(&config.resource).ok_or("resource is not a URL")?;
    let tether = IntrospectionClient::new(IntrospectionConfig::new(
        format!("{}/introspect", config.issuer),
        config.resource_id.clone(),
        config.secret.clone(),
    ))
    .map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared { config: config.clone(), metadata_url, tether, http: reqwest::Client::new() });

    // rmcp checks the Host header (DNS-rebinding protection): allow the resource's own host
    // besides the loopback names, so the example also works deployed under its real name.
    let hosts =
        ["localhost", "127.0.0.1", "::1"].into_iter().map(str::to_owned).chain(resource.host_str().map(str::to_owned));
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
    );
    let mcp_path = resource.path().trim_end_matches('/').to_owned();
    let protected =
        Router::new().nest_service(&mcp_path, mcp).layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    let app = Router::new()
        .route(&format!("/.well-known/oauth-protected-resource{mcp_path}"), get(metadata))
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .with_state(shared.clone())
        .merge(protected)
        // Outermost: preflights are answered here and never reach authentication.
        .layer(cors());

    let listener =
        tokio::net::TcpListener::bind(config.bind).await.map_err(|e| format!("bind {}: {e}", config.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningServer { addr, stop: Some(stop) })
}

fn cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{Any, CorsLayer};
    let headers = [
        "authorization",
        "content-type",
        "mcp-protocol-version",
        "mcp-session-id",
        "last-event-id",
        "mcp-method",
        "mcp-name",
    ];
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers(headers.map(HeaderName::from_static))
        .expose_headers(["www-authenticate", "mcp-session-id", "mcp-protocol-version"].map(HeaderName::from_static))
}

/// RFC 9728 protected resource metadata.
async fn metadata(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(protected_resource_metadata(&shared.config.resource, &shared.config.issuer, SCOPES))
}

fn challenge(shared: &Shared, status: StatusCode, error: Option<&'static str>, scope: String) -> Response {
    let value =
        BearerChallenge { resource_metadata: shared.metadata_url.clone(), error, scope: Some(scope) }.header_value();
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The tool a JSON-RPC `tools/call` body names, if it is one.
fn called_tool(body: &[u8]) -> Option<String> {
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    (message["method"] == "tools/call").then(|| message["params"]["name"].as_str().map(str::to_owned)).flatten()
}

/// Introspects the bearer token at Tether and checks the scope of tool calls.
async fn authenticate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let default_scope = "files:read".to_owned();
    // MCP: tokens only in the Authorization header, never in the query string.
    let Some(token) = bearer(request.headers()) else {
        return challenge(&shared, StatusCode::UNAUTHORIZED, None, default_scope);
    };
    let active = match shared.tether.introspect(&token).await {
        Ok(TokenStatus::Active(active)) => active,
        // Expired, revoked, or for another server: 401, so the client refreshes (never 403).
        Ok(TokenStatus::Inactive) => {
            return challenge(&shared, StatusCode::UNAUTHORIZED, Some("invalid_token"), default_scope);
        }
        Err(IntrospectionError::Unavailable { retry_after }) => {
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.unwrap_or(1)));
            return response;
        }
        Err(e) => {
            tracing::error!(error = %e, "introspection failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 * 1024 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    if let Some(tool) = called_tool(&bytes) {
        let needed = TOOL_SCOPES.iter().find(|(name, _)| *name == tool).map(|(_, scope)| *scope);
        if let Some(needed) = needed.filter(|s| !active.has_scope(s)) {
            // MCP: 403 insufficient_scope with every scope needed, including those already
            // granted (older clients replace their scopes instead of adding).
            let mut scopes: Vec<&str> = active.scopes().collect();
            scopes.push(needed);
            return challenge(&shared, StatusCode::FORBIDDEN, Some("insufficient_scope"), scopes.join(" "));
        }
    }
    let mut request = Request::from_parts(parts, axum::body::Body::from(bytes));
    request.extensions_mut().insert(active);
    request.extensions_mut().insert(shared);
    next.run(request).await
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Note {
    /// What to write down.
    text: String,
}

#[derive(Debug, Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

impl Tools {
    fn new() -> Self {
        Self { tool_router: Self::tool_router() }
    }
}

fn caller(parts: &axum::http::request::Parts) -> Result<(Arc<ActiveToken>, Arc<Shared>), ErrorData> {
    let token = parts.extensions.get::<Arc<ActiveToken>>().cloned();
    let shared = parts.extensions.get::<Arc<Shared>>().cloned();
    token.zip(shared).ok_or_else(|| ErrorData::internal_error("request was not authenticated", None))
}

#[tool_router]
impl Tools {
    #[tool(
        description = "Who you are at the upstream provider, asked with the upstream credential Tether holds for you"
    )]
    async fn whoami(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let (token, shared) = caller(&parts)?;
        let upstream = &token.upstream;
        let response = shared
            .http
            .get(&shared.config.upstream_user_url)
            .bearer_auth(upstream.access_token.expose_secret())
            .header(header::USER_AGENT, "tether-example-mcp")
            .send()
            .await
            .map_err(|_| ErrorData::internal_error("the upstream API is unreachable", None))?;
        if !response.status().is_success() {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "upstream answered {}",
                response.status()
            ))]));
        }
        let me: serde_json::Value =
            response.json().await.map_err(|_| ErrorData::internal_error("upstream answer is not JSON", None))?;
        let login = me["login"].as_str().unwrap_or("(unknown)");
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "You are {login} (id {}) at {}; this MCP client is {}.",
            me["id"], upstream.provider, token.client_id
        ))]))
    }

    #[tool(description = "Write a note (needs the files:write scope)")]
    async fn write_note(
        &self,
        Parameters(Note { text }): Parameters<Note>,
        Extension(parts): Extension<axum::http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let (token, _) = caller(&parts)?;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("Noted for {}: {text}", token.sub))]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Example MCP server protected by Tether: whoami, write_note")
    }
}
