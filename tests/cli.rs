//! The `tether` binary: `check-config`, `serve` refusing bad configuration, `keys generate`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Runs `tether` with only the given environment (no stray TETHER__ variables).
fn tether(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).args(args).envs(env.iter().copied());
    command.output().expect("cannot run tether")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const BAD: &str = r#"
issuer = "https://tether.example.com/"
[server]
shutdown_delay_secs = 601
[tokens]
access_token_ttl_secs = 5
[providers.gh]
kind = "github"
client_id = ""
[providers.corp]
kind = "oauth2"
client_id = "tether"
authorize_url = "not a url"
[resources.files]
uri = "https://files.example.com/mcp?x=1"
provider = "nope"
[clients.chat]
redirect_uris = ["http://chat.example.com/cb"]
"#;

const BAD_KEYS: [&str; 12] = [
    "issuer:",
    "server.shutdown_delay_secs: must be at most 600",
    "tokens.access_token_ttl_secs:",
    "providers.gh.client_id:",
    "providers.gh.client_secret: missing: set TETHER__PROVIDERS__GH__CLIENT_SECRET",
    "providers.corp.authorize_url:",
    "providers.corp.token_url: required",
    "resources.files.uri:",
    "resources.files.provider: unknown provider `nope`",
    "resources.files.secret: missing",
    "clients.chat.redirect_uris:",
    "clients.chat.client_secret: missing",
];

#[test]
fn check_config_names_every_offending_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.toml", BAD);
    let out = tether(&["--config", &config, "check-config"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in BAD_KEYS {
        assert!(stderr.contains(key), "missing `{key}` in:\n{stderr}");
    }
}

#[test]
fn serve_refuses_to_start_on_invalid_config_with_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.toml", BAD);
    let started = Instant::now();
    let out = tether(&["--config", &config, "serve"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr.contains("refusing to start"), "{stderr}");
    for key in BAD_KEYS {
        assert!(stderr.contains(key), "missing `{key}` in:\n{stderr}");
    }
    // TETHER_CONFIG works like --config.
    let out = tether(&["serve"], &[("TETHER_CONFIG", &config)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn secrets_written_into_a_config_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "leaky.toml",
        "[store]\nkind = \"redis\"\nurl = \"redis://user:hunter2@redis:6379\"\n[keys]\nsigning = \"k:abc\"\n[providers.gh]\nkind = \"github\"\nclient_id = \"x\"\nclient_secret = \"hunter2\"\n",
    );
    let out = tether(&["--config", &config, "check-config"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for key in [
        "store.url: secrets must not be written",
        "keys.signing: secrets must not be written",
        "providers.gh.client_secret: secrets must not be written",
    ] {
        assert!(stderr.contains(key), "missing `{key}` in:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2"), "the secret itself must not be echoed:\n{stderr}");
}

/// A production configuration: https issuer, Redis, GitHub, one resource.
const PRODUCTION: &str = r#"
profile = "production"
issuer = "https://tether.example.com"
[store]
kind = "redis"
url = "rediss://redis.internal:6380"
[providers.github]
kind = "github"
client_id = "Iv1.0123456789"
[resources.files]
uri = "https://files.example.com/mcp"
provider = "github"
"#;

#[test]
fn generated_keys_satisfy_the_production_profile_and_missing_ones_do_not() {
    let out = tether(&["keys", "generate"], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"))
            .to_owned()
    };
    let (encryption, signing) = (value("TETHER__KEYS__ENCRYPTION"), value("TETHER__KEYS__SIGNING"));
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "prod.toml", PRODUCTION);
    let secrets = [
        ("TETHER__PROVIDERS__GITHUB__CLIENT_SECRET", "github-client-secret"),
        ("TETHER__RESOURCES__FILES__SECRET", "a-long-introspection-secret"),
    ];

    let mut env = secrets.to_vec();
    env.extend([("TETHER__KEYS__ENCRYPTION", encryption.as_str()), ("TETHER__KEYS__SIGNING", signing.as_str())]);
    let out = tether(&["--config", &config, "check-config"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // The same keys from files.
    let encryption_file = write(dir.path(), "enc", &format!("{encryption}\n"));
    let signing_file = write(dir.path(), "sig", &signing);
    let mut env = secrets.to_vec();
    env.extend([
        ("TETHER__KEYS__ENCRYPTION_FILE", encryption_file.as_str()),
        ("TETHER__KEYS__SIGNING_FILE", signing_file.as_str()),
    ]);
    let out = tether(&["--config", &config, "check-config"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Production without keys refuses; a malformed key is named.
    let out = tether(&["--config", &config, "check-config"], &secrets);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("keys.encryption: missing") && stderr.contains("keys.signing: missing"), "{stderr}");
    let mut env = secrets.to_vec();
    env.extend([("TETHER__KEYS__ENCRYPTION", "k1:dG9vLXNob3J0"), ("TETHER__KEYS__SIGNING", signing.as_str())]);
    let stderr = String::from_utf8(tether(&["--config", &config, "check-config"], &env).stderr).unwrap();
    assert!(stderr.contains("keys.encryption: key `k1` is not base64 of exactly 32 bytes"), "{stderr}");
}

/// Kills the child process when dropped, also when the test panics.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal HTTP/1.1 GET: the status line and body, or `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

#[test]
fn serve_starts_with_the_demo_configuration_and_publishes_its_issuer() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let bind = format!("127.0.0.1:{port}");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let _tether = Running(
        Command::new(BIN)
            .env_clear()
            .envs([
                ("TETHER__ISSUER", issuer.as_str()),
                ("TETHER__SERVER__BIND", bind.as_str()),
                ("TETHER__RESOURCES__DEMO__SECRET", "s"),
            ])
            .args(["--config", demo, "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        if let Some(answer) = http_get(port, "/.well-known/oauth-authorization-server") {
            break answer;
        }
        assert!(Instant::now() < deadline, "tether serve did not answer within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains(" 200 "), "{status}");
    let metadata: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(metadata["token_endpoint"], format!("{issuer}/token"));
}

#[test]
fn keys_rotate_prints_the_next_list_and_what_to_do_then_without_echoing_keys() {
    let out = tether(&["keys", "rotate", "signing", "publish"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to rotate"), "{out:?}");

    let signing = tether::crypto::signing::SigningKeys::generate_spec("sig-1").unwrap();
    let env = [("TETHER__KEYS__SIGNING", signing.as_str())];
    let out = tether(&["keys", "rotate", "signing", "publish"], &env);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let value = stdout.trim().strip_prefix("TETHER__KEYS__SIGNING=").expect("NAME=value");
    assert!(value.starts_with(&format!("{signing},+k")), "the old key first, the new one marked published");
    tether::crypto::signing::SigningKeys::parse(value).expect("a valid list");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("rotate signing activate") && stderr.contains("TETHER__KEYS__SIGNING"), "{stderr}");
    assert!(!stderr.contains(signing.split_once(':').unwrap().1), "key material in the guidance");

    let env = [("TETHER__KEYS__SIGNING", value)];
    let out = tether(&["keys", "rotate", "signing", "activate", "--value-only"], &env);
    assert!(out.status.success(), "{out:?}");
    let active = String::from_utf8(out.stdout).unwrap();
    assert!(active.starts_with('k') && active.trim().ends_with(&signing[6..]), "new first, old after: {active}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("605 s"),
        "names the wait before retiring (lifetime plus the exp leeway)"
    );

    let one = [("TETHER__KEYS__SIGNING", signing.as_str())];
    let out = tether(&["keys", "rotate", "signing", "retire"], &one);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key is retiring"), "{out:?}");

    let out = tether(&["keys", "reseal"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory store"), "{out:?}");
}

#[test]
fn providers_list_prints_each_preset_with_its_variables_and_notes() {
    let out = tether(&["providers", "list"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for preset in ["slack (Slack)", "notion (Notion)", "salesforce (Salesforce)", "gitlab (GitLab)"] {
        assert!(text.contains(preset), "{preset}: {text}");
    }
    assert!(text.contains("variables.host = \"login.salesforce.com\"   (default)"), "{text}");
    assert!(text.contains("{issuer}/callback"), "setup notes: {text}");
    let one = tether(&["providers", "list", "gitlab"], &[]);
    let one = String::from_utf8(one.stdout).unwrap();
    assert!(one.contains("variables.base_url") && !one.contains("slack"), "{one}");
    assert!(!tether(&["providers", "list", "nowhere"], &[]).status.success());
}
