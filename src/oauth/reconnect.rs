//! "Connect first": when a grant's connection needs the user again (the provider refused a
//! refresh, or a token without a refresh token expired), the MCP client's token stays good and
//! MCP servers are told so, with a link that lets the person connect the provider again
//! instead of leaving them at a dead end.
//!
//! The link (`interaction_uri`) names the grant (and so its connection) and an expiry under a
//! MAC of the key ring, so handing it out on every introspection writes nothing. It only starts an upstream
//! sign-in; the connection changes only when that sign-in is the very account the connection
//! was (the same upstream subject; under a login provider, also the signed-in Tether user), so
//! a link that reaches someone else cannot attach their account to another person's grants
//! (the MCP URL elicitation rule against phishing). A connection made for a person before they
//! had an account there (an enterprise identity provider's assertion) takes the account its
//! signed-in user picks. It completes once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::{Actor, ActorKind, Event, EventType, Outcome};
use crate::clock::UnixTime;
use crate::crypto::seal::KeyRing;
use crate::crypto::{hash, random};
use crate::store::{LinkRecord, LinkStatus, Reconnect};
use crate::upstream::{Identity, UpstreamTokens};

use super::authorize::FlowContext;
use super::flow::{FlowError, PageStatus};
use super::links;

/// `upstream_error` in introspection, and the token exchange error code.
pub const INTERACTION_REQUIRED: &str = "interaction_required";

/// A link is good for between one and two of these (it is the same within a window, so that
/// MCP servers may show it again).
const WINDOW_SECS: i64 = 600;

fn message(grant: &str, expires: UnixTime) -> Vec<u8> {
    format!("tether/reconnect/v2\0{grant}\0{expires}").into_bytes()
}

/// The link for grant `grant` (one on a connection), as of `now`.
pub fn uri(keys: &KeyRing, issuer: &str, grant: &str, now: UnixTime) -> String {
    let expires = (now.div_euclid(WINDOW_SECS) + 2) * WINDOW_SECS;
    let (kid, tag) = keys.mac(&message(grant, expires));
    format!("{issuer}/reconnect/{grant}.{expires}.{kid}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// The grant a link names, if the link is Tether's and unexpired.
fn verify(keys: &KeyRing, token: &str, now: UnixTime) -> Option<(String, UnixTime)> {
    let mut parts = token.splitn(4, '.');
    let (grant, expires, kid, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let expires: UnixTime = expires.parse().ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let on_connection = crate::store::connection_of(grant).is_some();
    (on_connection && expires > now && keys.verify_mac(kid, &message(grant, expires), &tag))
        .then(|| (grant.to_owned(), expires))
}

fn page(message: &'static str) -> FlowError {
    FlowError::page(message)
}

/// A store or signing failure, as a page (the cause is in the log).
fn unavailable(e: &super::OAuthError) -> FlowError {
    FlowError::Page {
        status: if e.code == super::ErrorCode::TemporarilyUnavailable {
            PageStatus::Unavailable
        } else {
            PageStatus::ServerError
        },
        message: "Tether could not complete this step. Try the link again in a moment.".into(),
    }
}

/// Opens a link: sends the browser to the provider to sign in as the connection's account.
/// Returns where to send it and the browser binding to set.
pub async fn start(
    ctx: FlowContext<'_>,
    token: &str,
    presented_binding: Option<&str>,
    session: Option<&str>,
    now: UnixTime,
) -> Result<(url::Url, String), FlowError> {
    let Some((grant_id, _)) = verify(ctx.vault.keys(), token, now) else {
        return Err(page("This link is not valid or has expired. Ask the application for a new one."));
    };
    let gone = || page("This access no longer exists. Sign in to the application again.");
    let grant = ctx.store.grant(&grant_id).await?.filter(|g| g.status != crate::store::GrantStatus::Revoked);
    let Some(grant) = grant else { return Err(gone()) };
    let connection = crate::store::connection_of(&grant.id).unwrap_or_default().to_owned();
    let link = ctx.store.link(&connection).await?.filter(|l| l.status != LinkStatus::Ended);
    let Some(link) = link else { return Err(gone()) };
    if link.status == LinkStatus::Active {
        // Working again already (this link was used, or the person signed in anew): show it.
        let account = url::Url::parse(&format!("{}/account", ctx.issuer))
            .map_err(|_| page("The account page's address cannot be built."))?;
        return Err(FlowError::Redirect(account));
    }
    let binding =
        presented_binding.filter(|b| super::authorize::is_binding(b)).map_or_else(random::token, str::to_owned);
    let binding_digest = hash::digest(&binding);
    // Under a login provider the connection is a Tether user's: only that user, signed in here,
    // may connect it again.
    let owned = link.info.user != links::upstream_user(&link.info.provider, &link.info.subject);
    if owned {
        let signed_in = links::session(ctx, session, &binding_digest, now).await.map_err(|e| unavailable(&e))?;
        if signed_in.is_none_or(|s| s.user != link.info.user) {
            return Err(FlowError::forbidden(
                "Sign in to Tether first (the account page, /account), then open this link again.",
            ));
        }
    }
    let url = sign_in_for(ctx, &link, &binding_digest, hash::digest(token), now).await?;
    Ok((url, binding))
}

/// From the account page: `user`, signed in (in the browser bound to `binding`), connects their
/// connection `connection` again, or for the first time. `None` when it is not a connection
/// of theirs.
pub async fn start_for_owner(
    ctx: FlowContext<'_>,
    user: &str,
    connection: &str,
    binding: &str,
    now: UnixTime,
) -> Result<Option<url::Url>, FlowError> {
    let link = ctx.store.link(connection).await.map_err(|e| unavailable(&e.into()))?;
    let Some(link) = link.filter(|l| l.info.user == user) else { return Ok(None) };
    if link.status == LinkStatus::Active || link.status == LinkStatus::Ended {
        return Err(page("This account is not waiting to be connected."));
    }
    // Completed once, like a link (the mark names this start, not a link handed out).
    sign_in_for(ctx, &link, &hash::digest(binding), hash::digest(&random::token()), now).await.map(Some)
}

/// The upstream sign-in that restores `link` in the browser bound to `binding_digest`.
async fn sign_in_for(
    ctx: FlowContext<'_>,
    link: &LinkRecord,
    binding_digest: &str,
    mark: String,
    now: UnixTime,
) -> Result<url::Url, FlowError> {
    let reconnect = Reconnect { connection: link.id.clone(), link: mark };
    super::account::page_sign_in(ctx, &link.info.provider, &link.info.scope, binding_digest, Some(reconnect), now).await
}

/// The callback of a reconnection: the connection takes the new tokens if, and only if, the
/// person signed in as its account; then every grant on it works again.
pub async fn finish(
    ctx: FlowContext<'_>,
    reconnect: &Reconnect,
    identity: &Identity,
    tokens: &UpstreamTokens,
    now: UnixTime,
) -> Result<LinkRecord, FlowError> {
    let link = ctx.store.link(&reconnect.connection).await?.filter(|l| l.status != LinkStatus::Ended);
    // The very account the connection was; one still waiting for its first account takes the
    // one its (signed-in) user chose.
    let Some(link) = link.filter(|l| l.info.subject == identity.subject || l.awaits_account()) else {
        tracing::warn!("a reconnection signed in as another account (or the connection ended); nothing changed");
        return Err(FlowError::forbidden(
            "You signed in as another account than the one this link is for. Nothing was changed.",
        ));
    };
    let (user, provider, scopes) = (&link.info.user, &link.info.provider, &link.info.scope);
    // Once: the first completion wins, across replicas.
    let ttl = std::time::Duration::from_secs(u64::try_from(2 * WINDOW_SECS).unwrap_or(1200));
    if !ctx.store.spend_once(&format!("reconnect:{}", reconnect.link), ttl).await? {
        return Err(page("This link was already used. Ask the application for a new one if it still fails."));
    }
    let first = link.awaits_account();
    let link = links::connect(ctx, user, provider, identity, tokens, scopes, now).await.map_err(|e| unavailable(&e))?;
    if first {
        // `connection.made`, said by `links::connect`.
        return Ok(link);
    }
    ctx.audit.emit(
        Event::new(EventType::ConnectionRestored, Actor::new(ActorKind::User, &link.info.user), Outcome::Success, now)
            .user(&link.info.user)
            .provider(&link.info.provider)
            .detail("connection", serde_json::Value::String(link.id.clone()))
            .origin(ctx.origin),
    );
    Ok(link)
}

/// An MCP server says the provider refused the upstream credential it was given for `token`
/// (GitHub OAuth App tokens never expire, so a person removing the app there is only seen this
/// way). Tether believes the provider, not the server: with a refresh token it refreshes;
/// without, it asks the provider's user endpoint, and marks the connection as needing its person
/// only on the provider's 401. The answer is a fresh introspection of `token`.
pub async fn upstream_rejected(
    ctx: super::introspection::Introspector<'_>,
    caller: &super::registry::Resource,
    token: &str,
    origin: &dyn Fn() -> crate::audit::Origin,
    now: UnixTime,
) -> Result<super::introspection::Introspection, super::OAuthError> {
    use super::introspection::{Introspection, needs_connection, subject};
    use super::refresh::Freshness;
    let (_, grant) = match subject(ctx, caller, token, now).await? {
        Ok(found) => found,
        Err(reason) => return Ok(Introspection::Inactive(reason)),
    };
    let refresher = ctx.refresher;
    let tokens = (!needs_connection(&grant)).then(|| refresher.vault.open(&grant)).flatten();
    if let Some(tokens) = tokens {
        let outcome = if tokens.refresh_token.is_some() {
            match refresher.refresh_rejected(&grant, &tokens.access_token, now).await? {
                Freshness::Fresh(_) => "refreshed",
                Freshness::Dead => "confirmed",
            }
        } else {
            let provider = refresher.providers.get(&grant.info.provider);
            let verdict = match provider {
                Some(provider) => provider.still_accepts(&tokens).await.map_err(|e| {
                    tracing::warn!(provider = %grant.info.provider, error = %e, "cannot check an upstream token");
                    super::OAuthError::new(
                        super::ErrorCode::TemporarilyUnavailable,
                        "the upstream provider is unavailable; retry shortly",
                    )
                })?,
                None => None,
            };
            match verdict {
                Some(false) => {
                    refresher.confirmed_dead(&grant, now).await?;
                    "confirmed"
                }
                Some(true) => "still_accepted",
                None => "not_confirmed",
            }
        };
        ctx.audit.emit(
            Event::new(
                EventType::CredentialRejected,
                Actor::new(ActorKind::Resource, &caller.id),
                Outcome::Success,
                now,
            )
            .grant(&grant.id)
            .user(grant.info.user())
            .client(&grant.info.client_id)
            .resource(&caller.id)
            .provider(&grant.info.provider)
            .detail("result", outcome)
            .origin(&origin()),
        );
    }
    super::introspection::introspect(ctx, caller, token, origin, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeyRing {
        KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap()
    }

    #[test]
    fn links_verify_until_they_expire_and_not_when_altered() {
        let keys = keys();
        let link = "0123456789abcdef01234567-0123456789abcdef0123456789abcdef";
        let uri = uri(&keys, "https://tether.example", link, 1_000);
        let token = uri.strip_prefix("https://tether.example/reconnect/").unwrap();
        assert_eq!(verify(&keys, token, 1_000).map(|(l, _)| l), Some(link.to_owned()));
        assert_eq!(uri, super::uri(&keys, "https://tether.example", link, 1_100), "stable within a window");
        assert!(verify(&keys, token, 1_800).is_none(), "expired");
        let other = token.replacen("0123", "9999", 1);
        assert!(verify(&keys, &other, 1_000).is_none(), "another connection");
        let later = token.replacen(".1800.", ".999999.", 1);
        assert!(verify(&keys, &later, 1_000).is_none(), "a longer life");
        assert!(verify(&KeyRing::parse(&KeyRing::generate_spec("k1")).unwrap(), token, 1_000).is_none());
        assert!(verify(&keys, "garbage", 1_000).is_none());
    }
}
