//! Reaching Redis: standalone, Cluster or Sentinel, with TLS (custom CA) and an ACL user.
//!
//! Every topology yields a [`Conn`] the store sends commands through. Standalone and Cluster
//! connections reconnect by themselves; behind Sentinel, a failed or read-only master makes
//! the next command ask the sentinels for the current one.

use std::sync::RwLock;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClientBuilder, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    TlsCertificates, Value,
};
use secrecy::{ExposeSecret, SecretString};

/// How Redis is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    /// `urls` are seed nodes; the rest of the cluster is discovered.
    Cluster,
    /// `urls` are the sentinels; `master` names the monitored master.
    Sentinel {
        master: String,
    },
}

/// Where and how Tether reaches Redis.
#[derive(Clone)]
pub struct RedisTarget {
    pub topology: Topology,
    /// `redis://` or `rediss://` URLs (one for standalone).
    pub urls: Vec<SecretString>,
    /// ACL user and password, overriding any in the URLs.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// PEM certificates to trust for `rediss://` instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("topology", &self.topology)
            .field("nodes", &self.urls.len())
            .field("username", &self.username)
            .field("custom_ca", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisTarget {
    /// `urls`: one URL, or several comma-separated (cluster seeds, sentinels); no ACL user,
    /// system CA roots.
    pub fn new(topology: Topology, urls: &str) -> Self {
        Self {
            topology,
            urls: urls.split(',').map(|u| SecretString::from(u.trim().to_owned())).collect(),
            username: None,
            password: None,
            ca_pem: None,
        }
    }

    /// A standalone server at `url` (tests, tools).
    pub fn standalone(url: &str) -> Self {
        Self::new(Topology::Standalone, url)
    }

    fn info(&self, url: &SecretString) -> Result<ConnectionInfo, RedisError> {
        let info = url.expose_secret().into_connection_info()?;
        let mut redis = info.redis_settings().clone();
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password.expose_secret());
        }
        Ok(info.set_redis_settings(redis))
    }

    fn certificates(&self) -> Option<TlsCertificates> {
        self.ca_pem.as_ref().map(|pem| TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) })
    }

    fn client(&self, info: ConnectionInfo) -> Result<Client, RedisError> {
        match self.certificates() {
            Some(certs) => Client::build_with_tls(info, certs),
            None => Client::open(info),
        }
    }
}

/// A connection handle for one command or script, whatever the topology.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConn),
}

/// A Redis Cluster connection that sends a command or transaction again when the cluster was
/// changing shape and it did not run: a slot moved or is moving (MOVED or ASK inside a
/// transaction, which the cluster client does not follow; TRYAGAIN, CLUSTERDOWN past its own
/// retries), or a node refused the connection (it left, or died and its replica took over).
/// Before sending again it takes a connection that has read the slots afresh (see
/// `ClusterSource`). Nothing that may have run is sent again: not a plain pipeline, not after
/// a connection dropped mid-answer. The store's deadline bounds the whole.
#[derive(Clone)]
pub(super) struct ClusterConn {
    conn: ClusterConnection,
    source: std::sync::Arc<ClusterSource>,
}

/// Sends of one command while the cluster changes shape, at most.
const RESENDS: u32 = 8;

fn reshaping(code: &str) -> bool {
    matches!(code, "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
}

/// Whether a single command's failure says it did not run because the cluster changed shape.
fn command_resendable(e: &RedisError) -> bool {
    e.is_connection_refusal() || e.code().is_some_and(reshaping)
}

/// Whether a pipeline may be sent again after `e`: nothing of it ran (a transaction aborted
/// for a moved slot, or a refused connection), or it only reads (a plain pipeline the cluster
/// client could not follow into a slot being migrated, ASK; one that writes may have run in part).
fn pipeline_resendable(pipeline: &Pipeline, e: &RedisError) -> bool {
    let moved = || e.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, s)| reshaping(s.code())));
    e.is_connection_refusal()
        || (e.code() == Some("EXECABORT") && moved())
        || (!pipeline.is_transaction() && reads_only(pipeline) && moved())
}

/// Whether every command of `pipeline` only reads.
fn reads_only(pipeline: &Pipeline) -> bool {
    const READS: [&[u8]; 11] =
        [b"GET", b"MGET", b"HGET", b"HMGET", b"HGETALL", b"EXISTS", b"TTL", b"PTTL", b"ZRANGE", b"SMEMBERS", b"SCARD"];
    pipeline.cmd_iter().all(|cmd| match cmd.args_iter().next() {
        Some(::redis::Arg::Simple(name)) => READS.iter().any(|r| r.eq_ignore_ascii_case(name)),
        _ => false,
    })
}

impl ClusterConn {
    /// Before sending again: a connection with a fresh view of the slots, and a pause that
    /// grows (a slot's keys are moving).
    async fn again(&mut self, attempt: u32) {
        self.source.rebuild();
        self.conn = self.source.current.read().unwrap_or_else(|e| e.into_inner()).0.clone();
        tokio::time::sleep(Duration::from_millis((5u64 << attempt).min(200))).await;
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => Box::pin(async move {
                let mut attempt = 0;
                loop {
                    match c.conn.req_packed_command(cmd).await {
                        Err(e) if attempt < RESENDS && command_resendable(&e) => {
                            c.again(attempt).await;
                            attempt += 1;
                        }
                        answer => return answer,
                    }
                }
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => Box::pin(async move {
                let mut attempt = 0;
                loop {
                    match c.conn.req_packed_commands(pipeline, offset, count).await {
                        Err(e) if attempt < RESENDS && pipeline_resendable(pipeline, &e) => {
                            c.again(attempt).await;
                            attempt += 1;
                        }
                        answer => return answer,
                    }
                }
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.conn.get_db(),
        }
    }
}

impl Conn {
    /// The cluster's primaries as `(host, port)`, sorted, as the connection names them
    /// (CLUSTER SLOTS); one `("", 0)` entry for a single server.
    pub(super) async fn primaries(&mut self) -> Result<Vec<(String, u16)>, RedisError> {
        let Conn::Cluster(c) = self else { return Ok(vec![(String::new(), 0)]) };
        let slots = c
            .conn
            .route_command(
                ::redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let mut primaries = Vec::new();
        if let Value::Array(ranges) = slots {
            for range in ranges {
                let Value::Array(parts) = range else { continue };
                let Some(Value::Array(node)) = parts.get(2) else { continue };
                let host = node.first().map(::redis::from_redis_value_ref::<String>).transpose()?;
                let port = node.get(1).map(::redis::from_redis_value_ref::<u16>).transpose()?;
                if let (Some(host), Some(port)) = (host, port) {
                    primaries.push((host, port));
                }
            }
        }
        primaries.sort();
        primaries.dedup();
        Ok(primaries)
    }

    /// Runs `cmd` on one primary (from [`Conn::primaries`]).
    pub(super) async fn on_primary(&mut self, primary: &(String, u16), cmd: Cmd) -> Result<Value, RedisError> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => {
                let (host, port) = primary.clone();
                c.conn
                    .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }))
                    .await
            }
        }
    }
}

/// Where connections come from.
pub(super) enum Source {
    Cluster(std::sync::Arc<ClusterSource>),
    /// A standalone server: one shared connection for the home runtime, and one of its own
    /// for each single-threaded runtime that asks (an HTTP worker).
    Standalone(Box<StandaloneSource>),
    Sentinel(Box<SentinelSource>),
}

/// A standalone server's connections.
///
/// An HTTP worker that sends its commands through the shared connection hands every request
/// and every reply to another thread (where that connection's I/O runs) and back: on a busy
/// broker those wake-ups cost more than Redis itself. Its own connection keeps a request's
/// round trip on the worker's thread. It lives as long as the worker's runtime (the worker
/// finishes its own requests before that ends, see `crate::home`), and its reconnections run
/// there too.
pub(super) struct StandaloneSource {
    shared: ConnectionManager,
    client: Client,
    config: ConnectionManagerConfig,
    workers: crate::home::PerWorker<ConnectionManager>,
}

/// A Redis Cluster: one connection (it routes by slot to every node), made afresh when a node
/// stops answering.
///
/// The cluster client learns where slots went from the nodes' MOVED answers, and reconnects to
/// a node whose connection failed. A primary that dies gives neither: its address refuses
/// connections, and the client keeps retrying it after its replica took the slots over, so
/// those slots would stay unavailable. A failure of a node's connection therefore makes the
/// next command use a new connection, which reads the slot map from the seed nodes again; at
/// most once per [`CLUSTER_REBUILD_EVERY`], so a node down until the failover costs a few
/// rebuilds, not one per request.
pub(super) struct ClusterSource {
    client: ::redis::cluster::ClusterClient,
    config: ClusterConfig,
    /// The connection, and when it was made afresh after a failure.
    current: RwLock<(ClusterConnection, Option<std::time::Instant>)>,
}

pub(super) const CLUSTER_REBUILD_EVERY: Duration = Duration::from_millis(500);

impl ClusterSource {
    fn rebuild(&self) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.1.is_some_and(|at| at.elapsed() < CLUSTER_REBUILD_EVERY) {
            return;
        }
        *current = (
            self.client.get_pending_async_connection_with_config(self.config.clone()),
            Some(std::time::Instant::now()),
        );
        tracing::warn!(
            "the Redis Cluster changed shape (a slot moved, or a node failed or left); reading its slots afresh"
        );
    }
}

/// Connection failures seen so far (see [`Source::failed`]): a worker's connection made
/// before the latest is retired.
static CONNECTION_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl StandaloneSource {
    /// This thread's own connection, when it runs a single-threaded runtime.
    fn local(&self) -> Option<ConnectionManager> {
        let failures = CONNECTION_FAILURES.load(std::sync::atomic::Ordering::Acquire);
        self.workers
            .get(failures, || ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()).ok())
    }
}

pub(super) struct SentinelSource {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: RwLock<Option<ConnectionManager>>,
    config: ConnectionManagerConfig,
}

impl Source {
    /// Builds the source without connecting: Tether starts (unready) while Redis is down.
    pub(super) fn new(target: &RedisTarget, timeout: Duration) -> Result<Self, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        match &target.topology {
            Topology::Standalone => {
                let url = target.urls.first().ok_or_else(|| invalid("no Redis URL"))?;
                let client = target.client(target.info(url)?)?;
                Ok(Source::Standalone(Box::new(StandaloneSource {
                    shared: ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
                    client,
                    config,
                    workers: crate::home::PerWorker::default(),
                })))
            }
            Topology::Cluster => {
                let nodes = target.urls.iter().map(|u| target.info(u)).collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(nodes).retries(2).max_retry_wait(500);
                if let Some(certs) = target.certificates() {
                    builder = builder.certs(certs);
                }
                let client = builder.build()?;
                let config = ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
                let connection = client.get_pending_async_connection_with_config(config.clone());
                let source = ClusterSource { client, config, current: RwLock::new((connection, None)) };
                Ok(Source::Cluster(std::sync::Arc::new(source)))
            }
            Topology::Sentinel { master } => {
                let sentinels = target
                    .urls
                    .iter()
                    .map(|u| u.expose_secret().into_connection_info().map(|i| i.addr().clone()))
                    .collect::<Result<Vec<ConnectionAddr>, _>>()?;
                let tls = sentinels.iter().any(|a| matches!(a, ConnectionAddr::TcpTls { .. }));
                let mut builder = SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)?;
                if let Some(username) = &target.username {
                    builder = builder.set_client_to_redis_username(username);
                }
                if let Some(password) = &target.password {
                    builder = builder.set_client_to_redis_password(password.expose_secret());
                }
                if tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(::redis::TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(::redis::TlsMode::Secure);
                }
                if let Some(certs) = target.certificates() {
                    builder = builder
                        .set_client_to_redis_certificates(certs.clone())
                        .set_client_to_sentinel_certificates(certs);
                }
                Ok(Source::Sentinel(Box::new(SentinelSource {
                    sentinel: tokio::sync::Mutex::new(builder.build()?),
                    current: RwLock::new(None),
                    config,
                })))
            }
        }
    }

    /// A connection of the calling thread's own, to be used where it is (outside the home
    /// runtime): on an HTTP worker, for a standalone server.
    pub(super) fn local(&self) -> Option<Conn> {
        match self {
            Source::Standalone(s) => s.local().map(Conn::Single),
            Source::Cluster(_) | Source::Sentinel(_) => None,
        }
    }

    /// A connection to use now (behind Sentinel: to the master the sentinels name).
    pub(super) async fn conn(&self) -> Result<Conn, RedisError> {
        match self {
            Source::Cluster(c) => {
                let conn = c.current.read().unwrap_or_else(|e| e.into_inner()).0.clone();
                Ok(Conn::Cluster(ClusterConn { conn, source: c.clone() }))
            }
            Source::Standalone(s) => Ok(Conn::Single(s.shared.clone())),
            Source::Sentinel(s) => {
                if let Some(conn) = s.current.read().unwrap_or_else(|e| e.into_inner()).clone() {
                    return Ok(Conn::Single(conn));
                }
                let mut sentinel = s.sentinel.lock().await;
                if let Some(conn) = s.current.read().unwrap_or_else(|e| e.into_inner()).clone() {
                    return Ok(Conn::Single(conn));
                }
                let client = sentinel.async_get_client().await?;
                let conn = ConnectionManager::new_lazy_with_config(client, s.config.clone())?;
                *s.current.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                tracing::info!("connected to the Redis master named by the sentinels");
                Ok(Conn::Single(conn))
            }
        }
    }

    /// Called when a command failed: behind Sentinel, a master that is gone, demoted or
    /// silent is forgotten so that the next command asks the sentinels again.
    /// A failure of a connection itself (any thread's) retires every thread's own
    /// connection: each worker's next command connects afresh, so that once Redis is back
    /// no worker fails a request on a connection that has not yet noticed the outage.
    pub(super) fn failed(&self, error: Option<&RedisError>) {
        let master_lost = error.is_none_or(|e| {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.code() == Some("READONLY")
        });
        if master_lost {
            CONNECTION_FAILURES.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        if let Source::Cluster(c) = self
            && master_lost
        {
            c.rebuild();
        }
        let Source::Sentinel(s) = self else { return };
        if master_lost && s.current.write().unwrap_or_else(|e| e.into_inner()).take().is_some() {
            tracing::warn!("lost the Redis master; asking the sentinels again on the next command");
        }
    }
}

fn invalid(message: &'static str) -> RedisError {
    RedisError::from((::redis::ErrorKind::InvalidClientConfig, message))
}
