//! The operator's view and control of delegations: grants listed by user, client, resource,
//! provider or upstream account (lookups in the grant listings, never a scan), one grant or a
//! user in full, and grants ended one by one or by filter through the one revocation path.
//! Knows nothing of HTTP: `http::admin` authenticates and shapes the answers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::clock::UnixTime;
use crate::store::{AuditStore, GrantIndex, GrantRecord, GrantStore, IndexKey, IndexPosition};

use super::error::{ErrorCode, OAuthError};

mod events;
mod view;

use super::registry::Registry;
use super::revocation::{self, Report, Revoker, Trigger, UpstreamResult};
pub use events::{EventPage, EventQuery, events};
pub use view::{ClientRef, ConnectionRef, GrantView, ResourceRef, RevokedRef, State, UserRef, UserView};

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 500;
/// Grants one bulk revocation ends at most (a filter matching more is refused: narrow it).
pub const MAX_BULK: usize = 100_000;

/// What the admin API runs on.
#[derive(Clone, Copy)]
pub struct AdminContext<'a> {
    pub grants: &'a dyn GrantStore,
    pub index: &'a dyn GrantIndex,
    pub events: &'a dyn AuditStore,
    pub registry: &'a Registry,
    pub revoker: Revoker<'a>,
    pub links: &'a dyn crate::store::LinkStore,
}

/// Which grants: each member narrows; none at all is every grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// `provider:login`, or the login alone with `provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<State>,
}

impl GrantFilter {
    /// Whether it selects by who or what (a status alone selects every grant in that state).
    pub fn selects(&self) -> bool {
        self.user.is_some()
            || self.client_id.is_some()
            || self.resource.is_some()
            || self.provider.is_some()
            || self.upstream_account.is_some()
    }

    fn account(&self) -> Option<String> {
        let account = self.upstream_account.as_deref()?;
        Some(match (&self.provider, account.contains(':')) {
            (Some(provider), false) => format!("{provider}:{account}"),
            _ => account.to_owned(),
        })
    }

    /// The listings that hold every match (the reader walks the smallest).
    fn listings(&self) -> Vec<IndexKey> {
        let mut keys = Vec::new();
        keys.extend(self.user.clone().map(IndexKey::User));
        keys.extend(self.client_id.clone().map(IndexKey::Client));
        keys.extend(self.resource.clone().map(IndexKey::Resource));
        keys.extend(self.provider.clone().map(IndexKey::Provider));
        keys.extend(self.account().map(IndexKey::Account));
        if keys.is_empty() {
            keys.push(IndexKey::All);
        }
        keys
    }

    fn matches(&self, grant: &GrantRecord) -> bool {
        let info = &grant.info;
        let account = info.account.as_ref().map(|a| format!("{}:{a}", info.provider));
        self.user.as_ref().is_none_or(|u| *u == info.user())
            && self.client_id.as_ref().is_none_or(|c| *c == info.client_id)
            && self.resource.as_ref().is_none_or(|r| *r == info.resource)
            && self.provider.as_ref().is_none_or(|p| *p == info.provider)
            && self.account().is_none_or(|a| Some(a) == account)
            && self.status.is_none_or(|s| s == State::of(grant.status))
    }

    /// A short fingerprint, so a page token is only taken with the filter it came from.
    fn fingerprint(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        crate::crypto::hash::digest(&text).chars().take(8).collect()
    }
}

/// One page of grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    pub grants: Vec<GrantView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Where a listing continues: the last entry shown and the filter it belongs to.
#[derive(Debug, Serialize, Deserialize)]
struct PageToken {
    #[serde(rename = "a")]
    at: UnixTime,
    #[serde(rename = "g")]
    grant: String,
    #[serde(rename = "f")]
    filter: String,
}

fn bad_token() -> OAuthError {
    OAuthError::invalid_request("page_token is not one this listing handed out (or it was made for another filter)")
}

fn encode_token(position: &IndexPosition, filter: &GrantFilter) -> String {
    let token = PageToken { at: position.0, grant: position.1.clone(), filter: filter.fingerprint() };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_token(token: &str, filter: &GrantFilter) -> Result<IndexPosition, OAuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad_token())?;
    let token: PageToken = serde_json::from_slice(&bytes).map_err(|_| bad_token())?;
    if token.filter != filter.fingerprint() {
        return Err(bad_token());
    }
    Ok((token.at, token.grant))
}

/// The listing to walk for `filter`: the smallest of those that hold every match.
async fn listing(ctx: AdminContext<'_>, filter: &GrantFilter) -> Result<IndexKey, OAuthError> {
    let mut best: Option<(u64, IndexKey)> = None;
    for key in filter.listings() {
        let len = ctx.index.index_len(&key).await?;
        if best.as_ref().is_none_or(|(n, _)| len < *n) {
            best = Some((len, key));
        }
    }
    Ok(best.map_or(IndexKey::All, |(_, key)| key))
}

/// Grants matching `filter`, newest first, `page_size` at most, continuing after
/// `page_token`. Entries whose grant is gone are skipped and removed from the listing.
pub async fn list(
    ctx: AdminContext<'_>,
    filter: &GrantFilter,
    page_size: usize,
    page_token: Option<&str>,
) -> Result<Page, OAuthError> {
    let page_size = page_size.clamp(1, MAX_PAGE);
    let mut after = page_token.map(|t| decode_token(t, filter)).transpose()?;
    let key = listing(ctx, filter).await?;
    let mut grants = Vec::new();
    loop {
        let batch = ctx.index.indexed(&key, after.as_ref(), page_size).await?;
        let exhausted = batch.len() < page_size;
        let mut dangling = Vec::new();
        for position in batch {
            match ctx.grants.grant(&position.1).await? {
                None => dangling.push(position.1.clone()),
                Some(grant) if filter.matches(&grant) && grants.len() < page_size => {
                    grants.push(GrantView::of(&grant, ctx.registry));
                }
                Some(_) => {}
            }
            after = Some(position);
            if grants.len() == page_size {
                break;
            }
        }
        if !dangling.is_empty() {
            tracing::debug!(entries = dangling.len(), "removing listing entries whose grant is gone");
            ctx.index.unindex(&key, &dangling).await?;
        }
        if grants.len() == page_size {
            let next = after.as_ref().map(|p| encode_token(p, filter));
            return Ok(Page { grants, next_page_token: next });
        }
        if exhausted {
            return Ok(Page { grants, next_page_token: None });
        }
    }
}

/// One grant, live or revoked.
pub async fn show(ctx: AdminContext<'_>, id: &str) -> Result<GrantView, OAuthError> {
    match ctx.grants.grant(id).await? {
        Some(grant) => Ok(GrantView::of(&grant, ctx.registry)),
        None => Err(OAuthError::new(
            ErrorCode::NotFound,
            "no such grant (it never existed, expired, or its tombstone was dropped)",
        )),
    }
}

/// Everything about `user` (at most `MAX_PAGE` grants, newest first).
pub async fn user(ctx: AdminContext<'_>, user: &str) -> Result<UserView, OAuthError> {
    let filter = GrantFilter { user: Some(user.to_owned()), ..GrantFilter::default() };
    let page = list(ctx, &filter, MAX_PAGE, None).await?;
    let Some(first) = page.grants.first() else {
        return Err(OAuthError::new(ErrorCode::NotFound, "no grants for this user"));
    };
    let (name, email) = (first.user.name.clone(), first.user.email.clone());
    let mut connections: Vec<ConnectionRef> = Vec::new();
    for grant in &page.grants {
        let active = usize::from(grant.status == State::Active);
        let id = grant.connection.clone().unwrap_or_else(|| format!("{}:{}", grant.provider, grant.user.subject));
        if let Some(connection) = connections.iter_mut().find(|c| c.id == id) {
            connection.active_grants += active;
            continue;
        }
        let link = match &grant.connection {
            Some(link) => ctx.links.link(link).await?,
            None => None,
        };
        // The connection's own account when it has one (a grant made before the account was
        // connected does not name it).
        let account = link.as_ref().filter(|l| !l.info.subject.is_empty());
        connections.push(ConnectionRef {
            provider: grant.provider.clone(),
            subject: account.map_or_else(|| grant.user.subject.clone(), |l| l.info.subject.clone()),
            upstream_account: account.map_or_else(|| grant.user.upstream_account.clone(), |l| l.info.account.clone()),
            status: link.as_ref().map(|l| if l.awaits_account() { WAITING } else { l.status.as_str() }),
            scope: link.as_ref().map(|l| l.info.scope.clone()).unwrap_or_default(),
            connected_at: link.as_ref().map(|l| l.info.connected_at),
            active_grants: active,
            id,
        });
    }
    Ok(UserView { id: user.to_owned(), name, email, connections, grants: page.grants })
}

/// A connection's status while it waits for its person's first account (see
/// `LinkRecord::awaits_account`).
pub const WAITING: &str = "waiting";

/// Ends the grants of MCP servers removed from the configuration since the store last saw it
/// (at start-up): a retired server's grants must not outlive it, nor come back with it.
/// Returns how many grants each removed resource had.
pub async fn retire_removed_resources(
    ctx: AdminContext<'_>,
    configured: &[String],
    kept: std::time::Duration,
    now: UnixTime,
) -> Result<Vec<(String, usize)>, OAuthError> {
    let removed = ctx.index.swap_resources(configured, kept).await?;
    let mut report = Vec::new();
    for resource in removed {
        let request = BulkRevoke {
            filter: GrantFilter { resource: Some(resource.clone()), ..GrantFilter::default() },
            upstream: true,
            ..BulkRevoke::default()
        };
        let trigger = Trigger::ResourceRemoved { resource: resource.clone() };
        let ended = revoke_matching(ctx, &request, &trigger, &Origin::default(), now).await?;
        tracing::warn!(%resource, grants = ended.matched, "resource removed from the configuration: its grants are revoked");
        report.push((resource, ended.matched));
    }
    Ok(report)
}

/// Ends a connection: every grant on it, then (with `upstream`) the upstream authorization,
/// once no grant uses it. `id` is a connection id; `provider:subject` ends the grants of an
/// upstream identity made before connections.
pub async fn disconnect(
    ctx: AdminContext<'_>,
    id: &str,
    trigger: &Trigger,
    upstream: bool,
    origin: &Origin,
    now: UnixTime,
) -> Result<BulkReport, OAuthError> {
    if id.contains(':') {
        let request = BulkRevoke {
            filter: GrantFilter { user: Some(id.to_owned()), ..GrantFilter::default() },
            upstream,
            ..BulkRevoke::default()
        };
        return revoke_matching(ctx, &request, trigger, origin, now).await;
    }
    if ctx.links.link(id).await?.is_none() {
        return Err(OAuthError::new(ErrorCode::NotFound, "no such connection"));
    }
    let ids = ctx.links.link_grants(id).await?;
    let report = revocation::end(ctx.revoker, &ids, trigger, upstream, origin, now).await?;
    Ok(BulkReport {
        dry_run: false,
        matched: report.revoked.len(),
        grants: report.revoked,
        upstream: Some(report.upstream.result),
    })
}

/// Ends one grant (idempotent: a grant already revoked answers the same report).
pub async fn revoke(
    ctx: AdminContext<'_>,
    id: &str,
    admin: &str,
    upstream: bool,
    origin: &Origin,
    now: UnixTime,
) -> Result<Report, OAuthError> {
    if ctx.grants.grant(id).await?.is_none() {
        return Err(OAuthError::new(ErrorCode::NotFound, "no such grant"));
    }
    let trigger = Trigger::Admin { token: admin.to_owned() };
    revocation::end(ctx.revoker, &[id.to_owned()], &trigger, upstream, origin, now).await
}

/// What a bulk revocation matched and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkReport {
    pub dry_run: bool,
    /// Live grants the filter matched.
    pub matched: usize,
    /// Their ids (those ended, unless `dry_run`).
    pub grants: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamResult>,
}

/// `POST /admin/v1/grants:revoke`: which grants, and how.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRevoke {
    #[serde(default)]
    pub filter: GrantFilter,
    /// Required to end every grant when the filter selects nothing.
    #[serde(default)]
    pub all: bool,
    /// Only count and name the grants.
    #[serde(default)]
    pub dry_run: bool,
    /// Also revoke at the provider where it is configured to (default true).
    #[serde(default = "yes")]
    pub upstream: bool,
}

fn yes() -> bool {
    true
}

/// Ends every live grant the filter matches ("this person left", "client X is compromised",
/// "MCP server Y is retired", "this GitHub account is compromised"). An empty filter needs
/// `all`; `dry_run` only counts.
pub async fn revoke_matching(
    ctx: AdminContext<'_>,
    request: &BulkRevoke,
    trigger: &Trigger,
    origin: &Origin,
    now: UnixTime,
) -> Result<BulkReport, OAuthError> {
    let BulkRevoke { filter, all, dry_run, upstream } = request;
    let (dry_run, upstream) = (*dry_run, *upstream);
    if !filter.selects() && !*all {
        return Err(OAuthError::invalid_request(
            "the filter selects every grant: name a user, client_id, resource, provider or upstream_account, or send all: true",
        ));
    }
    // Only live grants are ended; revoked ones keep their tombstone.
    let live = GrantFilter { status: None, ..filter.clone() };
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        let page = list(ctx, &live, MAX_PAGE, token.as_deref()).await?;
        ids.extend(
            page.grants
                .iter()
                .filter(|g| g.status != State::Revoked && filter.status.is_none_or(|s| s == g.status))
                .map(|g| g.id.clone()),
        );
        if ids.len() > MAX_BULK {
            return Err(OAuthError::invalid_request(format!(
                "the filter matches more than {MAX_BULK} grants; narrow it"
            )));
        }
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    if dry_run {
        return Ok(BulkReport { dry_run, matched: ids.len(), grants: ids, upstream: None });
    }
    let report = revocation::end(ctx.revoker, &ids, trigger, upstream, origin, now).await?;
    Ok(BulkReport { dry_run, matched: ids.len(), grants: report.revoked, upstream: Some(report.upstream.result) })
}

/// Puts every stored grant in its listings (`tether store reindex`): grants written before
/// the listings existed become listable and revocable in bulk. Walks the keyspace with a
/// cursor (safe while serving, on Cluster too). Returns (grants listed, grants gone when read).
pub async fn reindex(
    grants: &dyn GrantStore,
    index: &dyn GrantIndex,
    ttl: std::time::Duration,
) -> Result<(u64, u64), crate::store::StoreError> {
    let (mut listed, mut gone) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    loop {
        let (next, ids) = grants.scan_grants(cursor).await?;
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            match grants.grant(&id).await? {
                Some(grant) => {
                    index.index_grant(&id, grant.info.created_at, &IndexKey::of(&grant.info), ttl).await?;
                    listed += 1;
                }
                None => gone += 1,
            }
        }
        if next == 0 {
            return Ok((listed, gone));
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_only_works_with_its_own_filter() {
        let by_client = GrantFilter { client_id: Some("c1".into()), ..GrantFilter::default() };
        let token = encode_token(&(1_000, "g1".into()), &by_client);
        assert_eq!(decode_token(&token, &by_client).unwrap(), (1_000, "g1".into()));
        let other = GrantFilter { client_id: Some("c2".into()), ..GrantFilter::default() };
        assert!(decode_token(&token, &other).is_err());
        assert!(decode_token("not-a-token", &by_client).is_err());
    }

    #[test]
    fn an_account_filter_may_name_its_provider_apart() {
        let filter = GrantFilter {
            provider: Some("gh".into()),
            upstream_account: Some("octocat".into()),
            ..GrantFilter::default()
        };
        assert!(filter.listings().contains(&IndexKey::Account("gh:octocat".into())));
        let whole = GrantFilter { upstream_account: Some("gh:octocat".into()), ..GrantFilter::default() };
        assert_eq!(whole.listings(), [IndexKey::Account("gh:octocat".into())]);
        assert_eq!(GrantFilter::default().listings(), [IndexKey::All]);
        assert!(!GrantFilter { status: Some(State::Active), ..GrantFilter::default() }.selects());
    }
}
