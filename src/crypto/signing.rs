//! Access-token signing keys: ES256 (P-256) with a `kid`, and the JWKS that publishes them.
//!
//! The first key signs; all keys verify and are published, so a rotated-out key keeps
//! verifying the tokens it signed until they expire.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KeySpecError, spec_items};

/// RFC 9068 §2.1: access tokens carry `typ: at+jwt`.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
const ALG: Algorithm = Algorithm::ES256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("header is not `typ: at+jwt`, `alg: ES256` with a `kid`")]
    Header,
    #[error("signed with an unknown key")]
    UnknownKey,
    #[error("signature or claims do not verify")]
    Invalid,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

pub struct SigningKeys {
    keys: Vec<SigningKey>,
    jwks: JwkSet,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("SigningKeys").field("kids", &ids).finish()
    }
}

impl SigningKeys {
    /// Parses `kid:base64(PKCS#8 DER of a P-256 key)[,kid:...]`.
    pub fn parse(spec: &str) -> Result<Self, KeySpecError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        let mut jwks = Vec::new();
        for item in spec_items(spec)? {
            let kid = item.id.as_str();
            let der = URL_SAFE_NO_PAD
                .decode(item.material.trim_end_matches('='))
                .or_else(|_| STANDARD.decode(&item.material))
                .map_err(|_| bad_key(kid))?;
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|_| bad_key(kid))?;
            let encoding = EncodingKey::from_ec_der(&der);
            let mut jwk = Jwk::from_encoding_key(&encoding, ALG).map_err(|_| bad_key(kid))?;
            jwk.common.key_id = Some(kid.to_owned());
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| bad_key(kid))?;
            keys.push(SigningKey { kid: kid.to_owned(), encoding, decoding });
            jwks.push(jwk);
        }
        Ok(Self { keys, jwks: JwkSet { keys: jwks } })
    }

    /// A fresh P-256 key in the form [`SigningKeys::parse`] reads.
    pub fn generate_spec(kid: &str) -> Result<String, KeySpecError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| bad_key(kid))?;
        Ok(format!("{kid}:{}", URL_SAFE_NO_PAD.encode(doc.as_ref())))
    }

    pub fn active_kid(&self) -> &str {
        self.keys.first().map_or("", |k| k.kid.as_str())
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// Signs `claims` as an `at+jwt` with the active key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let Some(key) = self.keys.first() else {
            return Err(jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey.into());
        };
        let mut header = Header::new(ALG);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
    }

    /// Verifies signature, algorithm, `typ`, `kid` and `iss`. Time and audience are the
    /// caller's to check: time comes from the injected clock, audience from the caller.
    pub fn verify<T: DeserializeOwned>(&self, token: &str, issuer: &str) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        // RFC 8725 §3.1: pin the algorithm; never trust the header's choice.
        if header.alg != ALG || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(VerifyError::Header);
        }
        let kid = header.kid.ok_or(VerifyError::Header)?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or(VerifyError::UnknownKey)?;
        let mut validation = Validation::new(ALG);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[issuer]);
        jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }
}

fn bad_key(kid: &str) -> KeySpecError {
    KeySpecError::BadKey { id: kid.to_owned(), expected: "base64 of a PKCS#8 P-256 private key" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Claims {
        iss: String,
        sub: String,
    }

    fn keys(kid: &str) -> SigningKeys {
        SigningKeys::parse(&SigningKeys::generate_spec(kid).unwrap()).unwrap()
    }

    fn claims() -> Claims {
        Claims { iss: "https://as.example".into(), sub: "42".into() }
    }

    #[test]
    fn signs_and_verifies_with_kid_and_typ() {
        let k = keys("k1");
        let token = k.sign(&claims()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(k.verify::<Claims>(&token, "https://as.example").unwrap(), claims());
        assert_eq!(k.jwks().keys.len(), 1);
    }

    #[test]
    fn rejects_other_issuers_other_keys_and_tampering() {
        let k = keys("k1");
        let token = k.sign(&claims()).unwrap();
        assert_eq!(k.verify::<Claims>(&token, "https://other").unwrap_err(), VerifyError::Invalid);
        let stranger = keys("k1");
        assert_eq!(stranger.verify::<Claims>(&token, "https://as.example").unwrap_err(), VerifyError::Invalid);
        assert_eq!(keys("k2").verify::<Claims>(&token, "https://as.example").unwrap_err(), VerifyError::UnknownKey);
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://as.example","sub":"1"}"#);
        assert_eq!(k.verify::<Claims>(&parts.join("."), "https://as.example").unwrap_err(), VerifyError::Invalid);
        assert_eq!(k.verify::<Claims>("garbage", "x").unwrap_err(), VerifyError::Malformed);
    }

    #[test]
    fn rejects_alg_none_and_hmac_headers() {
        let k = keys("k1");
        let body = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://as.example","sub":"42"}"#);
        for header in [
            r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#,
            r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#,
            r#"{"alg":"ES256","typ":"at+jwt"}"#,
        ] {
            let token = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(header));
            assert!(k.verify::<Claims>(&token, "https://as.example").is_err(), "{header}");
        }
    }

    #[test]
    fn old_keys_verify_after_rotation_and_stay_published() {
        let old_spec = SigningKeys::generate_spec("old").unwrap();
        let old = SigningKeys::parse(&old_spec).unwrap();
        let token = old.sign(&claims()).unwrap();
        let new_spec = SigningKeys::generate_spec("new").unwrap();
        let rotated = SigningKeys::parse(&format!("{new_spec},{old_spec}")).unwrap();
        assert_eq!(rotated.active_kid(), "new");
        assert!(rotated.verify::<Claims>(&token, "https://as.example").is_ok());
        assert_eq!(rotated.jwks().keys.len(), 2);
    }

    #[test]
    fn refuses_malformed_key_specs() {
        assert_eq!(SigningKeys::parse("").unwrap_err(), KeySpecError::Empty);
        assert_eq!(SigningKeys::parse("k:bm90LWEta2V5").unwrap_err(), bad_key("k"));
    }
}
