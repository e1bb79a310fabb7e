//! Tether as operators run it: `tether serve` processes (the binary cargo built for these
//! tests), sharing one Redis, one key set, one issuer and one upstream stand-in, each on a
//! free loopback port, as replicas behind a load balancer are. Signals are real (SIGKILL,
//! SIGTERM), and every process is killed when the test ends, also when it fails.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::redis::{free_port, kill_with_parent};
use super::*;

/// One `tether serve` process.
pub struct Replica {
    pub tether: Tether,
    pid: u32,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl std::ops::Deref for Replica {
    type Target = Tether;
    fn deref(&self) -> &Tether {
        &self.tether
    }
}

impl Replica {
    /// Sends `signal` (SIGKILL, SIGTERM) to the process.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("pid");
        // SAFETY: sending a signal to our own child process, which we have not reaped yet.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to `within` for the process to exit.
    pub async fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process's resident set size (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).unwrap_or(0)
    }

    /// What the process logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `n` replicas on one Redis (or the store `options.store` names).
pub struct Replicas {
    pub replicas: Vec<Replica>,
    pub redis: RedisServer,
    pub upstream: Arc<DevUpstream>,
    pub issuer: String,
    _dir: tempfile::TempDir,
    _keys: tempfile::TempDir,
}

impl std::ops::Index<usize> for Replicas {
    type Output = Replica;
    fn index(&self, i: usize) -> &Replica {
        &self.replicas[i % self.replicas.len()]
    }
}

impl std::ops::IndexMut<usize> for Replicas {
    fn index_mut(&mut self, i: usize) -> &mut Replica {
        let n = self.replicas.len();
        &mut self.replicas[i % n]
    }
}

impl Replicas {
    pub async fn start(n: usize, options: Options) -> Self {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let issuer = format!("http://127.0.0.1:{}", ports[0]);
        let upstream = Arc::new(stand_in(&[format!("{issuer}/callback")], &options).await);
        let redis = RedisServer::start();
        let keys = key_files();
        let dir = tempfile::tempdir().unwrap();
        let config =
            write_config(dir.path(), &issuer, &upstream.base_url, Some(&redis.url()), Some(keys.path()), &options);
        let mut replicas = Vec::new();
        for (i, port) in ports.into_iter().enumerate() {
            let log = dir.path().join(format!("tether-{i}.log"));
            replicas.push(spawn(&config, port, &issuer, log, &options.env).await);
        }
        Self { replicas, redis, upstream, issuer, _dir: dir, _keys: keys }
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// `url` (an address under the issuer, such as the upstream's redirect to `/callback`) as
    /// reached through replica `i`: a load balancer in front of the issuer's name.
    pub fn via(&self, i: usize, url: &str) -> String {
        match url.strip_prefix(&self.issuer) {
            Some(rest) => format!("{}{rest}", self[i].base),
            None => url.to_owned(),
        }
    }

    /// A whole authorization for `user` with each request on the next replica, starting at
    /// `start`: authorize, consent, upstream login, callback, code exchange, introspection,
    /// refresh, introspection of the new token, and the old refresh token replayed within
    /// the grace window. Returns the latest tokens. Panics with the failed step.
    pub async fn flow(&self, client: &TestClient, user: &str, start: usize) -> Value {
        let at = |step: usize| &self[start + step];
        let pkce = Pkce::new();
        let browser = Browser::new();
        let page = browser.get(&at(0).authorize_url(client, &pkce, &[])).await;
        assert_eq!(page.status(), 200, "{user}: consent page");
        let consent = consent_id(&page.text().await.unwrap());
        let to_upstream = browser.consent(&at(1).url("/consent"), &consent, "approve").await;
        assert_eq!(to_upstream.status(), 303, "{user}: consent");
        let back = browser.upstream_login(&location(&to_upstream), user, "approve").await;
        let to_client = browser.get(&self.via(start + 2, &location(&back))).await;
        assert_eq!(to_client.status(), 302, "{user}: callback: {}", to_client.text().await.unwrap());
        let result = query(&location(&to_client));
        assert_eq!(result["iss"], self.issuer, "{user}: iss");

        let exchanged = at(3).exchange_code(client, &result["code"], &pkce.verifier).await;
        assert_eq!(exchanged.status(), 200, "{user}: code exchange");
        let tokens: Value = exchanged.json().await.unwrap();
        let access = tokens["access_token"].as_str().unwrap();
        let answer = at(4).introspect(access).await;
        assert_eq!(answer["active"], true, "{user}: introspection: {answer}");
        assert_eq!(answer["sub"], self.upstream.user_id(user).to_string(), "{user}: subject");

        let refreshed = at(5).refresh(client, tokens["refresh_token"].as_str().unwrap()).await;
        assert_eq!(refreshed.status(), 200, "{user}: refresh");
        let rotated: Value = refreshed.json().await.unwrap();
        assert_eq!(at(6).introspect(rotated["access_token"].as_str().unwrap()).await["active"], true, "{user}");
        let replayed = at(7).refresh(client, tokens["refresh_token"].as_str().unwrap()).await;
        assert_eq!(replayed.json::<Value>().await.unwrap(), rotated, "{user}: a replay within the grace window");
        rotated
    }

    /// Registers a public client through replica `i`.
    pub async fn client(&self, i: usize) -> TestClient {
        self[i].register_client("none").await
    }
}

/// Starts `tether serve` on `port` and waits until it is ready.
pub async fn spawn(
    config: &std::path::Path,
    port: u16,
    issuer: &str,
    log: PathBuf,
    env: &[(String, String)],
) -> Replica {
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("TETHER__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env_remove("TETHER_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file));
    kill_with_parent(&mut command);
    let child = command.spawn().expect("cannot run the tether binary");
    let base = format!("http://127.0.0.1:{port}");
    let mut replica = Replica { tether: Tether::new(&base, issuer), pid: child.id(), child: Some(child), log };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = replica.api.get(replica.url("/readyz")).send().await
            && response.status() == 200
        {
            return replica;
        }
        if let Some(status) = replica.exited(Duration::ZERO).await {
            panic!("tether serve exited ({status}) on port {port}:\n{}", replica.log());
        }
        assert!(Instant::now() < deadline, "tether serve not ready within 30 s on port {port}:\n{}", replica.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
