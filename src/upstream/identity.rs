//! Reading the user's identity from the provider's user endpoint.

use serde_json::Value;

use url::Url;

use super::http::{HttpError, UpstreamHttp};
use super::{Identity, UpstreamError};

/// Reads `subject_field` from the user endpoint (OAuth `/user`, OIDC `userinfo`).
pub async fn fetch(
    http: &UpstreamHttp,
    userinfo_url: &Url,
    subject_field: &str,
    quirks: &super::Quirks,
    access_token: &str,
) -> Result<Identity, UpstreamError> {
    let method = if quirks.userinfo_post { reqwest::Method::POST } else { reqwest::Method::GET };
    let mut request = http
        .client()
        .request(method, userinfo_url.clone())
        .bearer_auth(access_token)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(body) = &quirks.userinfo_body {
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
    }
    for (name, value) in &quirks.userinfo_headers {
        request = request.header(name.as_str(), value.as_str());
    }
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
    Ok(Identity {
        subject: subject(&doc, subject_field)?,
        account: field(&quirks.account_field, &["login", "preferred_username", "username", "email"]),
        name: field(&quirks.name_field, &["name"]),
        email: field(&quirks.email_field, &["email"]),
    })
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
/// number).
fn subject(doc: &Value, field: &str) -> Result<String, UpstreamError> {
    match super::shape::at(doc, field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        _ => Err(UpstreamError::Invalid(format!("user endpoint has no usable `{field}` member"))),
    }
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
    fn refuses_missing_empty_or_odd_subjects() {
        for doc in [json!({}), json!({"sub": ""}), json!({"sub": 1.5}), json!({"sub": null}), json!([1])] {
            assert!(subject(&doc, "sub").is_err(), "{doc}");
        }
    }
}
