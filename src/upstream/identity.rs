//! Reading the user's identity from the provider's user endpoint.

use serde_json::Value;

use url::Url;

use super::http::{HttpError, UpstreamHttp};
use super::{Identity, UpstreamError};

/// The placeholder for providers whose token information endpoint takes the token in its
/// path (HubSpot `/oauth/v1/access-tokens/{access_token}`), as the URL parser keeps it.
const TOKEN_IN_PATH: &str = "%7Baccess_token%7D";

/// `url` with the access token in place of `{access_token}`, if it has one. Such a URL is a
/// secret: it is never logged (transport errors are reported without their URL).
fn with_token(url: &Url, access_token: &str) -> Result<Url, UpstreamError> {
    if !url.as_str().contains(TOKEN_IN_PATH) {
        return Ok(url.clone());
    }
    let token: String = url::form_urlencoded::byte_serialize(access_token.as_bytes()).collect();
    Url::parse(&url.as_str().replace(TOKEN_IN_PATH, &token))
        .map_err(|_| UpstreamError::Invalid("the access token does not fit the user endpoint's URL".to_owned()))
}

/// Reads `subject_field` from the user endpoint (OAuth `/user`, OIDC `userinfo`); also
/// returns the whole answer, for the values API callers need from it.
pub async fn fetch(
    http: &UpstreamHttp,
    userinfo_url: &Url,
    subject_field: &str,
    quirks: &super::Quirks,
    access_token: &str,
) -> Result<(Identity, Value), UpstreamError> {
    let request = userinfo_request(http, userinfo_url, quirks, access_token)?;
    let (status, body) = http.send(request).await.map_err(|e| match e {
        HttpError::TooLarge => UpstreamError::Invalid(e.to_string()),
        other => UpstreamError::Unavailable(other.to_string()),
    })?;
    if status == 401 || status == 403 {
        return Err(UpstreamError::Rejected { error: format!("user endpoint answered {status}") });
    }
    if status != 200 {
        return Err(UpstreamError::Invalid(format!("user endpoint answered {status}")));
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|_| UpstreamError::Invalid("user endpoint did not answer JSON".to_owned()))?;
    let field = |path: &Option<String>, default: &[&str]| match path {
        Some(path) => text(super::shape::at(&doc, path)),
        None => default.iter().find_map(|f| text(doc.get(*f))),
    };
    let identity = Identity {
        subject: subject(&doc, subject_field)?,
        account: field(&quirks.account_field, &["login", "preferred_username", "username", "email"]),
        name: field(&quirks.name_field, &["name"]),
        email: field(&quirks.email_field, &["email"]),
    };
    Ok((identity, doc))
}

/// The user endpoint's request for `access_token`, as the provider wants it called.
fn userinfo_request(
    http: &UpstreamHttp,
    userinfo_url: &Url,
    quirks: &super::Quirks,
    access_token: &str,
) -> Result<reqwest::RequestBuilder, UpstreamError> {
    let method = if quirks.userinfo_post { reqwest::Method::POST } else { reqwest::Method::GET };
    let mut request = http
        .client()
        .request(method, with_token(userinfo_url, access_token)?)
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(body) = &quirks.userinfo_body {
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
    }
    for (name, value) in &quirks.userinfo_headers {
        request = request.header(name.as_str(), value.as_str());
    }
    Ok(request)
}

/// Whether the provider still takes `access_token` at its user endpoint: `Some(false)` only on
/// a 401 (the token is dead), `None` when the answer proves nothing (403: rate limits, scopes).
pub async fn accepted(
    http: &UpstreamHttp,
    userinfo_url: &Url,
    quirks: &super::Quirks,
    access_token: &str,
) -> Result<Option<bool>, UpstreamError> {
    let request = userinfo_request(http, userinfo_url, quirks, access_token)?;
    match http.send(request).await {
        Ok((200, _)) => Ok(Some(true)),
        Ok((401, _)) => Ok(Some(false)),
        Ok(_) | Err(HttpError::TooLarge) => Ok(None),
        Err(e) => Err(UpstreamError::Unavailable(e.to_string())),
    }
}

/// The values an `extra_call` yields: one GET with the new access token (Atlassian's
/// accessible resources). A value the answer lacks is left out (a person with no site yet).
pub async fn extra_call(
    http: &UpstreamHttp,
    call: &super::ExtraCall,
    access_token: &str,
) -> Result<serde_json::Map<String, Value>, UpstreamError> {
    let request = http
        .client()
        .get(call.url.clone())
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json");
    let (status, body) = http.send(request).await.map_err(|e| match e {
        HttpError::TooLarge => UpstreamError::Invalid(e.to_string()),
        other => UpstreamError::Unavailable(other.to_string()),
    })?;
    match status {
        200 => {}
        401 | 403 => return Err(UpstreamError::Rejected { error: format!("the extra call answered {status}") }),
        _ => return Err(UpstreamError::Invalid(format!("the extra call answered {status}"))),
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|_| UpstreamError::Invalid("the extra call did not answer JSON".to_owned()))?;
    Ok(super::shape::values(&doc, &call.values))
}

/// A display member people recognise an account by: a short printable string, or nothing
/// (never an error: the subject is what matters).
pub fn text(value: Option<&Value>) -> Option<String> {
    let Some(Value::String(s)) = value else { return None };
    let clean: String = s.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}

/// `deserialize_with` for display claims of an ID token: a string, or nothing.
pub fn display<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = <Value as serde::Deserialize>::deserialize(d)?;
    Ok(text(Some(&value)))
}

/// The subject member (a dotted path), a non-empty string or an integer (GitHub's `id` is a
/// number). `a+b` joins two members with `:` (an id unique only within its tenant, qualified
/// by the tenant: Microsoft `tid+oid`, HubSpot `hub_id+user_id`).
pub fn subject(doc: &Value, field: &str) -> Result<String, UpstreamError> {
    let part = |path: &str| match super::shape::at(doc, path) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        _ => Err(UpstreamError::Invalid(format!("the answer has no usable `{path}` member"))),
    };
    let joined = field.split('+').map(part).collect::<Result<Vec<_>, _>>()?.join(":");
    if joined.len() > 255 {
        return Err(UpstreamError::Invalid(format!("`{field}` is too long to name a user")));
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_string_and_numeric_subjects() {
        assert_eq!(subject(&json!({"sub": "abc"}), "sub").unwrap(), "abc");
        assert_eq!(subject(&json!({"id": 583231, "login": "octocat"}), "id").unwrap(), "583231");
    }

    #[test]
    fn display_members_are_short_printable_strings_or_nothing() {
        assert_eq!(text(Some(&json!("octocat"))), Some("octocat".into()));
        assert_eq!(text(Some(&json!(" Ada\u{7} Lovelace "))), Some("Ada Lovelace".into()));
        assert_eq!(text(Some(&json!("x".repeat(300)))).map(|s| s.len()), Some(255));
        for odd in [json!(""), json!("  "), json!(5), json!(null), json!({"a": 1})] {
            assert_eq!(text(Some(&odd)), None, "{odd}");
        }
    }

    #[test]
    fn joined_subjects_qualify_an_id_by_its_tenant() {
        let doc = json!({"tid": "9188040d", "oid": "00000000-1", "hub_id": 62515, "user_id": 123});
        assert_eq!(subject(&doc, "tid+oid").unwrap(), "9188040d:00000000-1");
        assert_eq!(subject(&doc, "hub_id+user_id").unwrap(), "62515:123");
        assert!(subject(&doc, "tid+missing").is_err(), "every part is needed");
    }

    #[test]
    fn a_token_in_the_user_endpoints_path_is_escaped() {
        let url = Url::parse("https://api.hubapi.com/oauth/v1/access-tokens/{access_token}").unwrap();
        assert_eq!(
            with_token(&url, "CJ/a+b").unwrap().as_str(),
            "https://api.hubapi.com/oauth/v1/access-tokens/CJ%2Fa%2Bb"
        );
        let plain = Url::parse("https://api.github.com/user").unwrap();
        assert_eq!(with_token(&plain, "t").unwrap(), plain);
    }

    #[test]
    fn refuses_missing_empty_or_odd_subjects() {
        for doc in [json!({}), json!({"sub": ""}), json!({"sub": 1.5}), json!({"sub": null}), json!([1])] {
            assert!(subject(&doc, "sub").is_err(), "{doc}");
        }
    }
}
