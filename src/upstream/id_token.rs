//! OpenID Connect ID tokens: the provider's keys (JWKS, cached, refetched once when a new key
//! id appears) and the checks of OIDC Core §3.1.3.7.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use super::http::UpstreamHttp;
use crate::clock::UnixTime;

/// Tolerance for clock differences with the provider.
const LEEWAY: i64 = 60;
/// A key id the cached set lacks triggers a refetch (the provider may have rotated its keys),
/// at most one per this interval, so a flood of forged tokens cannot turn into a flood of
/// JWKS requests. The first load does not count.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Asymmetric algorithms only: an ID token is never verified with a shared secret or `none`.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed")]
    Malformed,
    #[error("the ID token uses algorithm {0:?}, which is not accepted")]
    Algorithm(Algorithm),
    #[error("the ID token's signing key `{0}` is not published by the provider")]
    UnknownKey(String),
    #[error("the provider's JWKS cannot be fetched: {0}")]
    Jwks(String),
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token is for another issuer")]
    Issuer,
    #[error("the ID token is for another client")]
    Audience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token is dated in the future")]
    IssuedInFuture,
    #[error("the ID token's nonce is not the one sent")]
    Nonce,
}

/// The claims Tether uses.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    /// Display claims (OIDC Core §5.1), kept for people to recognise the account by.
    #[serde(default, deserialize_with = "super::identity::display")]
    pub preferred_username: Option<String>,
    #[serde(default, deserialize_with = "super::identity::display")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::identity::display")]
    pub email: Option<String>,
    iss: String,
    aud: Audience,
    #[serde(default)]
    azp: Option<String>,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
    /// Every other claim (a tenant id, a subject made of several claims).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The placeholder multi-tenant providers put in their discovered issuer (Microsoft).
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// Whether `got` is `template` with its `{tenantid}` (if any) replaced by one tenant id.
pub fn issuer_matches(template: &str, got: &str) -> bool {
    match template.split_once(TENANT_PLACEHOLDER) {
        None => template == got,
        Some((before, after)) => {
            got.strip_prefix(before).and_then(|rest| rest.strip_suffix(after)).is_some_and(is_tenant_id)
        }
    }
}

/// A tenant id that can stand in an issuer URL: a GUID or a domain name, nothing else.
pub fn is_tenant_id(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 128
        && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, client_id: &str) -> bool {
        match self {
            Self::One(aud) => aud == client_id,
            Self::Many(auds) => auds.iter().any(|a| a == client_id),
        }
    }

    fn is_single(&self) -> bool {
        matches!(self, Self::One(_)) || matches!(self, Self::Many(v) if v.len() == 1)
    }
}

/// The provider's signing keys, cached.
pub struct Jwks {
    uri: Url,
    http: UpstreamHttp,
    keys: RwLock<Arc<JwkSet>>,
    fetches: Mutex<Fetches>,
}

#[derive(Default)]
struct Fetches {
    loaded: bool,
    /// When a key id the set lacked last caused a refetch.
    last_refetch: Option<Instant>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("uri", &self.uri.as_str()).finish_non_exhaustive()
    }
}

impl Jwks {
    pub fn new(uri: Url, http: UpstreamHttp) -> Self {
        Self {
            uri,
            http,
            keys: RwLock::new(Arc::new(JwkSet { keys: vec![] })),
            fetches: Mutex::new(Fetches::default()),
        }
    }

    /// The key for `kid`: from the cache, or after one refetch when the provider may have
    /// rotated its keys.
    async fn key(&self, kid: &str) -> Result<DecodingKey, IdTokenError> {
        if let Some(key) = Self::find(&*self.keys.read().await, kid)? {
            return Ok(key);
        }
        let mut fetches = self.fetches.lock().await;
        // Another caller may have fetched while this one waited for the lock.
        if let Some(key) = Self::find(&*self.keys.read().await, kid)? {
            return Ok(key);
        }
        if fetches.loaded {
            if fetches.last_refetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
                return Err(IdTokenError::UnknownKey(short(kid)));
            }
            fetches.last_refetch = Some(Instant::now());
        }
        let request = self.http.client().get(self.uri.clone()).header(reqwest::header::ACCEPT, "application/json");
        let (status, body) = self.http.send(request).await.map_err(|e| IdTokenError::Jwks(e.to_string()))?;
        if status != 200 {
            return Err(IdTokenError::Jwks(format!("answered {status}")));
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| IdTokenError::Jwks("not a JWK set".to_owned()))?;
        *self.keys.write().await = Arc::new(set);
        fetches.loaded = true;
        Self::find(&*self.keys.read().await, kid)?.ok_or_else(|| IdTokenError::UnknownKey(short(kid)))
    }

    fn find(set: &JwkSet, kid: &str) -> Result<Option<DecodingKey>, IdTokenError> {
        let jwk = match (kid, set.keys.as_slice()) {
            ("", [only]) => Some(only),
            ("", _) => None,
            (kid, _) => set.find(kid),
        };
        jwk.map(|jwk| DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::Jwks("unusable key".to_owned()))).transpose()
    }

    /// Verifies an ID token for `client_id` from `issuer` (OIDC Core §3.1.3.7). An issuer
    /// with `{tenantid}` is completed with the token's `tenant_claim` (Microsoft's multi-tenant
    /// endpoints), so the token must name the tenant its issuer is.
    pub async fn verify(
        &self,
        id_token: &str,
        issuer: &str,
        tenant_claim: Option<&str>,
        client_id: &str,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<IdClaims, IdTokenError> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| IdTokenError::Malformed)?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(IdTokenError::Algorithm(header.alg));
        }
        // A provider with a single key may omit `kid` (an empty kid means "the only key").
        let key = self.key(header.kid.as_deref().unwrap_or("")).await?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false; // checked below against Tether's clock
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims =
            jsonwebtoken::decode::<IdClaims>(id_token, &key, &validation).map_err(|_| IdTokenError::Signature)?.claims;
        let expected = match tenant_claim.filter(|_| issuer.contains(TENANT_PLACEHOLDER)) {
            Some(claim) => match claims.other.get(claim).and_then(|v| v.as_str()).filter(|t| is_tenant_id(t)) {
                Some(tenant) => issuer.replace(TENANT_PLACEHOLDER, tenant),
                None => return Err(IdTokenError::Issuer),
            },
            None => issuer.to_owned(),
        };
        if claims.iss != expected {
            return Err(IdTokenError::Issuer);
        }
        if !claims.aud.contains(client_id) || (!claims.aud.is_single() && claims.azp.as_deref() != Some(client_id)) {
            return Err(IdTokenError::Audience);
        }
        if claims.exp + LEEWAY <= now {
            return Err(IdTokenError::Expired);
        }
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY) {
            return Err(IdTokenError::IssuedInFuture);
        }
        if let Some(expected) = nonce
            && claims.nonce.as_deref().is_none_or(|n| !bool::from(n.as_bytes().ct_eq(expected.as_bytes())))
        {
            return Err(IdTokenError::Nonce);
        }
        Ok(claims)
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
