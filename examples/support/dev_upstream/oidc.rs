//! OpenID Connect for the stand-in: discovery, a JWKS with key rotation, and signed ID
//! tokens, each with a fault a test can switch on.

use std::sync::Mutex;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// What is wrong with the ID tokens the stand-in issues, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    WrongAudience,
    WrongIssuer,
    Expired,
    WrongNonce,
    BadSignature,
    /// Signed with a key the JWKS does not publish.
    UnknownKid,
}

struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

fn new_key(alg: Algorithm, n: usize) -> SigningKey {
    let encoding = match alg {
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair.as_der().expect("PKCS#8");
            EncodingKey::from_rsa_der(pkcs1_of(der.as_ref()))
        }
        _ => {
            let doc =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("EC key");
            EncodingKey::from_ec_der(doc.as_ref())
        }
    };
    let kid = format!("stand-in-{n}");
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public key");
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(if alg == Algorithm::RS256 { KeyAlgorithm::RS256 } else { KeyAlgorithm::ES256 });
    SigningKey { kid, alg, encoding, jwk }
}

/// The PKCS#1 RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (the OCTET STRING after the
/// version and the algorithm identifier), which is what jsonwebtoken's RSA signer reads.
fn pkcs1_of(pkcs8: &[u8]) -> &[u8] {
    /// One DER element at `at`: (content start, content end).
    fn element(der: &[u8], at: usize) -> (usize, usize) {
        let first = der[at + 1] as usize;
        let (len, header) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            (der[at + 2..at + 2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize), 2 + n)
        };
        (at + header, at + header + len)
    }
    let (inner, _) = element(pkcs8, 0); // PrivateKeyInfo SEQUENCE
    let (_, after_version) = element(pkcs8, inner);
    let (_, after_algorithm) = element(pkcs8, after_version);
    let (key, end) = element(pkcs8, after_algorithm); // privateKey OCTET STRING
    &pkcs8[key..end]
}

pub struct Oidc {
    alg: Algorithm,
    /// Published keys, newest first; the newest signs.
    keys: Mutex<Vec<SigningKey>>,
    /// A key that signs but is never published (for `UnknownKid`).
    stranger: SigningKey,
    pub fault: Mutex<Option<IdTokenFault>>,
}

impl Oidc {
    pub fn new(alg: Algorithm) -> Self {
        Self { alg, keys: Mutex::new(vec![new_key(alg, 1)]), stranger: new_key(alg, 999), fault: Mutex::new(None) }
    }

    /// A new signing key; the old one stays published (as real providers do for a while).
    pub fn rotate(&self) {
        let mut keys = self.keys.lock().unwrap();
        let next = new_key(self.alg, keys.len() + 1);
        keys.insert(0, next);
    }

    pub fn jwks(&self) -> Value {
        let keys = self.keys.lock().unwrap();
        serde_json::to_value(JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() }).unwrap()
    }

    /// The discovery document of `issuer`, whose endpoints are at `base`.
    pub fn discovery(issuer: &str, base: &str) -> Value {
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/jwks"),
            "revocation_endpoint": format!("{base}/revoke"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        })
    }

    /// Any JWT with header `typ`, signed with the current key (or, `forged`, with a key the
    /// JWKS does not publish): an enterprise identity provider's ID-JAGs.
    pub fn sign(&self, typ: &str, claims: &Value, forged: bool) -> String {
        let keys = self.keys.lock().unwrap();
        let key = &keys[0];
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        let signer = if forged { &self.stranger.encoding } else { &key.encoding };
        jsonwebtoken::encode(&header, claims, signer).expect("JWT")
    }

    /// An ID token for `sub` and `client_id` with `extra` claims, the current fault applied.
    pub fn id_token(
        &self,
        issuer: &str,
        client_id: &str,
        sub: &str,
        nonce: Option<&str>,
        now: i64,
        extra: &Value,
    ) -> String {
        let fault = *self.fault.lock().unwrap();
        let mut claims = json!({
            "iss": if fault == Some(IdTokenFault::WrongIssuer) { format!("{issuer}/other") } else { issuer.to_owned() },
            "aud": if fault == Some(IdTokenFault::WrongAudience) { "someone-else".to_owned() } else { client_id.to_owned() },
            "sub": sub,
            "iat": now,
            "exp": if fault == Some(IdTokenFault::Expired) { now - 3600 } else { now + 600 },
            "email": format!("{sub}@stand-in.example"),
        });
        if let Some(extra) = extra.as_object() {
            for (name, value) in extra {
                claims[name] = value.clone();
            }
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(if fault == Some(IdTokenFault::WrongNonce) { "not-the-nonce" } else { nonce });
        }
        let keys = self.keys.lock().unwrap();
        let key = if fault == Some(IdTokenFault::UnknownKid) { &self.stranger } else { &keys[0] };
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("ID token");
        if fault == Some(IdTokenFault::BadSignature) {
            // Same header and claims, another key's signature.
            let forged = jsonwebtoken::encode(&header, &claims, &self.stranger.encoding).expect("ID token");
            let (head, _) = token.rsplit_once('.').unwrap_or_default();
            let (_, signature) = forged.rsplit_once('.').unwrap_or_default();
            return format!("{head}.{signature}");
        }
        token
    }
}
