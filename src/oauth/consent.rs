//! Remembered consent: a signed cookie listing what this browser approved, per client and
//! resource (MCP security best practices: consent "per user and per client_id", kept in a
//! cookie bound to the client).
//!
//! An approval covers a later authorization only for the same client, unchanged (the digest
//! of its redirect URIs, name and authentication method), the same resource, and no scope
//! beyond what was approved, until it expires. `prompt=consent` always asks again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::crypto::seal::KeyRing;
use crate::store::{AuthorizationRecord, ClientRecord};

/// More approvals than this and the oldest are dropped (cookies stay well under 4 KiB).
const MAX_APPROVALS: usize = 16;
const VERSION: &str = "c1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Approval {
    #[serde(rename = "c")]
    client_id: String,
    #[serde(rename = "r")]
    resource: String,
    #[serde(rename = "s")]
    scope: Vec<String>,
    /// Digest of what the user saw about the client: a changed client is asked again.
    #[serde(rename = "d")]
    client: String,
    #[serde(rename = "e")]
    expires_at: UnixTime,
}

/// The approvals one browser holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConsentJar {
    approvals: Vec<Approval>,
}

/// What identifies a client as the user saw it on the consent page.
pub fn client_digest(client: &ClientRecord) -> String {
    let mut uris = client.redirect_uris.clone();
    uris.sort();
    let seen = serde_json::json!([client.client_id, uris, client.client_name, client.token_endpoint_auth_method]);
    hash::digest(&seen.to_string())
}

impl ConsentJar {
    /// Reads the cookie; anything unsigned, tampered, unparseable or expired is dropped.
    pub fn read(cookie: Option<&str>, keys: &KeyRing, now: UnixTime) -> Self {
        // Browsers keep at most 4 KiB per cookie: anything longer was not written by Tether.
        let Some(cookie) = cookie.filter(|c| c.len() <= 4096) else { return Self::default() };
        let parsed = (|| {
            let mut parts = cookie.split('.');
            let (version, kid, payload, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if version != VERSION || parts.next().is_some() {
                return None;
            }
            let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
            if !keys.verify_mac(kid, signed_part(kid, payload).as_bytes(), &tag) {
                return None;
            }
            serde_json::from_slice::<Vec<Approval>>(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
        })();
        let approvals = parsed.unwrap_or_default().into_iter().filter(|a| a.expires_at > now).collect();
        Self { approvals }
    }

    /// How many approvals the cookie holds (signed, unexpired).
    pub fn len(&self) -> usize {
        self.approvals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.approvals.is_empty()
    }

    /// Whether an earlier approval covers this request.
    pub fn covers(&self, client: &ClientRecord, request: &AuthorizationRecord, now: UnixTime) -> bool {
        let digest = client_digest(client);
        self.approvals.iter().any(|a| {
            a.expires_at > now
                && a.client_id == request.client_id
                && a.resource == request.resource
                && a.client == digest
                && request.scope.iter().all(|s| a.scope.contains(s))
        })
    }

    /// Records an approval (replacing an earlier one for the same client and resource).
    pub fn approve(&mut self, client_digest: &str, request: &AuthorizationRecord, expires_at: UnixTime) {
        self.forget(request);
        self.approvals.push(Approval {
            client_id: request.client_id.clone(),
            resource: request.resource.clone(),
            scope: request.scope.clone(),
            client: client_digest.to_owned(),
            expires_at,
        });
        if self.approvals.len() > MAX_APPROVALS {
            self.approvals.sort_by_key(|a| a.expires_at);
            let excess = self.approvals.len() - MAX_APPROVALS;
            self.approvals.drain(..excess);
        }
    }

    /// Drops the approval for this client and resource (the user denied).
    pub fn forget(&mut self, request: &AuthorizationRecord) {
        self.approvals.retain(|a| !(a.client_id == request.client_id && a.resource == request.resource));
    }

    /// The signed cookie value.
    pub fn encode(&self, keys: &KeyRing) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.approvals).unwrap_or_default());
        let (kid, _) = keys.mac(b"");
        let kid = kid.to_owned();
        let (_, tag) = keys.mac(signed_part(&kid, &payload).as_bytes());
        format!("{VERSION}.{kid}.{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
    }
}

fn signed_part(kid: &str, payload: &str) -> String {
    format!("{VERSION}.{kid}.{payload}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeyRing {
        KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap()
    }

    fn client(uris: &[&str]) -> ClientRecord {
        serde_json::from_value(serde_json::json!({
            "client_id": "c", "issued_at": 0, "redirect_uris": uris, "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"], "response_types": ["code"], "client_name": "C"
        }))
        .unwrap()
    }

    fn request(scope: &[&str]) -> AuthorizationRecord {
        serde_json::from_value(serde_json::json!({
            "client_id": "c", "redirect_uri": "https://c/cb", "redirect_uri_sent": true, "code_challenge": "x",
            "resource": "files", "scope": scope, "offline": true
        }))
        .unwrap()
    }

    #[test]
    fn an_approval_covers_the_same_client_resource_and_no_more_scope_until_it_expires() {
        let (keys, c) = (keys(), client(&["https://c/cb"]));
        let mut jar = ConsentJar::default();
        jar.approve(&client_digest(&c), &request(&["files:read", "files:write"]), 100);
        let jar = ConsentJar::read(Some(&jar.encode(&keys)), &keys, 50);
        assert!(jar.covers(&c, &request(&["files:read"]), 50));
        assert!(jar.covers(&c, &request(&["files:read", "files:write"]), 50));
        assert!(!jar.covers(&c, &request(&["files:admin"]), 50), "more scope");
        assert!(
            !jar.covers(&client(&["https://c/cb", "https://evil/cb"]), &request(&["files:read"]), 50),
            "changed client"
        );
        assert!(!jar.covers(&c, &request(&["files:read"]), 100), "expired");
        assert!(
            ConsentJar::read(Some(&jar.encode(&keys)), &keys, 100).approvals.is_empty(),
            "expired entries are dropped"
        );
    }

    #[test]
    fn tampered_or_foreign_cookies_are_empty() {
        let (keys, c) = (keys(), client(&["https://c/cb"]));
        let mut jar = ConsentJar::default();
        jar.approve(&client_digest(&c), &request(&["files:read"]), 100);
        let cookie = jar.encode(&keys);
        let mut parts: Vec<&str> = cookie.split('.').collect();
        let forged =
            URL_SAFE_NO_PAD.encode(br#"[{"c":"c","r":"files","s":["files:read","files:admin"],"d":"x","e":100}]"#);
        parts[2] = &forged;
        assert_eq!(ConsentJar::read(Some(&parts.join(".")), &keys, 0), ConsentJar::default());
        assert_eq!(ConsentJar::read(Some(&cookie), &self::keys(), 0), ConsentJar::default(), "another key");
        for junk in ["", "c1", "c1.k1.x.y", "c2.k1.e30.AA", "garbage.with.four.parts"] {
            assert_eq!(ConsentJar::read(Some(junk), &keys, 0), ConsentJar::default(), "{junk}");
        }
    }

    #[test]
    fn the_jar_keeps_at_most_sixteen_approvals() {
        let (keys, c) = (keys(), client(&["https://c/cb"]));
        let mut jar = ConsentJar::default();
        for i in 0..20 {
            let mut r = request(&["files:read"]);
            r.resource = format!("r{i}");
            jar.approve(&client_digest(&c), &r, 1000 + i);
        }
        assert_eq!(jar.approvals.len(), 16);
        assert!(jar.encode(&keys).len() < 4000);
    }
}
