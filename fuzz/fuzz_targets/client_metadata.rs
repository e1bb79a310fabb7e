//! Client ID Metadata Documents from untrusted hosts: parsing never panics, and what it
//! accepts is a public client for exactly the fetched URL with valid redirect URIs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether::oauth::documents;
use tether::oauth::redirect::validate_registered;

const ID: &str = "https://app.example/oauth/client.json";

fuzz_target!(|data: &[u8]| {
    if let Ok(client) = documents::parse(ID, data, 0) {
        assert_eq!(client.client_id, ID);
        assert_eq!(client.token_endpoint_auth_method, "none");
        assert!(client.secret_digest.is_none());
        let web = client.application_type.as_deref() == Some("web");
        assert!(!client.redirect_uris.is_empty());
        for uri in &client.redirect_uris {
            assert!(validate_registered(uri, web).is_ok(), "{uri}");
        }
    }
});
