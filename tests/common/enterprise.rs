//! A company identity provider for enterprise-managed authorization tests: it signs ID-JAGs
//! with its own key and serves that key set over https (the document server, whose CA Tether is
//! told to trust), and the Tether configuration that trusts it for a confidential client.
#![allow(dead_code)] // each test binary uses part of it

use super::dev_upstream::Oidc;
use super::tls_server::{DocumentServer, Route};
use super::{CLIENT_REDIRECT, Kind, Options};

/// The client allowed to present the IdP's ID-JAGs, and its secret.
pub const CLIENT: &str = "agent";
pub const CLIENT_SECRET: &str = "agent-secret-0123456789";

pub struct EnterpriseIdp {
    pub server: DocumentServer,
    pub idp: Oidc,
    pub dir: tempfile::TempDir,
}

impl EnterpriseIdp {
    pub async fn start() -> Self {
        let server = DocumentServer::start().await;
        let idp = Oidc::new(jsonwebtoken::Algorithm::ES256);
        server.route("/jwks", Route::json(&idp.jwks(), "max-age=300"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &server.ca_pem).unwrap();
        std::fs::write(dir.path().join("agent"), CLIENT_SECRET).unwrap();
        Self { server, idp, dir }
    }

    /// Login mode at the OpenID stand-in, which is also the trusted IdP, for `resources`;
    /// `more` is appended (resources of the test's own).
    pub fn options(&self, resources: &[&str], more: &str) -> Options {
        let d = self.dir.path().display();
        let resources = resources.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
        let extra = format!(
            r#"[login]
provider = "idp"
[client_metadata]
allow_networks = ["127.0.0.1/32"]
ca_file = "{d}/ca.pem"
[enterprise.corp]
issuer = "{{upstream}}"
jwks_url = "{jwks}"
resources = [{resources}]
clients = ["{CLIENT}"]
[clients.{CLIENT}]
name = "Company agent"
redirect_uris = ["{CLIENT_REDIRECT}"]
client_secret_file = "{d}/agent"
{more}"#,
            jwks = self.server.url("/jwks"),
        );
        Options { kind: Kind::Oidc, extra, ..Options::default() }
    }
}
