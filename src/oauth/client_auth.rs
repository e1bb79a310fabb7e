//! Client authentication at the token and revocation endpoints (RFC 6749 §2.3, OAuth 2.1 §2.4).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::clock::UnixTime;
use crate::crypto::hash;
use crate::store::ClientRecord;

use super::clients::Clients;
use super::error::OAuthError;

/// Credentials as presented: the `Authorization: Basic` header and the body members.
#[derive(Debug, Default, Clone)]
pub struct Presented {
    pub basic: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// RFC 6749 §2.3.1: Basic credentials are the form-urlencoded id and secret.
pub fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let malformed = || OAuthError::invalid_client("malformed Basic credentials");
    let (scheme, encoded) = header.trim().split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("only Basic client authentication is supported"));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or_else(malformed)
    };
    Ok((unescape(id)?, unescape(secret)?))
}

/// Identifies and authenticates the client.
///
/// Confidential clients may use either `client_secret_basic` or `client_secret_post`
/// whatever they registered (Claude's connectors send `post` to servers that advertise only
/// `basic`). A `client_id` in the body alongside Basic is accepted when it agrees (the Python
/// SDK always sends it).
pub async fn authenticate(
    clients: Clients<'_>,
    presented: &Presented,
    now: UnixTime,
) -> Result<ClientRecord, OAuthError> {
    let basic = presented.basic.as_deref().map(parse_basic).transpose()?;
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if presented.client_secret.is_some() {
                return Err(OAuthError::invalid_request("use one client authentication method, not two"));
            }
            if presented.client_id.as_ref().is_some_and(|body_id| *body_id != id) {
                return Err(OAuthError::invalid_request("client_id differs from the Basic credentials"));
            }
            (id, Some(secret))
        }
        None => match &presented.client_id {
            Some(id) => (id.clone(), presented.client_secret.clone()),
            None => return Err(OAuthError::invalid_client("client authentication is required")),
        },
    };
    let secret = secret.filter(|s| !s.is_empty());
    let client = clients
        .find(&client_id, now)
        .await
        .map_err(super::clients::LookupError::into_oauth)?
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    match (&client.secret_digest, secret) {
        (Some(expected), Some(secret)) if hash::matches_digest(&secret, expected) => Ok(client),
        (None, None) => Ok(client),
        (None, Some(_)) => Err(OAuthError::invalid_client("this public client has no secret")),
        (Some(_), _) => Err(OAuthError::invalid_client("client authentication failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoded_basic_credentials() {
        // id "a b", secret "x:y%" as RFC 6749 §2.3.1 encodes them.
        let header = format!("Basic {}", STANDARD.encode("a+b:x%3Ay%25"));
        assert_eq!(parse_basic(&header).unwrap(), ("a b".to_owned(), "x:y%".to_owned()));
        assert_eq!(parse_basic(&format!("basic {}", STANDARD.encode("id:"))).unwrap().1, "");
    }

    #[test]
    fn refuses_malformed_basic_credentials() {
        for header in ["Basic", "Basic !!!", "Bearer abc", &format!("Basic {}", STANDARD.encode("nocolon"))] {
            assert!(parse_basic(header).is_err(), "{header}");
        }
    }
}
