//! The OAuth protocol: requests in, decisions and records out. Knows nothing of HTTP.

pub mod account;
pub mod admin;
pub mod authorize;
pub mod background;
pub mod callback;
pub mod client_auth;
pub mod clients;
pub mod connect;
pub mod consent;
pub mod decide;
pub mod documents;
pub mod enterprise;
pub mod error;
pub mod exchange;
pub mod family;
pub mod flow;
pub mod grants;
pub mod introspection;
pub mod links;
pub mod pkce;
pub mod reconnect;
pub mod redirect;
pub mod refresh;
pub mod registration;
pub mod registry;
pub mod resource;
pub mod revocation;
pub mod scope;
pub mod tokens;
pub mod vault;

use std::sync::Arc;

use crate::crypto::signing::SigningKeys;
use crate::store::Store;
use crate::upstream::Providers;

pub use error::{ErrorCode, OAuthError};

/// Everything the broker runs on, assembled once at start-up.
#[derive(Debug)]
pub struct Broker {
    /// The issuer exactly as configured (RFC 8414 §2: no trailing slash added).
    pub issuer: String,
    pub registry: registry::Registry,
    pub providers: Providers,
    pub store: Arc<dyn Store>,
    pub vault: vault::Vault,
    pub signer: SigningKeys,
    /// Access tokens introspection has verified (skips repeated signature checks).
    pub verified: tokens::VerifiedTokens,
    /// Dynamic clients whose lifetime this process renewed lately.
    pub touches: clients::ClientTouches,
    pub lifetimes: tokens::Lifetimes,
    pub registration: RegistrationPolicy,
    /// Client ID Metadata Documents; `None` when disabled.
    pub documents: Option<documents::DocumentClients>,
    pub refresh: refresh::RefreshPolicy,
    pub background: Option<background::BackgroundRefresh>,
    /// When introspection last recorded each grant's use for the background refresh.
    pub marks: background::Marks,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Delivers connect-flow events to the resources' webhooks.
    pub webhooks: crate::webhook::Sender,
    /// The audit trail.
    pub audit: crate::audit::Auditor,
    /// The login provider, when people sign in to Tether there first (`[login]`).
    pub login: Option<String>,
    /// Trusted enterprise identity providers (ID-JAG); off when none is configured.
    pub enterprise: enterprise::Enterprise,
}

#[derive(Debug, Clone, Copy)]
pub struct RegistrationPolicy {
    /// Dynamic client registration at `/register` (RFC 7591).
    pub enabled: bool,
    pub caps: crate::store::ClientCaps,
}

impl Broker {
    pub fn clients(&self) -> clients::Clients<'_> {
        clients::Clients { registry: &self.registry, store: self.store.as_ref(), documents: self.documents.as_ref() }
    }

    /// What the browser flow runs on, for the request `origin`.
    pub fn flow<'a>(&'a self, origin: &'a crate::audit::Origin) -> authorize::FlowContext<'a> {
        authorize::FlowContext {
            issuer: &self.issuer,
            keys: self.vault.keys(),
            clients: self.clients(),
            registry: &self.registry,
            providers: &self.providers,
            lifetimes: &self.lifetimes,
            revoker: self.revoker(),
            audit: &self.audit,
            origin,
            store: self.store.as_ref(),
            vault: &self.vault,
            login: self.login.as_deref().and_then(|id| self.providers.get(id)).map(|p| &**p),
        }
    }

    pub fn minter(&self) -> tokens::Minter<'_> {
        tokens::Minter { signer: &self.signer, issuer: &self.issuer, lifetimes: &self.lifetimes }
    }

    pub fn refresher(&self) -> refresh::Refresher<'_> {
        let store = self.store.as_ref();
        refresh::Refresher {
            grants: store,
            locks: store,
            providers: &self.providers,
            vault: &self.vault,
            policy: self.refresh,
            audit: &self.audit,
        }
    }

    pub fn introspector(&self) -> introspection::Introspector<'_> {
        let activity: &dyn crate::store::ActivityStore = self.store.as_ref();
        introspection::Introspector {
            signer: &self.signer,
            verified: &self.verified,
            issuer: &self.issuer,
            refresher: self.refresher(),
            activity: self.background.map(|b| background::Activity {
                store: activity,
                window: b.window,
                marks: &self.marks,
            }),
            audit: &self.audit,
            registry: &self.registry,
        }
    }

    pub fn revoker(&self) -> revocation::Revoker<'_> {
        let store = self.store.as_ref();
        revocation::Revoker {
            grants: store,
            refresh: store,
            signer: &self.signer,
            issuer: &self.issuer,
            providers: &self.providers,
            vault: &self.vault,
            audit: &self.audit,
            tombstone_ttl: self.lifetimes.tombstone,
        }
    }

    /// What the token endpoint runs on.
    pub fn token_context<'a>(&'a self, origin: &'a crate::audit::Origin) -> grants::TokenContext<'a> {
        let store = self.store.as_ref();
        grants::TokenContext {
            stores: grants::TokenStores {
                clients: store,
                codes: store,
                grants: store,
                refresh: store,
                index: store,
                links: store,
                locks: store,
                touches: &self.touches,
            },
            minter: self.minter(),
            registry: &self.registry,
            vault: &self.vault,
            revoker: self.revoker(),
            audit: &self.audit,
            origin,
        }
    }

    /// What the admin API runs on.
    pub fn admin(&self) -> admin::AdminContext<'_> {
        let store = self.store.as_ref();
        admin::AdminContext {
            grants: store,
            index: store,
            events: store,
            registry: &self.registry,
            revoker: self.revoker(),
            links: store,
        }
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
