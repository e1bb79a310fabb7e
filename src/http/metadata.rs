//! Discovery documents: RFC 8414 authorization server metadata and the RFC 7517 JWKS.
//!
//! Rendered once at start-up; served with 200 and `application/json`, never a redirect.
//! Other `/.well-known/` paths answer 404 in JSON: clients probe several URLs in order and
//! move on after a 4xx (`openid-configuration` is not served because Tether is not an
//! OpenID provider, and a partial OIDC document breaks strict clients).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::oauth::Broker;
use crate::oauth::registration::AUTH_METHODS;

use super::AppState;
use super::error::not_found;

pub struct Documents {
    authorization_server: String,
    jwks: String,
}

impl Documents {
    pub fn new(broker: &Broker) -> Self {
        let mut doc = json!({
            // RFC 8414 §2: the issuer exactly as configured, never re-serialized.
            "issuer": broker.issuer,
            "authorization_endpoint": broker.endpoint("/authorize"),
            "token_endpoint": broker.endpoint("/token"),
            "jwks_uri": broker.endpoint("/.well-known/jwks.json"),
            "revocation_endpoint": broker.endpoint("/revoke"),
            "introspection_endpoint": broker.endpoint("/introspect"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            // Token exchange is for MCP servers (resource credentials), not for MCP clients.
            "grant_types_supported": ["authorization_code", "refresh_token", crate::oauth::exchange::GRANT_TYPE],
            // MCP 2025-11-25: clients MUST refuse an AS that does not list its PKCE methods.
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": broker.registry.scopes_supported(),
            // RFC 9207: every authorization response carries `iss`.
            "authorization_response_iss_parameter_supported": true,
            // Claude uses documents only when this is true and `none` is an auth method.
            "client_id_metadata_document_supported": broker.documents.is_some(),
        });
        if broker.registration.enabled {
            doc["registration_endpoint"] = json!(broker.endpoint("/register"));
        }
        // ID-JAG §7 and MCP enterprise-managed authorization §6, only with a trusted identity
        // provider (which ones is never said: §8).
        if broker.enterprise.is_on() {
            if let Some(types) = doc["grant_types_supported"].as_array_mut() {
                types.push(json!(crate::oauth::enterprise::JWT_BEARER));
            }
            doc["authorization_grant_profiles_supported"] = json!([crate::oauth::enterprise::ID_JAG_PROFILE]);
        }
        Self {
            authorization_server: doc.to_string(),
            jwks: serde_json::to_string(broker.signer.jwks()).unwrap_or_else(|_| "{\"keys\":[]}".to_owned()),
        }
    }
}

fn json_document(body: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")))
        .content_type("application/json")
        .body(body.to_owned())
}

/// RFC 8414 §3.
async fn authorization_server(state: web::Data<AppState>) -> HttpResponse {
    json_document(&state.metadata.authorization_server)
}

/// RFC 7517 §5: the current and previous signing keys.
async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    json_document(&state.metadata.jwks)
}

pub fn scope() -> actix_web::Scope {
    web::scope("/.well-known")
        .route("/oauth-authorization-server", web::get().to(authorization_server))
        .route("/jwks.json", web::get().to(jwks))
        .default_service(web::to(not_found))
}
