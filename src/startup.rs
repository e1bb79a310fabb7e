//! Building and running the application: what `tether serve` and the tests both start.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::client_metadata::Fetcher;
use crate::clock::Clock;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::oauth::Broker;
use crate::oauth::documents::DocumentClients;
use crate::oauth::vault::Vault;
use crate::settings::{Built, MetricsChoice, StoreChoice};
use crate::store::{MemoryStore, RedisStore, Store};
use crate::telemetry::RequestSpan;
use crate::upstream::{Provider, Providers};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("store: {0}")]
    Store(String),
    #[error("client metadata documents: {0}")]
    Documents(String),
    #[error("connect webhooks: {0}")]
    Webhooks(String),
    #[error("provider `{id}`: {message}")]
    Provider { id: String, message: String },
}

/// Start-up discovery of OIDC providers (so that one that is down is logged at once) and,
/// when configured, the background refresh of upstream tokens.
fn spawn_upkeep(state: &web::Data<AppState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    for provider in state.broker.providers.all() {
        let provider = provider.clone();
        runtime.spawn(async move { provider.warm_up().await });
    }
    // Rate-limiter entries of clients that went quiet are dropped, so memory follows the
    // active clients rather than every address ever seen.
    let limits = state.clone();
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.limits.shrink();
        }
    });
    // MCP servers removed from the configuration: their grants end (once, by whichever
    // replica starts first with the new configuration).
    let retire = state.clone();
    runtime.spawn(async move {
        let broker = &retire.broker;
        let configured: Vec<String> = broker.registry.resources().iter().map(|r| r.id.clone()).collect();
        let kept = broker.lifetimes.refresh_token + broker.lifetimes.tombstone;
        let now = retire.clock.now();
        if let Err(e) = crate::oauth::admin::retire_removed_resources(broker.admin(), &configured, kept, now).await {
            tracing::error!(error = %e.description, "cannot check for removed resources; their grants stay until the next start");
        }
    });
    if let Some(config) = state.broker.background {
        let state = state.clone();
        runtime.spawn(async move {
            let broker = &state.broker;
            let (store, slack) = (broker.store.as_ref(), broker.marks.slack());
            crate::oauth::background::run(broker.refresher(), store, state.clock.as_ref(), config, slack).await;
        });
    }
}

/// A bound, not yet running, Tether.
pub struct Application {
    port: u16,
    server: Server,
    /// Raised on SIGTERM (readiness off) `shutdown_delay` before the listener closes.
    draining: Arc<std::sync::atomic::AtomicBool>,
    shutdown_delay: Duration,
    /// `/metrics` on a listener of its own (`metrics.bind`), stopped with the main server.
    metrics_server: Option<Server>,
    /// The admin API on its listener (`admin.bind`), stopped with the main server.
    admin_server: Option<Server>,
    admin_port: Option<u16>,
}

impl Application {
    /// Binds the listener first, so `server.bind = "127.0.0.1:0"` works and `port()` tells
    /// which port was taken.
    pub fn build(built: Built, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(built.bind)
            .map_err(|source| StartupError::Bind { addr: built.bind.to_string(), source })?;
        Self::build_on(built, listener, clock)
    }

    /// Like [`Application::build`], on a listener the caller already bound (tests bind first
    /// to learn the port the issuer URL must name).
    pub fn build_on(built: Built, listener: TcpListener, clock: Arc<dyn Clock>) -> Result<Self, StartupError> {
        let port =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: built.bind.to_string(), source })?.port();
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> = match &built.store {
            StoreChoice::Memory => Arc::new(MemoryStore::new(clock.clone())),
            StoreChoice::Redis { target, prefix, timeout, schema } => Arc::new(
                RedisStore::connect(target, prefix, *timeout)
                    .map_err(|e| StartupError::Store(e.to_string()))?
                    .with_write_schema(*schema)
                    .with_metrics(metrics.clone()),
            ),
        };
        let providers = built
            .providers
            .into_iter()
            .map(|config| {
                let id = config.id.clone();
                Provider::new(config)
                    .map(|p| p.with_metrics(metrics.clone()))
                    .map_err(|message| StartupError::Provider { id, message })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let enterprise_fetcher = match (&built.documents, built.enterprise.is_empty()) {
            (Some(settings), false) => Some(Fetcher::new(settings.fetch.clone()).map_err(StartupError::Documents)?),
            _ => None,
        };
        let enterprise = crate::oauth::enterprise::Enterprise::new(built.enterprise, enterprise_fetcher);
        let documents = match built.documents {
            Some(settings) => {
                let fetcher = Fetcher::new(settings.fetch).map_err(StartupError::Documents)?;
                Some(DocumentClients::new(fetcher, settings.cache))
            }
            None => None,
        };
        let registration_enabled = built.registration.enabled;
        let webhooks = crate::webhook::Sender::new().map_err(StartupError::Webhooks)?;
        let sinks = crate::audit::delivery::Sinks {
            events: store.clone(),
            grants: store.clone(),
            webhooks: webhooks.clone(),
            clock: clock.clone(),
        };
        let audit = crate::audit::Auditor::start(&built.issuer, built.audit, sinks, metrics.clone());
        let broker = Broker {
            issuer: built.issuer,
            registry: built.registry,
            providers: Providers::new(providers),
            store,
            vault: Vault::new(built.keyring),
            signer: built.signing,
            verified: crate::oauth::tokens::VerifiedTokens::new(built.verified_cache),
            touches: crate::oauth::clients::ClientTouches::default(),
            lifetimes: built.lifetimes,
            registration: built.registration,
            documents,
            refresh: built.refresh,
            background: built.background,
            marks: crate::oauth::background::Marks::new(built.background.map_or(Duration::ZERO, |b| b.window)),
            metrics: metrics.clone(),
            webhooks,
            audit,
            login: built.login,
            enterprise,
        };
        let limits = http::limits::Limits::new(built.rates, built.trusted_proxies);
        let state = web::Data::new(AppState::new(broker, clock, limits));
        let state_for_admin = state.clone();
        let draining = state.draining.clone();
        let shutdown_delay = built.shutdown_delay;
        spawn_upkeep(&state);
        let shared_metrics = built.metrics == MetricsChoice::Shared;
        let metrics_data = web::Data::from(metrics.clone());
        let app_metrics = metrics_data.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(http::limits::request_size))
                .wrap(actix_web::middleware::from_fn(http::observe::observe))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .app_data(app_metrics.clone())
                .configure(|cfg| http::routes(cfg, registration_enabled))
                .configure(|cfg| {
                    if shared_metrics {
                        cfg.route("/metrics", web::get().to(http::observe::metrics));
                    }
                })
                .default_service(web::to(http::error::not_found))
        })
        .shutdown_timeout(built.shutdown_timeout.as_secs())
        // Signals are handled in `run_until_stopped`, which delays the stop when asked to.
        .disable_signals()
        .client_request_timeout(built.client_timeout)
        .client_disconnect_timeout(Duration::from_secs(5));
        if built.workers > 0 {
            server = server.workers(built.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind { addr: built.bind.to_string(), source })?
            .run();
        let (admin_server, admin_port) = match built.admin {
            Some(admin) => {
                let tokens = web::Data::new(http::admin::AdminTokens(admin.tokens));
                let state = state_for_admin;
                let server = HttpServer::new(move || {
                    App::new()
                        .wrap(TracingLogger::<RequestSpan>::new())
                        .app_data(state.clone())
                        .app_data(tokens.clone())
                        .configure(http::admin::routes)
                        .default_service(web::to(http::admin::not_found))
                })
                .workers(1)
                .shutdown_timeout(built.shutdown_timeout.as_secs())
                .disable_signals()
                .bind(admin.bind)
                .map_err(|source| StartupError::Bind { addr: admin.bind.to_string(), source })?;
                let port = server.addrs().first().map(std::net::SocketAddr::port);
                (Some(server.run()), port)
            }
            None => (None, None),
        };
        let metrics_server = match built.metrics {
            MetricsChoice::Separate(addr) => Some(
                HttpServer::new(move || {
                    App::new()
                        .app_data(metrics_data.clone())
                        .route("/metrics", web::get().to(http::observe::metrics))
                        .default_service(web::to(http::error::not_found))
                })
                .workers(1)
                .shutdown_timeout(1)
                .disable_signals()
                .bind(addr)
                .map_err(|source| StartupError::Bind { addr: addr.to_string(), source })?
                .run(),
            ),
            _ => None,
        };
        Ok(Self { port, server, draining, shutdown_delay, metrics_server, admin_server, admin_port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin API's port, when it is on.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// Handle to stop the server (tests, signal handling).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through [`Application::handle`], or SIGTERM/SIGINT: then
    /// `/readyz` turns 503, the listener stays open `server.shutdown_delay_secs` (a second
    /// signal cuts that short), closes, and in-flight requests get
    /// `server.shutdown_timeout_secs` to finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let signals = tokio::spawn(stop_on_signal(self.server.handle(), self.draining, self.shutdown_delay));
        let side: Vec<_> = [self.metrics_server, self.admin_server]
            .into_iter()
            .flatten()
            .map(|server| (server.handle(), tokio::spawn(server)))
            .collect();
        let result = self.server.await;
        signals.abort();
        for (handle, task) in side {
            handle.stop(true).await;
            let _ = task.await;
        }
        result
    }
}

async fn stop_on_signal(
    server: actix_web::dev::ServerHandle,
    draining: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
) {
    let Ok(mut signals) = Signals::new() else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT; stop Tether with SIGKILL");
        return;
    };
    let name = signals.next().await;
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    if !delay.is_zero() {
        tracing::info!(signal = name, delay_secs = delay.as_secs(), "stopping: unready, still serving for the delay");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            name = signals.next() => tracing::info!(signal = name, "second signal: not waiting any longer"),
        }
    }
    tracing::info!(signal = name, "stopping: no new connections; finishing in-flight requests");
    server.stop(true).await;
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for the next one and names it.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
