//! Revoking the upstream grant when Tether's grant is revoked: RFC 7009 where the provider
//! offers it (Google, OIDC providers that advertise `revocation_endpoint`, configured oauth2
//! ones), a bearer-authenticated call (Dropbox, Linear), a DELETE naming the refresh token
//! (HubSpot), and GitHub's application grant deletion.

use secrecy::ExposeSecret;
use url::Url;

use super::http::UpstreamHttp;
use super::{ProviderConfig, UpstreamError, UpstreamTokens};

/// RFC 7009 §2.1: revoking the refresh token revokes the grant at providers that tie the two.
pub async fn rfc7009(
    http: &UpstreamHttp,
    config: &ProviderConfig,
    url: &Url,
    tokens: &UpstreamTokens,
) -> Result<(), UpstreamError> {
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh.as_str(), "refresh_token"),
        None => (tokens.access_token.as_str(), "access_token"),
    };
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    let mut request = http.client().post(url.clone());
    match (&config.client_secret, config.token_auth) {
        (Some(secret), super::TokenAuth::ClientSecretBasic) => {
            request = request.basic_auth(&config.client_id, Some(secret.expose_secret()));
        }
        (Some(secret), super::TokenAuth::ClientSecretPost) => {
            form.push(("client_id", &config.client_id));
            form.push(("client_secret", secret.expose_secret()));
        }
        (None, _) => form.push(("client_id", &config.client_id)),
    }
    let (status, _) = http.send(request.form(&form)).await.map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    match status {
        200..=299 => Ok(()),
        status => Err(UpstreamError::Rejected { error: format!("revocation answered {status}") }),
    }
}

/// GitHub: `DELETE /applications/{client_id}/grant` removes the app's authorization for the
/// user along with all its tokens.
pub async fn github(
    http: &UpstreamHttp,
    config: &ProviderConfig,
    api_url: &Url,
    tokens: &UpstreamTokens,
) -> Result<(), UpstreamError> {
    let Some(secret) = &config.client_secret else {
        return Err(UpstreamError::Invalid("GitHub grant deletion needs the client secret".to_owned()));
    };
    let url = format!("{}/applications/{}/grant", api_url.as_str().trim_end_matches('/'), config.client_id);
    let request = http
        .client()
        .delete(url)
        .basic_auth(&config.client_id, Some(secret.expose_secret()))
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .json(&serde_json::json!({ "access_token": tokens.access_token }));
    let (status, _) = http.send(request).await.map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    match status {
        204 | 200 | 404 => Ok(()), // 404: already gone
        status => Err(UpstreamError::Rejected { error: format!("grant deletion answered {status}") }),
    }
}

/// A revocation answer: done (2xx, or 404/410 when the token was already gone) or refused.
fn answered(status: u16) -> Result<(), UpstreamError> {
    match status {
        200..=299 | 404 | 410 => Ok(()),
        status => Err(UpstreamError::Rejected { error: format!("revocation answered {status}") }),
    }
}

/// POST with the access token as the bearer credential, no body: the token (and at Dropbox
/// and Linear the grant behind it) ends.
pub async fn bearer(http: &UpstreamHttp, url: &Url, tokens: &UpstreamTokens) -> Result<(), UpstreamError> {
    let request = http.client().post(url.clone()).bearer_auth(&tokens.access_token);
    let (status, _) = http.send(request).await.map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    // 401: the access token is already dead (expired or revoked); nothing more can be done
    // with it, and Tether forgets it either way.
    if status == 401 {
        return Err(UpstreamError::Rejected { error: "the access token is no longer accepted".to_owned() });
    }
    answered(status)
}

/// The URL parser's form of the `{refresh_token}` placeholder.
const REFRESH_IN_PATH: &str = "%7Brefresh_token%7D";

/// DELETE the URL naming the refresh token (HubSpot `/oauth/v1/refresh-tokens/{refresh_token}`).
pub async fn delete(http: &UpstreamHttp, url: &Url, tokens: &UpstreamTokens) -> Result<(), UpstreamError> {
    let Some(refresh) = &tokens.refresh_token else {
        return Err(UpstreamError::Invalid("revocation by DELETE needs a refresh token".to_owned()));
    };
    let escaped: String = url::form_urlencoded::byte_serialize(refresh.as_bytes()).collect();
    let target = Url::parse(&url.as_str().replace(REFRESH_IN_PATH, &escaped))
        .map_err(|_| UpstreamError::Invalid("the refresh token does not fit the revocation URL".to_owned()))?;
    let (status, _) =
        http.send(http.client().delete(target)).await.map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    answered(status)
}
