//! A real `redis-server` per test, on a free loopback port, stopped when dropped (also when
//! the test panics). A missing `redis-server` fails the test with instructions; it never
//! skips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Arguments beyond port, bind, persistence and dir (cluster mode, replication, ...).
    extra: Vec<String>,
    /// For a sentinel: the lines of its configuration file (beyond port, bind and dir).
    sentinel: Option<String>,
    /// TLS only, with `redis.crt`, `redis.key` and `ca.crt` in `dir`.
    tls: bool,
    /// The ACL user and password `cli` signs in with (the default user is off).
    user: Option<(String, String)>,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("TETHER_TEST_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("redis-server")).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!(
            "redis-server is not installed, and the Redis tests never skip. Run `make test` (it installs \
             redis-server with apt-get), or `apt-get install redis-server`, or set TETHER_TEST_REDIS_SERVER."
        )
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free port")
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra command-line arguments (`--cluster-enabled yes`, ...).
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch("redis-server", |server| server.extra = extra.iter().map(|a| (*a).to_owned()).collect())
    }

    /// Redis over TLS only (`rediss://`), its certificate (for 127.0.0.1) issued by a CA of
    /// the test's own (`ca_file`), with the ACL user `user` and the default user off.
    pub fn start_tls(user: &str, password: &str) -> Self {
        Self::launch("redis-server with TLS", |server| {
            write_certificates(server.dir.path());
            let d = server.dir.path().display();
            let port = server.port.to_string();
            server.extra = [
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                &format!("{d}/redis.crt"),
                "--tls-key-file",
                &format!("{d}/redis.key"),
                "--tls-ca-cert-file",
                &format!("{d}/ca.crt"),
                "--tls-auth-clients",
                "no",
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
                "--user",
                "default",
                "off",
            ]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
            server.tls = true;
            server.user = Some((user.to_owned(), password.to_owned()));
        })
    }

    /// A sentinel (`redis-server sentinel.conf --sentinel`) with these configuration lines.
    pub fn start_sentinel(lines: &str) -> Self {
        Self::launch("redis-server --sentinel", |server| server.sentinel = Some(lines.to_owned()))
    }

    /// Starts a server `prepare`d on a free port and waits until it answers. A port picked
    /// this way can be taken by someone else before Redis binds it; so it retries.
    fn launch(what: &str, prepare: impl Fn(&mut Self)) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for redis");
            let mut server =
                Self { port: free_port(), child: None, dir, extra: Vec::new(), sentinel: None, tls: false, user: None };
            prepare(&mut server);
            server.spawn();
            if server.wait_ready(Duration::from_secs(10)) {
                return server;
            }
        }
        panic!("{what} did not start on a free port after 5 attempts");
    }

    /// The PEM file of the CA that issued a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn spawn(&mut self) {
        let mut command = Command::new(binary());
        let dir = self.dir.path().display().to_string();
        match &self.sentinel {
            Some(lines) => {
                let conf = self.dir.path().join("sentinel.conf");
                std::fs::write(&conf, format!("port {}\nbind 127.0.0.1\ndir {dir}\n{lines}\n", self.port)).unwrap();
                command.arg(conf).arg("--sentinel");
            }
            None => {
                command
                    .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--dir", &dir])
                    .args(&self.extra);
            }
        }
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        kill_with_parent(&mut command);
        self.child = Some(command.spawn().expect("cannot run redis-server"));
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.ping() {
                return true;
            }
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                return false; // exited: port taken
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Whether Redis answers PING.
    pub fn ping(&self) -> bool {
        if self.tls || self.user.is_some() {
            return self.cli(&["PING"]).trim() == "PONG";
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills Redis (connections refused until `restart`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Shuts Redis down as an operator does (`SHUTDOWN SAVE`): what it acknowledged is on disk
    /// and comes back with `restart`.
    pub fn shut_down_saving(&mut self) {
        let _ = self.cli(&["SHUTDOWN", "SAVE"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port, with what `shut_down_saving` saved (nothing
    /// after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        assert!(self.wait_ready(Duration::from_secs(10)), "redis-server did not come back on port {}", self.port);
    }

    /// Freezes Redis (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    #[allow(unsafe_code)]
    fn signal(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(cli_binary());
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.tls {
            command.arg("--tls").arg("--cacert").arg(self.ca_file());
        }
        if let Some((user, password)) = &self.user {
            command.args(["--user", user, "--pass", password, "--no-auth-warning"]);
        }
        let out = command.args(args).output().expect("cannot run redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A CA and a certificate for 127.0.0.1 it issued, as PEM files in `dir`.
fn write_certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (redis-cli) takes a leaf named like its issuer for self-signed.
    ca_params.distinguished_name.push(DnType::CommonName, "Tether test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.distinguished_name.push(DnType::CommonName, "redis test server");
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("redis.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("redis.key"), key.serialize_pem()).unwrap();
}

/// `redis-cli SUBSCRIBE channel` on a server, its output lines delivered as they come;
/// killed when dropped.
pub struct Subscription {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Subscription {
    /// The next message (a line that is not part of the subscription's own echo), waiting
    /// up to `within`.
    pub fn next_message(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let line = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()?;
            if line.starts_with('{') {
                return Some(line);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Subscribes to `channel` and returns once the subscription is in place.
    pub fn subscribe(&self, channel: &str) -> Subscription {
        use std::io::BufRead;
        let mut child = Command::new(cli_binary())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "SUBSCRIBE", channel])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-cli (apt-get install redis-tools)");
        let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let subscription = Subscription { child, lines };
        // redis-cli echoes "subscribe", the channel and the count once subscribed.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let line =
                subscription.lines.recv_timeout(Duration::from_secs(5)).expect("redis-cli SUBSCRIBE said nothing");
            if line.trim() == channel {
                return subscription;
            }
            assert!(Instant::now() < deadline, "redis-cli did not subscribe to {channel}");
        }
    }
}

fn cli_binary() -> PathBuf {
    binary().with_file_name("redis-cli")
}

/// A real Redis Cluster of three primaries (no replicas) on free ports, made by
/// `redis-cli --cluster create`; every node stops when this is dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with_replicas(0)
    }

    /// Three primaries with `replicas` replicas each (the replicas follow the primaries in
    /// `nodes`).
    pub fn start_with_replicas(replicas: usize) -> Self {
        // Replicas sync at once (Redis 7 otherwise waits 5 s for more replicas before a
        // diskless sync); a replica that never synced may not take over its primary.
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas)).map(|_| RedisServer::start_with(&args)).collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let replicas = replicas.to_string();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", replicas.as_str(), "--cluster-yes"]);
        let out = Command::new(cli_binary()).args(&create).output().expect("cannot run redis-cli --cluster create");
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the Redis Cluster did not reach cluster_state:ok within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let synced = |n: &RedisServer| {
            let info = n.cli(&["INFO", "replication"]);
            !info.contains("role:slave") || info.contains("master_link_status:up")
        };
        while !cluster.nodes.iter().all(synced) {
            assert!(Instant::now() < deadline, "the Redis Cluster's replicas did not sync within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// The seed URLs, comma-separated (two of three nodes: the third is discovered).
    pub fn url(&self) -> String {
        self.nodes.iter().take(2).map(RedisServer::url).collect::<Vec<_>>().join(",")
    }

    /// Keys stored on each node (a cluster that spreads nothing would show one non-zero).
    pub fn keys_per_node(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.cli(&["DBSIZE"]).trim().parse().unwrap_or(0)).collect()
    }

    /// The index of the node serving `key`'s slot as primary.
    pub fn primary_of(&self, key: &str) -> usize {
        let slot = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).trim().parse::<usize>().unwrap();
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        let serves = |line: &&str| slot_ranges(line).any(|range| range.contains(&slot));
        let line = nodes.lines().filter(|l| l.contains("master")).find(serves).expect("no primary serves the slot");
        let address = line.split_whitespace().nth(1).unwrap_or_default();
        let port: u16 = address.split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        self.nodes.iter().position(|n| n.port == port).expect("the primary is one of ours")
    }

    /// Moves the slot of `key` (and its keys) to node `to` behind every client's back, as
    /// `redis-cli --cluster reshard` does slot by slot: IMPORTING, MIGRATING, MIGRATE, NODE.
    pub fn move_slot_of(&self, key: &str, to: usize) {
        let slot = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).trim().to_owned();
        let from = self.primary_of(key);
        assert_ne!(from, to, "the slot is on node {to} already");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        assert!(self.nodes[to].cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]).contains("OK"));
        assert!(self.nodes[from].cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]).contains("OK"));
        let keys = self.nodes[from].cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if !keys.is_empty() {
            let port = self.nodes[to].port.to_string();
            let mut migrate = vec!["MIGRATE", "127.0.0.1", port.as_str(), "", "0", "5000", "KEYS"];
            migrate.extend(keys);
            assert!(self.nodes[from].cli(&migrate).contains("OK"), "MIGRATE failed");
        }
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
    }

    /// Kills node `i` (SIGKILL: no goodbye to the cluster).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Whether every live node says the cluster is whole again.
    pub fn healthy(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    }

    /// The cluster node id of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        self.nodes[i].cli(&["CLUSTER", "MYID"]).trim().to_owned()
    }

    /// Hash slots node `i` serves.
    pub fn slots_of(&self, i: usize) -> usize {
        let id = self.node_id(i);
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        let Some(line) = nodes.lines().find(|l| l.starts_with(&id)) else { return 0 };
        slot_ranges(line).map(|range| range.count()).sum()
    }

    /// Runs `redis-cli --cluster <args>` (against node 0 unless the args name a node) and
    /// fails the test if it fails.
    pub fn admin(&self, args: &[&str]) -> String {
        let out =
            Command::new(cli_binary()).arg("--cluster").args(args).output().expect("cannot run redis-cli --cluster");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "redis-cli --cluster {args:?} failed: {text}");
        text
    }

    /// Starts a new primary and joins it to the cluster with no slots; its index.
    pub fn add_primary(&mut self) -> usize {
        let args =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
        let node = RedisServer::start_with(&args);
        let (new, existing) = (format!("127.0.0.1:{}", node.port), format!("127.0.0.1:{}", self.nodes[0].port));
        self.admin(&["add-node", &new, &existing]);
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.nodes[i].cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the new node did not join within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        i
    }

    /// Moves `slots` hash slots (with their keys) from node `from` (or from every other node,
    /// `None`) to node `to`, as an operator does with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: Option<usize>, to: usize, slots: usize) -> String {
        let from = from.map_or_else(|| "all".to_owned(), |i| self.node_id(i));
        let (to, slots) = (self.node_id(to), slots.to_string());
        let seed = format!("127.0.0.1:{}", self.nodes[0].port);
        self.admin(&[
            "reshard",
            &seed,
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            &slots,
            "--cluster-yes",
        ])
    }

    /// Takes node `i` (holding no slots) out of the cluster; it shuts down.
    pub fn remove_primary(&mut self, i: usize) {
        let (seed, id) = (format!("127.0.0.1:{}", self.nodes[0].port), self.node_id(i));
        self.admin(&["del-node", &seed, &id]);
        self.nodes[i].stop();
    }
}

/// The slots a `CLUSTER NODES` line says its node serves (ranges after the eighth field;
/// slots being migrated, `[...]`, are left out).
fn slot_ranges(line: &str) -> impl Iterator<Item = std::ops::RangeInclusive<usize>> + '_ {
    line.split_whitespace().skip(8).filter(|r| !r.starts_with('[')).filter_map(|range| {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        Some(a.parse().ok()?..=b.parse().ok()?)
    })
}

/// A real Sentinel setup: a master, one replica and one sentinel watching them as
/// `mymaster` (quorum 1, down after 1 s), each on a free port.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

impl RedisSentinel {
    pub fn start() -> Self {
        // Replicas sync at once (the default waits 5 s for more replicas to join).
        let master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let port = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let sentinel = RedisServer::start_sentinel(&format!(
            "sentinel monitor mymaster 127.0.0.1 {port} 1\nsentinel known-replica mymaster 127.0.0.1 {}\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000",
            replica.port
        ));
        wait_for("the sentinel to find the replica", || {
            sentinel.cli(&["SENTINEL", "REPLICAS", "mymaster"]).contains(&replica.port.to_string())
        });
        Self { master, replica, sentinel }
    }

    /// The sentinel's URL (what `store.url` names for `topology = "sentinel"`).
    pub fn url(&self) -> String {
        self.sentinel.url()
    }

    /// Waits until the replica has every write the master has taken so far: a marker written
    /// last arrives last. (`WAIT` from another connection proves nothing, and Redis 7 holds
    /// the stream to a new diskless replica until its first ACK, up to a second.)
    fn caught_up(&self) {
        let marker = format!("sync-{}", uuid::Uuid::new_v4().simple());
        self.master.cli(&["SET", &marker, "1"]);
        wait_for("the replica to catch up", || self.replica.cli(&["EXISTS", &marker]).trim() == "1");
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> u16 {
        let reply = self.sentinel.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
        reply.lines().nth(1).and_then(|p| p.trim().parse().ok()).unwrap_or(0)
    }

    /// The master dies (after its replica received every write): the sentinel notices
    /// within a second and promotes the replica. Returns when the sentinel names it.
    pub fn kill_master(&mut self) {
        self.caught_up();
        self.master.stop();
        wait_for("the sentinel to name the replica", || self.master_port() == self.replica.port);
        wait_for("the replica to become master", || self.replica.cli(&["ROLE"]).starts_with("master"));
    }
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out after 30 s waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.stop();
    }
}

/// Ask the kernel to kill Redis if the test process dies without running destructors.
#[allow(unsafe_code)]
pub fn kill_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and only affects the child being spawned.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}
