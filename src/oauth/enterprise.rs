//! Enterprise-managed authorization (MCP's extension, on the ID-JAG draft): an MCP client
//! trades an Identity Assertion JWT Authorization Grant from the company's identity provider
//! for a Tether access token (RFC 7523 `jwt-bearer`), with no browser.
//!
//! Only identity providers in `[enterprise.<id>]` are believed; their keys come from the
//! configured JWKS URL through the Client ID Metadata Document fetcher (https only, no internal
//! addresses unless allowed). The provider's subject is a Tether user through `[login]`: the
//! enterprise issuer is the login provider's, so the ID-JAG's `sub` is the very `sub` the person
//! signs in to Tether with. The token is backed by that user's connection to the MCP server's
//! provider, and it is short-lived, addressed to one MCP server, without a refresh token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::client_metadata::Fetcher;
use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::{ClientRecord, GrantInfo, GrantRecord, IndexKey, LinkInfo, LinkRecord, LinkStatus};
use crate::upstream::Providers;

use super::error::{ErrorCode, OAuthError};
use super::grants::TokenContext;
use super::links;
use super::registry::Resource;
use super::tokens::TokenResponse;

/// RFC 7523 §2.1.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// ID-JAG §7: advertised in `authorization_grant_profiles_supported`.
pub const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";
/// ID-JAG §3.1: the header `typ`.
const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// Tolerance for the identity provider's clock.
const LEEWAY: i64 = 30;
/// A key id the cached set lacks refetches the JWKS at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// One trusted identity provider.
#[derive(Debug, Clone)]
pub struct TrustedIdp {
    pub id: String,
    pub issuer: String,
    pub jwks_url: Url,
    pub algorithms: Vec<Algorithm>,
    /// MCP servers (resource ids) its ID-JAGs may be for.
    pub resources: Vec<String>,
    /// Clients (client ids at Tether) that may present its ID-JAGs.
    pub clients: Vec<String>,
    /// The longest `exp - iat` accepted (seconds).
    pub max_lifetime: i64,
    /// Whether its assertions may name a person Tether has never seen (they become a user).
    pub create_users: bool,
}

struct Keys {
    set: Arc<JwkSet>,
    /// The last fetch that answered a key set.
    fetched: Option<Instant>,
    /// The last fetch that failed (the IdP or the network was down).
    failed: Option<Instant>,
}

/// The trusted identity providers and their keys.
pub struct Enterprise {
    idps: Vec<TrustedIdp>,
    fetcher: Option<Fetcher>,
    keys: RwLock<HashMap<String, Keys>>,
    fetching: Mutex<()>,
}

impl std::fmt::Debug for Enterprise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enterprise").field("idps", &self.idps.len()).finish_non_exhaustive()
    }
}

/// After a failed JWKS fetch, requests answer 503 for this long before the next attempt.
const FAILED_RETRY: Duration = Duration::from_secs(2);

fn keys_unavailable() -> OAuthError {
    OAuthError::new(ErrorCode::TemporarilyUnavailable, "the identity provider's keys cannot be fetched; retry shortly")
}

fn invalid_grant(why: &'static str) -> OAuthError {
    OAuthError::invalid_grant(why)
}

impl Enterprise {
    pub fn new(idps: Vec<TrustedIdp>, fetcher: Option<Fetcher>) -> Self {
        Self { idps, fetcher, keys: RwLock::new(HashMap::new()), fetching: Mutex::new(()) }
    }

    /// Off without a trusted identity provider: the grant type is then not offered.
    pub fn is_on(&self) -> bool {
        !self.idps.is_empty() && self.fetcher.is_some()
    }

    /// The key `kid` of `idp`: cached, or after one (rate-limited) refetch of its JWKS.
    async fn key(&self, idp: &TrustedIdp, kid: &str) -> Result<DecodingKey, OAuthError> {
        if let Some(key) = self.cached(idp, kid).await? {
            return Ok(key);
        }
        let _one = self.fetching.lock().await;
        if let Some(key) = self.cached(idp, kid).await? {
            return Ok(key);
        }
        let (fetched, failed) = self.keys.read().await.get(&idp.id).map_or((None, None), |k| (k.fetched, k.failed));
        // A key set fetched a moment ago that lacks the key: the key is not the issuer's.
        if fetched.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Err(invalid_grant("the assertion is signed with a key its issuer does not publish"));
        }
        // A fetch that failed a moment ago: still an outage, without asking again.
        if failed.is_some_and(|at| at.elapsed() < FAILED_RETRY) {
            return Err(keys_unavailable());
        }
        let fetcher = self.fetcher.as_ref().ok_or_else(|| invalid_grant("no trusted identity provider"))?;
        let fetched = fetcher.fetch(&idp.jwks_url).await;
        // Remember the attempt either way: a flood of unknown key ids is one fetch per interval.
        let set = match fetched {
            Ok(doc) => serde_json::from_slice::<JwkSet>(&doc.body).map_err(|_| {
                tracing::warn!(idp = %idp.id, "the identity provider's JWKS is not a JWK set");
                OAuthError::new(ErrorCode::TemporarilyUnavailable, "the identity provider's keys cannot be read")
            }),
            Err(e) => {
                tracing::warn!(idp = %idp.id, error = %e, "cannot fetch the identity provider's JWKS");
                Err(keys_unavailable())
            }
        };
        let mut keys = self.keys.write().await;
        let empty = || Keys { set: Arc::new(JwkSet { keys: vec![] }), fetched: None, failed: None };
        let entry = keys.entry(idp.id.clone()).or_insert_with(empty);
        match set {
            Ok(set) => {
                entry.set = Arc::new(set);
                entry.fetched = Some(Instant::now());
            }
            Err(e) => {
                entry.failed = Some(Instant::now());
                return Err(e);
            }
        }
        drop(keys);
        self.cached(idp, kid)
            .await?
            .ok_or_else(|| invalid_grant("the assertion is signed with a key its issuer does not publish"))
    }

    async fn cached(&self, idp: &TrustedIdp, kid: &str) -> Result<Option<DecodingKey>, OAuthError> {
        let keys = self.keys.read().await;
        let Some(set) = keys.get(&idp.id).map(|k| k.set.clone()) else { return Ok(None) };
        let jwk = match (kid, set.keys.as_slice()) {
            ("", [only]) => Some(only),
            ("", _) => None,
            (kid, _) => set.find(kid),
        };
        jwk.map(|jwk| DecodingKey::from_jwk(jwk).map_err(|_| invalid_grant("the issuer's key cannot be used")))
            .transpose()
    }
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, as sent.
#[derive(Debug, Default)]
pub struct JagRequest {
    pub assertion: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

/// A claim that is one string, or an array holding exactly one.
fn single(value: Option<&Value>) -> Option<&str> {
    match value? {
        Value::String(s) => Some(s),
        Value::Array(items) if items.len() == 1 => items[0].as_str(),
        _ => None,
    }
}

/// Validates an ID-JAG (ID-JAG §4.4.1, MCP EMA §7.4) and issues a Tether access token for it.
pub async fn issue(
    ctx: TokenContext<'_>,
    enterprise: &Enterprise,
    login: Option<&str>,
    providers: &Providers,
    client: &ClientRecord,
    request: JagRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    // ID-JAG §8: for confidential clients only.
    if client.secret_digest.is_none() {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "the jwt-bearer grant is for confidential clients"));
    }
    let assertion = request
        .assertion
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("assertion is required"))?;
    let header = jsonwebtoken::decode_header(&assertion).map_err(|_| invalid_grant("the assertion is not a JWT"))?;
    if header.typ.as_deref() != Some(ID_JAG_TYP) {
        return Err(invalid_grant("the assertion is not an ID-JAG (typ oauth-id-jag+jwt)"));
    }
    let unverified: Value = jsonwebtoken::dangerous::insecure_decode_claims(&assertion)
        .map_err(|_| invalid_grant("the assertion's claims cannot be read"))?;
    let issuer = unverified.get("iss").and_then(Value::as_str).unwrap_or_default();
    let idp = enterprise
        .idps
        .iter()
        .find(|i| i.issuer == issuer)
        .ok_or_else(|| invalid_grant("the assertion's issuer is not trusted"))?;
    if !idp.algorithms.contains(&header.alg) {
        return Err(invalid_grant("the assertion's algorithm is not accepted for its issuer"));
    }
    let key = enterprise.key(idp, header.kid.as_deref().unwrap_or("")).await?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false; // checked below against Tether's clock
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Value>(&assertion, &key, &validation)
        .map_err(|_| invalid_grant("the assertion's signature does not verify"))?
        .claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    let int = |name: &str| claims.get(name).and_then(Value::as_i64);
    if text("iss") != Some(idp.issuer.as_str()) {
        return Err(invalid_grant("the assertion's issuer is not trusted"));
    }
    if single(claims.get("aud")) != Some(ctx.minter.issuer) {
        return Err(invalid_grant("the assertion is for another authorization server"));
    }
    let (Some(sub), Some(jti), Some(exp), Some(iat)) = (text("sub"), text("jti"), int("exp"), int("iat")) else {
        return Err(invalid_grant("the assertion lacks sub, jti, exp or iat"));
    };
    if exp + LEEWAY <= now {
        return Err(invalid_grant("the assertion has expired"));
    }
    if iat > now + LEEWAY || exp - iat > idp.max_lifetime {
        return Err(invalid_grant("the assertion is dated in the future or lives too long"));
    }
    if text("client_id") != Some(client.client_id.as_str()) || !idp.clients.contains(&client.client_id) {
        return Err(invalid_grant("the assertion is for another client"));
    }
    // The MCP server: the one the assertion and the request name (they must agree).
    let named = match (single(claims.get("resource")), request.resource.as_deref()) {
        (Some(a), Some(b)) if super::resource::normalize(a) != super::resource::normalize(b) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "the request and the assertion name different resources",
            ));
        }
        (a, b) => b.or(a),
    };
    let resource = ctx.registry.resource_for(named)?;
    if !idp.resources.contains(&resource.id) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "this identity provider may not grant access to that resource",
        ));
    }
    // Scopes: what the request asks for (or the assertion, or the server's defaults), each one
    // offered by the server, within what the assertion grants.
    let asked = request.scope.as_deref().or_else(|| text("scope"));
    let requested = super::scope::parse(asked)?;
    let offered: Vec<&str> = resource.scopes.iter().map(|s| s.name.as_str()).collect();
    if let Some(unknown) = requested.iter().find(|s| !offered.contains(&s.as_str())) {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("`{unknown}` is not a scope of {}", resource.name),
        ));
    }
    let bound = super::scope::parse(text("scope"))?;
    let scope: Vec<String> = if requested.is_empty() {
        resource.scopes.iter().filter(|s| s.default).map(|s| s.name.clone()).collect()
    } else {
        requested
    };
    let scope: Vec<String> = scope.into_iter().filter(|s| text("scope").is_none() || bound.contains(s)).collect();
    if scope.is_empty() {
        return Err(OAuthError::new(ErrorCode::InvalidScope, "no requested scope is granted by the assertion"));
    }
    // The person: the login provider's user with this subject, and their connection.
    let Some(login) = login else {
        return Err(invalid_grant("enterprise-managed authorization needs [login]"));
    };
    let user = links::upstream_user(login, sub);
    let connection = links::link_id(&user, &resource.provider);
    let link = ctx.stores.links.link(&connection).await?.filter(|l| l.status != LinkStatus::Ended);
    // Without a connection to the MCP server's provider, the token is issued on one waiting for
    // the person: the MCP server gets the "connect first" answer until they connect it. Only
    // for a person Tether knows, unless the operator lets this identity provider create users.
    if link.is_none() && !idp.create_users && !known(ctx, providers, &user).await? {
        return Err(invalid_grant("this person has not used Tether yet (they sign in at Tether once)"));
    }
    // Single use, across replicas, until the assertion expires: reserved last, so that a
    // refused assertion can be corrected and sent again.
    let ttl = Duration::from_secs(u64::try_from(exp + LEEWAY - now).unwrap_or(60).max(1));
    let reservation = format!("jag:{}", hash::digest(&format!("{}\0{jti}", idp.issuer)));
    if !ctx.stores.locks.spend_once(&reservation, ttl).await? {
        return Err(invalid_grant("the assertion was already used"));
    }
    let link = match link {
        Some(link) => link,
        None => awaiting(ctx, providers, resource, &user, &scope, now).await?,
    };
    let grant_id = links::grant_id(&link.id);
    let info = GrantInfo {
        // Until the person connects an account there is no upstream subject: the token's `sub`
        // is then Tether's user (`login:<provider>:<sub>`), unique to the person.
        subject: if link.awaits_account() { user.clone() } else { link.info.subject.clone() },
        client_id: client.client_id.clone(),
        resource: resource.id.clone(),
        provider: resource.provider.clone(),
        scope: scope.clone(),
        offline: false,
        created_at: now,
        account: link.info.account.clone(),
        display_name: link.info.display_name.clone(),
        email: link.info.email.clone(),
        client_name: client.client_name.clone(),
        client_source: Some(client.source),
        redirect_host: None,
        upstream_scope: link.info.scope.clone(),
        owner: Some(user.clone()),
        bound_to_user: link.info.bound_to_user,
    };
    let grant = GrantRecord::new(grant_id.clone(), info, Vec::new());
    let lifetime = ctx.minter.lifetimes.access_token;
    let listed = lifetime + ctx.minter.lifetimes.tombstone;
    ctx.stores.index.index_grant(&grant_id, now, &IndexKey::of(&grant.info), listed).await?;
    ctx.stores.grants.put_grant(&grant, lifetime).await?;
    let (access_token, expires_in) = ctx.minter.access_token(&grant_id, &grant.info, &resource.uri, &scope, now)?;
    ctx.audit.emit(
        Event::new(EventType::GrantIssued, Actor::new(ActorKind::Client, &client.client_id), Outcome::Success, now)
            .user(&user)
            .provider(&resource.provider)
            .grant(&grant_id)
            .client(&client.client_id)
            .resource(&resource.id)
            .scope(&scope)
            .detail("grant_type", JWT_BEARER)
            .detail("identity_provider", idp.id.as_str())
            .detail("assertion_jti", hash::digest(jti))
            .origin(ctx.origin),
    );
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
        refresh_token: None,
        scope: Some(scope.join(" ")),
    })
}

/// Whether Tether knows `user`: they have (or had, within its retention) a connection to one
/// of the providers.
async fn known(ctx: TokenContext<'_>, providers: &Providers, user: &str) -> Result<bool, OAuthError> {
    for provider in providers.all() {
        if ctx.stores.links.link(&links::link_id(user, provider.id())).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `user`'s connection to the resource's provider, made now and waiting for its first account
/// (no tokens, sealed to the user: see `LinkRecord::awaits_account`). A connection made
/// meanwhile, by the person in a browser or another assertion, stands and is the one used.
async fn awaiting(
    ctx: TokenContext<'_>,
    providers: &Providers,
    resource: &Resource,
    user: &str,
    scope: &[String],
    now: UnixTime,
) -> Result<LinkRecord, OAuthError> {
    let base = providers.get(&resource.provider).map(|p| p.base_scopes().to_vec()).unwrap_or_default();
    let link = LinkRecord {
        id: links::link_id(user, &resource.provider),
        info: LinkInfo {
            user: user.to_owned(),
            provider: resource.provider.clone(),
            subject: String::new(),
            scope: super::scope::upstream_scopes(scope, resource, &base),
            created_at: now,
            bound_to_user: true,
            ..LinkInfo::default()
        },
        status: LinkStatus::NeedsReauth,
        upstream: Vec::new(),
    };
    let links = ctx.stores.links;
    let kept = ctx.minter.lifetimes.refresh_token + ctx.minter.lifetimes.tombstone;
    if links.create_link(&link, kept).await? {
        return Ok(link);
    }
    links
        .link(&link.id)
        .await?
        .filter(|l| l.status != LinkStatus::Ended)
        .ok_or_else(|| OAuthError::new(ErrorCode::TemporarilyUnavailable, "the connection changed; try again"))
}
