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
//!
//! It also serves a second endpoint in session mode (`session_path`, no OAuth for the
//! client): until the session is connected through Tether's connect flow, `tools/list` shows
//! only `authorize`, whose result (and URL-mode elicitation, for clients that declare it)
//! carries the link; when Tether reports the connection (long-poll, or the signed webhook at
//! `/hooks/tether`), the server sends `notifications/tools/list_changed` and `whoami` works
//! with the session's upstream credential.
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
    ActiveToken, BearerChallenge, ConnectClient, ConnectionState, IntrospectionClient, IntrospectionConfig,
    IntrospectionError, TokenStatus, protected_resource_metadata, resource_metadata_url,
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
    /// Where the session-mode endpoint is served (`/session-mcp`).
    pub session_path: String,
    /// The resource's `connect_webhook_secret` in Tether, to check `/hooks/tether` calls.
    pub webhook_secret: Option<String>,
}

struct Shared {
    config: McpServerConfig,
    metadata_url: String,
    tether: IntrospectionClient,
    connect: ConnectClient,
    http: reqwest::Client,
    /// Session-mode sessions by id, for the webhook to find.
    sessions: std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<SessionState>>>,
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
    let connect = ConnectClient::new(&config.issuer, &config.resource_id, &config.secret).map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        metadata_url,
        tether,
        connect,
        http: reqwest::Client::new(),
        sessions: std::sync::Mutex::default(),
    });

    // rmcp checks the Host header (DNS-rebinding protection): allow the resource's own host
    // besides the loopback names, so the example also works deployed under its real name.
    let hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .chain(resource.host_str().map(str::to_owned))
        .collect();
    let mcp = StreamableHttpService::new(
        || Ok(Tools::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts.clone()),
    );
    let for_sessions = shared.clone();
    let session_mcp = StreamableHttpService::new(
        move || Ok(SessionTools::new(for_sessions.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts),
    );
    let mcp_path = resource.path().trim_end_matches('/').to_owned();
    let protected =
        Router::new().nest_service(&mcp_path, mcp).layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    let app = Router::new()
        .route(&format!("/.well-known/oauth-protected-resource{mcp_path}"), get(metadata))
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .route("/hooks/tether", axum::routing::post(webhook))
        .with_state(shared.clone())
        .nest_service(&config.session_path, session_mcp)
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

/// Tether's link for a person whose upstream connection needs them again.
#[derive(Debug, Clone)]
struct ConnectFirst(String);

/// The MCP token a request carried (to report a refused upstream credential for it).
#[derive(Debug, Clone)]
struct McpToken(String);

/// MCP 2025-11-25: `URLElicitationRequiredError`.
const URL_ELICITATION_REQUIRED: rmcp::model::ErrorCode = rmcp::model::ErrorCode(-32042);

/// A tool call's answer when the person must connect the provider again: MCP's URL
/// elicitation error for clients that declared URL elicitation (they show the link and retry),
/// a tool result with the link for the others.
fn connect_first(uri: &str, peer: &rmcp::service::Peer<rmcp::RoleServer>) -> Result<CallToolResult, ErrorData> {
    let message = "Your connection to the provider needs you again: connect it, then try again.";
    if peer.supported_elicitation_modes().contains(&rmcp::service::ElicitationMode::Url) {
        let id = tether::crypto::hash::digest(uri);
        let data =
            serde_json::json!({"elicitations": [{"mode": "url", "elicitationId": id, "url": uri, "message": message}]});
        return Err(ErrorData::new(URL_ELICITATION_REQUIRED, message, Some(data)));
    }
    Ok(CallToolResult::error(vec![ContentBlock::text(format!("{message} Open {uri}"))]))
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
        // The token is good but the person must connect the provider again: the tools say so
        // (see `connect_first`); everything else (initialize, tools/list) goes on.
        Ok(TokenStatus::ConnectFirst(needs)) => {
            let mut request = request;
            request.extensions_mut().insert(ConnectFirst(needs.interaction_uri.clone()));
            request.extensions_mut().insert(shared);
            return next.run(request).await;
        }
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
    request.extensions_mut().insert(McpToken(token));
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

/// The caller's token and the server's state, or the tool's answer when the caller's connection
/// needs them first.
type Caller = Result<(Arc<ActiveToken>, Arc<Shared>), CallToolResult>;

/// Who is calling, or the answer to give when their connection needs them first.
fn caller(
    parts: &axum::http::request::Parts,
    peer: &rmcp::service::Peer<rmcp::RoleServer>,
) -> Result<Caller, ErrorData> {
    if let Some(ConnectFirst(uri)) = parts.extensions.get::<ConnectFirst>() {
        return connect_first(uri, peer).map(Err);
    }
    let token = parts.extensions.get::<Arc<ActiveToken>>().cloned();
    let shared = parts.extensions.get::<Arc<Shared>>().cloned();
    token.zip(shared).map(Ok).ok_or_else(|| ErrorData::internal_error("request was not authenticated", None))
}

/// Who the upstream provider says the caller is, with `access_token`.
async fn upstream_me(shared: &Shared, access_token: &str) -> Result<reqwest::Response, ErrorData> {
    shared
        .http
        .get(&shared.config.upstream_user_url)
        .bearer_auth(access_token)
        .header(header::USER_AGENT, "tether-example-mcp")
        .send()
        .await
        .map_err(|_| ErrorData::internal_error("the upstream API is unreachable", None))
}

#[tool_router]
impl Tools {
    #[tool(
        description = "Who you are at the upstream provider, asked with the upstream credential Tether holds for you"
    )]
    async fn whoami(
        &self,
        Extension(parts): Extension<axum::http::request::Parts>,
        peer: rmcp::service::Peer<rmcp::RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let (mut token, shared) = match caller(&parts, &peer)? {
            Ok(caller) => caller,
            Err(connect_first) => return Ok(connect_first),
        };
        let mut response = upstream_me(&shared, token.upstream.access_token.expose_secret()).await?;
        // The provider refused the credential (the person removed the app there): tell Tether,
        // which refreshes it or, when the provider confirms, asks for the person.
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(McpToken(mcp_token)) = parts.extensions.get::<McpToken>()
        {
            match shared.tether.report_rejected(mcp_token).await {
                Ok(TokenStatus::Active(fresh)) => {
                    response = upstream_me(&shared, fresh.upstream.access_token.expose_secret()).await?;
                    token = fresh;
                }
                Ok(TokenStatus::ConnectFirst(needs)) => return connect_first(&needs.interaction_uri, &peer),
                Ok(TokenStatus::Inactive) => {
                    return Err(ErrorData::invalid_request("the token is no longer valid", None));
                }
                Err(e) => return Err(ErrorData::internal_error(format!("Tether: {e}"), None)),
            }
        }
        let upstream = &token.upstream;
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
        peer: rmcp::service::Peer<rmcp::RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let (token, _) = match caller(&parts, &peer)? {
            Ok(caller) => caller,
            Err(connect_first) => return Ok(connect_first),
        };
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

// ---------------------------------------------------------------------------------------
// Session mode: the connect flow.

/// One MCP session of the session-mode endpoint.
struct SessionState {
    /// This server's id for the session; Tether keys the connection by it.
    id: String,
    connected: std::sync::atomic::AtomicBool,
    peer: std::sync::OnceLock<rmcp::service::Peer<rmcp::RoleServer>>,
}

impl SessionState {
    /// Marks the session connected (once) and tells the client its tools changed.
    async fn connected(&self) {
        if !self.connected.swap(true, std::sync::atomic::Ordering::SeqCst)
            && let Some(peer) = self.peer.get()
            && let Err(e) = peer.notify_tool_list_changed().await
        {
            tracing::warn!(error = %e, "cannot send tools/list_changed");
        }
    }

    fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct SessionTools {
    shared: Arc<Shared>,
    state: Arc<SessionState>,
}

impl SessionTools {
    fn new(shared: Arc<Shared>) -> Self {
        let state = Arc::new(SessionState {
            id: uuid::Uuid::new_v4().to_string(),
            connected: std::sync::atomic::AtomicBool::new(false),
            peer: std::sync::OnceLock::new(),
        });
        let mut sessions = shared.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|_, s| s.strong_count() > 0);
        sessions.insert(state.id.clone(), Arc::downgrade(&state));
        drop(sessions);
        Self { shared, state }
    }

    async fn authorize(&self, peer: &rmcp::service::Peer<rmcp::RoleServer>) -> Result<CallToolResult, ErrorData> {
        if self.state.is_connected() {
            return Ok(CallToolResult::success(vec![ContentBlock::text("This session is already connected.")]));
        }
        let link = match self.shared.connect.start(&self.state.id, None).await {
            Ok(link) => link,
            Err(e) => return Ok(CallToolResult::error(vec![ContentBlock::text(format!("Tether: {e}"))])),
        };
        // Learn the outcome by long-polling Tether (the webhook may say it first).
        let (connect, state, id) = (self.shared.connect.clone(), self.state.clone(), link.id.clone());
        tokio::spawn(async move {
            loop {
                match connect.wait(&id, std::time::Duration::from_secs(50)).await {
                    Ok(ConnectionState::Pending) => continue,
                    Ok(ConnectionState::Connected) => return state.connected().await,
                    Ok(other) => return tracing::info!(?other, "the connection did not complete"),
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting for the connection failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
        // MCP URL-mode elicitation, for clients that declare it: they show the link themselves.
        if peer.supported_elicitation_modes().contains(&rmcp::service::ElicitationMode::Url)
            && let Ok(url) = url::Url::parse(&link.connect_url)
        {
            let (peer, id) = (peer.clone(), link.id.clone());
            tokio::spawn(async move {
                let message = "Connect your account to use this server's tools";
                if let Err(e) = peer.elicit_url_with_timeout(message, url, id, None).await {
                    tracing::info!(error = %e, "URL elicitation not completed");
                }
            });
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "Open this link to connect your account (valid until {}): {}\nThe tools appear once you have approved.",
            link.expires_at, link.connect_url
        ))]))
    }

    async fn whoami(&self) -> Result<CallToolResult, ErrorData> {
        let session = match self.shared.connect.resolve(&self.state.id).await {
            Ok(Some(session)) => session,
            Ok(None) => {
                return Ok(CallToolResult::error(vec![ContentBlock::text("Not connected: call authorize first.")]));
            }
            Err(e) => return Ok(CallToolResult::error(vec![ContentBlock::text(format!("Tether: {e}"))])),
        };
        let response = self
            .shared
            .http
            .get(&self.shared.config.upstream_user_url)
            .bearer_auth(session.upstream.access_token.expose_secret())
            .header(header::USER_AGENT, "tether-example-mcp")
            .send()
            .await
            .map_err(|_| ErrorData::internal_error("the upstream API is unreachable", None))?;
        let me: serde_json::Value =
            response.json().await.map_err(|_| ErrorData::internal_error("upstream answer is not JSON", None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "You are {} (id {}) at {}, connected to this session.",
            me["login"].as_str().unwrap_or("(unknown)"),
            me["id"],
            session.upstream.provider
        ))]))
    }
}

fn tool(name: &'static str, description: &'static str) -> rmcp::model::Tool {
    let schema = serde_json::json!({"type": "object", "properties": {}});
    let serde_json::Value::Object(schema) = schema else { unreachable!() };
    rmcp::model::Tool::new(name, description, schema)
}

impl ServerHandler for SessionTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_instructions("Example MCP server in session mode: call authorize to connect your account")
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        let _ = self.state.peer.set(context.peer.clone());
        let tools = if self.state.is_connected() {
            vec![tool("whoami", "Who you are at the upstream provider, with this session's credential")]
        } else {
            vec![tool("authorize", "Connect your upstream account to this session (returns a link to open)")]
        };
        Ok(rmcp::model::ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let _ = self.state.peer.set(context.peer.clone());
        let result = match (request.name.as_ref(), self.state.is_connected()) {
            ("authorize", _) => self.authorize(&context.peer).await?,
            ("whoami", true) => self.whoami().await?,
            (name, _) => CallToolResult::error(vec![ContentBlock::text(format!("no tool `{name}` in this session"))]),
        };
        Ok(result.into())
    }
}

/// `POST /hooks/tether`: Tether's signed connect-flow events.
async fn webhook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let Some(secret) = &shared.config.webhook_secret else { return StatusCode::NOT_FOUND };
    let signature = headers.get(tether::webhook::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = tether::clock::Clock::now(&tether::clock::SystemClock);
    if !tether::webhook::verify(secret, signature, &body, now, 300) {
        tracing::warn!("webhook with a bad signature refused");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else { return StatusCode::BAD_REQUEST };
    if event["type"] == "connection.connected"
        && let Some(session) = event["session"].as_str()
    {
        let state = shared
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(session)
            .and_then(std::sync::Weak::upgrade);
        if let Some(state) = state {
            state.connected().await;
        }
    }
    StatusCode::NO_CONTENT
}
