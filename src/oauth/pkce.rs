//! PKCE (RFC 7636) for the client leg: S256 only.

use crate::crypto::hash;

use super::error::OAuthError;

/// RFC 7636 §4.1: `code_verifier = 43*128unreserved`.
fn is_verifier(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Validates the authorization request's challenge parameters.
///
/// OAuth 2.1 §4.1.1 / MCP "Authorization Code Protection": PKCE is REQUIRED and clients MUST
/// use S256 when they can; Tether accepts nothing else (`plain` offers no protection against
/// a leaked authorization request).
pub fn validate_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, OAuthError> {
    let challenge = challenge
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE with S256)"))?;
    match method {
        Some("S256") => {}
        None => {
            return Err(OAuthError::invalid_request("code_challenge_method is required and must be S256"));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request("code_challenge_method must be S256"));
        }
    }
    // A S256 challenge is the base64url of a SHA-256: exactly 43 unpadded characters.
    let well_formed =
        challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(OAuthError::invalid_request("code_challenge is not a S256 challenge"));
    }
    Ok(challenge.to_owned())
}

/// RFC 7636 §4.6: the verifier's S256 transform must equal the stored challenge.
pub fn verify(verifier: Option<&str>, challenge: &str) -> Result<(), OAuthError> {
    let verifier = verifier.ok_or_else(|| OAuthError::invalid_request("code_verifier is required"))?;
    if !is_verifier(verifier) {
        return Err(OAuthError::invalid_grant("code_verifier is malformed"));
    }
    if hash::constant_time_eq(hash::s256_challenge(verifier).as_bytes(), challenge.as_bytes()) {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn accepts_only_well_formed_s256_challenges() {
        assert_eq!(validate_challenge(Some(CHALLENGE), Some("S256")).unwrap(), CHALLENGE);
        for (challenge, method) in [
            (None, Some("S256")),
            (Some(""), Some("S256")),
            (Some(CHALLENGE), None),
            (Some(CHALLENGE), Some("plain")),
            (Some(CHALLENGE), Some("s256")),
            (Some("short"), Some("S256")),
            (Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"), Some("S256")),
        ] {
            let err = validate_challenge(challenge, method).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{challenge:?} {method:?}");
        }
    }

    #[test]
    fn verifies_the_matching_verifier_only() {
        verify(Some(VERIFIER), CHALLENGE).unwrap();
        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXa";
        assert_eq!(verify(Some(wrong), CHALLENGE).unwrap_err().code, ErrorCode::InvalidGrant);
        assert_eq!(verify(Some("short"), CHALLENGE).unwrap_err().code, ErrorCode::InvalidGrant);
        assert_eq!(verify(None, CHALLENGE).unwrap_err().code, ErrorCode::InvalidRequest);
        // `plain` would send the challenge itself as verifier: it must not verify.
        assert!(verify(Some(CHALLENGE), CHALLENGE).is_err());
    }
}
