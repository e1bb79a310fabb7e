//! The request parsers of `/authorize`, `/token`, `/register` and HTTP Basic credentials:
//! whatever the bytes, parsing and validating them never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::oauth::authorize::AuthorizeParams;
use tether::oauth::grants::{TokenForm, TokenRequest};
use tether::oauth::registration::{self, RegistrationRequest};
use tether::oauth::{client_auth, pkce, resource, scope};

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = serde_urlencoded::from_bytes::<AuthorizeParams>(data) {
        let _ = pkce::validate_challenge(params.code_challenge.as_deref(), params.code_challenge_method.as_deref());
        let _ = scope::parse(params.scope.as_deref());
        if let Some(uri) = params.resource.as_deref() {
            let _ = resource::normalize(uri);
        }
    }
    if let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(data) {
        let _ = TokenRequest::try_from(form);
    }
    if let Ok(request) = serde_json::from_slice::<RegistrationRequest>(data) {
        if let Ok((record, secret)) = registration::validate(request, 0) {
            // What registration accepts, it can serve: redirect URIs valid, no secret for `none`.
            let web = record.application_type.as_deref() == Some("web");
            for uri in &record.redirect_uris {
                assert!(tether::oauth::redirect::validate_registered(uri, web).is_ok(), "{uri}");
            }
            assert_eq!(secret.is_none(), record.token_endpoint_auth_method == "none");
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok((id, _secret)) = client_auth::parse_basic(&text) {
        assert!(!id.is_empty());
    }
});
