//! What the browser-facing steps (`/authorize`, `/consent`, `/callback`) hand back to `http`.
//!
//! Errors are kept apart by where they can go (RFC 6749 §4.1.2.1): until the client and its
//! redirect URI are validated an error is shown as a page and never redirected; after that
//! it is sent to the client's redirect URI with `state` and `iss`.

use std::borrow::Cow;

use url::Url;

use super::error::{ErrorCode, OAuthError};
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStatus {
    BadRequest,
    Forbidden,
    Unavailable,
    TooManyRequests,
    ServerError,
}

/// A failed browser step.
#[derive(Debug)]
pub enum FlowError {
    Page { status: PageStatus, message: Cow<'static, str> },
    Redirect(Url),
}

impl FlowError {
    pub fn page(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Page { status: PageStatus::BadRequest, message: message.into() }
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::Page { status: PageStatus::Forbidden, message: message.into() }
    }
}

impl From<StoreError> for FlowError {
    fn from(err: StoreError) -> Self {
        let status = match OAuthError::store(err).code {
            ErrorCode::TemporarilyUnavailable => PageStatus::Unavailable,
            _ => PageStatus::ServerError,
        };
        Self::Page { status, message: "Tether cannot reach its store right now. Please try again shortly.".into() }
    }
}

/// Where the client gets its answer, once it is known to be the client's.
#[derive(Debug, Clone)]
pub struct ReturnTo<'a> {
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub issuer: &'a str,
}

impl ReturnTo<'_> {
    /// RFC 6749 §4.1.2: `code` and `state`; RFC 9207 §2: `iss` on every response.
    pub fn success(&self, code: &str) -> Result<Url, FlowError> {
        self.build(&[("code", code)])
    }

    /// RFC 6749 §4.1.2.1 error response, with `iss` (RFC 9207 §2.1: errors included).
    pub fn error(&self, error: &OAuthError) -> FlowError {
        match self.build(&[("error", error.code.as_str()), ("error_description", &error.description)]) {
            Ok(url) => FlowError::Redirect(url),
            Err(page) => page,
        }
    }

    fn build(&self, params: &[(&str, &str)]) -> Result<Url, FlowError> {
        let mut url = Url::parse(self.redirect_uri)
            .map_err(|_| FlowError::page("The application's redirect URI cannot be used."))?;
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", self.issuer);
        }
        Ok(url)
    }
}

/// What the consent page shows. Every string here is untrusted and must be escaped.
#[derive(Debug, Clone)]
pub struct ConsentView {
    /// Single-use id of the pending request: the form's CSRF token.
    pub consent_id: String,
    /// The browser-binding cookie value to (re)set with the page.
    pub binding: String,
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_host: String,
    /// The request includes what this browser approved for the client before (step-up).
    pub widening: bool,
    /// Every redirect URI of the client is on this computer (localhost).
    pub local_only: bool,
    /// For a client identified by a metadata document, the host that published it.
    pub document_host: Option<String>,
    /// The connect flow: the MCP server itself asks, for one of its sessions.
    pub connect: bool,
    pub resource_name: String,
    pub resource_uri: String,
    pub provider_name: String,
    pub scopes: Vec<(String, Option<String>)>,
    pub upstream_scopes: Vec<String>,
    /// Who is signed in to Tether in this browser (name, email or user id).
    pub signed_in_as: Option<String>,
    /// The upstream account whose connection serves the request without a new sign-in.
    pub connected_as: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_code_state_and_iss_to_an_existing_query() {
        let to = ReturnTo { redirect_uri: "https://c.example/cb?x=1", state: Some("s t"), issuer: "https://as" };
        let url = to.success("abc").unwrap();
        assert_eq!(url.as_str(), "https://c.example/cb?x=1&code=abc&state=s+t&iss=https%3A%2F%2Fas");
    }

    #[test]
    fn errors_carry_description_and_iss_but_no_state_when_none_was_sent() {
        let to = ReturnTo {
            redirect_uri: "cursor://anysphere.cursor-mcp/oauth/callback",
            state: None,
            issuer: "https://as",
        };
        let FlowError::Redirect(url) = to.error(&OAuthError::new(ErrorCode::AccessDenied, "no")) else {
            panic!("expected a redirect");
        };
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("error".into(), "access_denied".into()),
                ("error_description".into(), "no".into()),
                ("iss".into(), "https://as".into())
            ]
        );
    }
}
