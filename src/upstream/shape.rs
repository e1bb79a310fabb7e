//! Providers whose token endpoint bends RFC 6749, brought back to it before the `oauth2` crate
//! reads the answer: JSON request bodies (Notion), errors with status 200 and `ok: false`
//! (Slack), the user's token nested in the answer (`authed_user`), expiry as a string or
//! missing (Salesforce), a `token_type` that is not one (`"user"`). Values an API caller needs
//! beside the token (Salesforce `instance_url`, Slack `team.id`) and the user's identity, when
//! the answer carries it, are read from the answer as the provider sent it and passed on in
//! reserved members (`tether_extra`, `tether_identity`) that `client::ExtraFields` reads.

use serde_json::{Map, Value};

/// Errors a provider reports with status 200 that mean "try again later", not "refused".
const TRANSIENT: &[&str] =
    &["ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"];

/// Where, in the token answer, the user's identity is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityPaths {
    pub subject: String,
    pub account: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// How one provider's token endpoint differs from RFC 6749.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenShape {
    /// Send the token request as a JSON object instead of a form.
    pub json_body: bool,
    /// The object holding the tokens (`authed_user`): its members override the top level's.
    pub token_path: Option<String>,
    /// A member that is `false` on errors answered with status 200 (`ok`).
    pub success_field: Option<String>,
    /// The access token's lifetime when the answer gives none (seconds).
    pub default_expires_in: Option<u64>,
    /// Values to hand the MCP server: name and dotted path in the answer.
    pub extra: Vec<(String, String)>,
    /// The user's identity is in the answer (no user endpoint call).
    pub identity: Option<IdentityPaths>,
}

/// The value at a dotted path (`authed_user.id`, `0.id` for an array's first element).
pub fn at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, step)
}

fn step<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match (value, key.parse::<usize>()) {
        (Value::Array(items), Ok(index)) => items.get(index),
        _ => value.get(key),
    }
}

/// A value for an API caller: a dotted path as for [`at`], where `*` maps the rest of the path
/// over an array's elements (`*.id`: every site's id) and `.` is the whole answer.
pub fn pick(doc: &Value, path: &str) -> Option<Value> {
    fn walk(value: &Value, keys: &[&str]) -> Option<Value> {
        match keys.split_first() {
            None => Some(value.clone()),
            Some((&"*", rest)) => {
                let items = value.as_array()?;
                Some(Value::Array(items.iter().filter_map(|item| walk(item, rest)).collect()))
            }
            Some((key, rest)) => walk(step(value, key)?, rest),
        }
    }
    if path == "." {
        return Some(doc.clone());
    }
    walk(doc, &path.split('.').collect::<Vec<_>>()).filter(|v| !v.is_null())
}

/// Values for API callers read from `doc` at `paths` (name, path); absent ones are left out.
pub fn values(doc: &Value, paths: &[(String, String)]) -> Map<String, Value> {
    paths.iter().filter_map(|(name, path)| pick(doc, path).map(|v| (name.clone(), v))).collect()
}

/// A string or an integer, as text.
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A lifetime as a number of seconds: a number, or a string holding one (Microsoft v1).
fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

impl TokenShape {
    /// Nothing to change: the answer goes to the `oauth2` crate as it came.
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }

    /// The request body to send for the crate's form body, and its content type.
    pub fn request_body(&self, form: &[u8]) -> Option<Vec<u8>> {
        if !self.json_body {
            return None;
        }
        let object: Map<String, Value> =
            url::form_urlencoded::parse(form).map(|(k, v)| (k.into_owned(), Value::String(v.into_owned()))).collect();
        serde_json::to_vec(&Value::Object(object)).ok()
    }

    /// The answer as RFC 6749 §5.1/§5.2 would have it: (status, body).
    pub fn normalize(&self, status: u16, body: &[u8]) -> (u16, Vec<u8>) {
        let Ok(Value::Object(raw)) = serde_json::from_slice::<Value>(body) else { return (status, body.to_vec()) };
        let raw = Value::Object(raw);
        if let Some(field) = &self.success_field
            && raw.get(field) == Some(&Value::Bool(false))
        {
            let error = raw.get("error").and_then(Value::as_str).unwrap_or("invalid_grant");
            // Tell an outage from a refusal: the caller keeps the grant on the former.
            let status = if TRANSIENT.contains(&error) { 503 } else { 400 };
            let answer = serde_json::json!({ "error": error });
            return (status, answer.to_string().into_bytes());
        }
        if !(200..300).contains(&status) {
            return (status, body.to_vec());
        }
        let mut out = raw.as_object().cloned().unwrap_or_default();
        if let Some(Value::Object(nested)) = self.token_path.as_deref().and_then(|p| at(&raw, p)) {
            for key in
                ["access_token", "refresh_token", "expires_in", "scope", "token_type", "refresh_token_expires_in"]
            {
                match nested.get(key) {
                    Some(value) => {
                        out.insert(key.to_owned(), value.clone());
                    }
                    // A nested token set stands alone: the top level's bot token is not it.
                    None if key != "token_type" => {
                        out.remove(key);
                    }
                    None => {}
                }
            }
        }
        for key in ["expires_in", "refresh_token_expires_in"] {
            match out.get(key).map(seconds) {
                Some(Some(secs)) => {
                    out.insert(key.to_owned(), Value::from(secs));
                }
                Some(None) => {
                    out.remove(key);
                }
                None => {}
            }
        }
        if !out.contains_key("expires_in")
            && let Some(secs) = self.default_expires_in
        {
            out.insert("expires_in".to_owned(), Value::from(secs));
        }
        // Tether hands the token on as a Bearer token whatever the provider calls it ("user",
        // "bot", missing); `oauth2` would refuse an answer without one.
        let known = out.get("token_type").and_then(Value::as_str).map(str::to_ascii_lowercase);
        if !matches!(known.as_deref(), Some("bearer" | "mac" | "dpop")) {
            out.insert("token_type".to_owned(), Value::from("bearer"));
        }
        if !self.extra.is_empty() {
            out.insert("tether_extra".to_owned(), Value::Object(values(&raw, &self.extra)));
        }
        if let Some(paths) = &self.identity {
            let field = |path: &Option<String>| path.as_deref().and_then(|p| scalar(at(&raw, p)));
            // `team.id+authed_user.id`: an id unique only within its workspace, qualified.
            let subject: Option<Vec<String>> = paths.subject.split('+').map(|p| scalar(at(&raw, p))).collect();
            let identity = serde_json::json!({
                "subject": subject.map(|parts| parts.join(":")),
                "account": field(&paths.account),
                "name": field(&paths.name),
                "email": field(&paths.email),
            });
            out.insert("tether_identity".to_owned(), identity);
        }
        (status, Value::Object(out).to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slack() -> TokenShape {
        TokenShape {
            token_path: Some("authed_user".into()),
            success_field: Some("ok".into()),
            extra: vec![("team_id".into(), "team.id".into())],
            identity: Some(IdentityPaths { subject: "team.id+authed_user.id".into(), ..IdentityPaths::default() }),
            ..TokenShape::default()
        }
    }

    fn parse(answer: (u16, Vec<u8>)) -> (u16, Value) {
        (answer.0, serde_json::from_slice(&answer.1).unwrap())
    }

    #[test]
    fn slack_user_tokens_come_up_from_authed_user_and_ok_false_is_an_error() {
        let body = json!({"ok": true, "access_token": "xoxb-bot", "token_type": "bot", "scope": "chat:write",
            "team": {"id": "T1"}, "authed_user": {"id": "U1", "access_token": "xoxp-user", "token_type": "user",
            "scope": "search:read", "refresh_token": "xoxe-1", "expires_in": 43200}});
        let (status, out) = parse(slack().normalize(200, body.to_string().as_bytes()));
        assert_eq!(status, 200);
        assert_eq!(out["access_token"], "xoxp-user");
        assert_eq!(out["refresh_token"], "xoxe-1");
        assert_eq!(out["scope"], "search:read");
        assert_eq!(out["token_type"], "bearer");
        assert_eq!(out["tether_extra"], json!({"team_id": "T1"}));
        assert_eq!(out["tether_identity"]["subject"], "T1:U1");
        // Without rotation the user token has no refresh token: the bot's is not taken.
        let body = json!({"ok": true, "access_token": "xoxb", "refresh_token": "bot-rt", "authed_user": {"id": "U1", "access_token": "xoxp"}});
        let (_, out) = parse(slack().normalize(200, body.to_string().as_bytes()));
        assert_eq!(out["access_token"], "xoxp");
        assert!(out.get("refresh_token").is_none(), "{out}");
        let (status, out) = parse(slack().normalize(200, br#"{"ok":false,"error":"invalid_code"}"#));
        assert_eq!((status, out), (400, json!({"error": "invalid_code"})));
        let (status, _) = parse(slack().normalize(200, br#"{"ok":false,"error":"ratelimited"}"#));
        assert_eq!(status, 503, "an outage, not a refusal");
    }

    #[test]
    fn lifetimes_are_read_leniently_and_defaulted() {
        let shape = TokenShape { default_expires_in: Some(7200), ..TokenShape::default() };
        let (_, out) =
            parse(shape.normalize(200, br#"{"access_token":"a","token_type":"Bearer","expires_in":"3599"}"#));
        assert_eq!(out["expires_in"], 3599);
        assert_eq!(out["token_type"], "Bearer");
        let (_, out) = parse(shape.normalize(200, br#"{"access_token":"a","instance_url":"https://x"}"#));
        assert_eq!(out["expires_in"], 7200);
        assert_eq!(out["token_type"], "bearer");
        let (_, out) = parse(shape.normalize(200, br#"{"access_token":"a","expires_in":"soon"}"#));
        assert_eq!(out["expires_in"], 7200, "an unreadable lifetime is treated as none");
    }

    #[test]
    fn json_bodies_carry_the_form_members() {
        let shape = TokenShape { json_body: true, ..TokenShape::default() };
        let body =
            shape.request_body(b"grant_type=authorization_code&code=a%2Bb&redirect_uri=https%3A%2F%2Fx").unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"grant_type": "authorization_code", "code": "a+b", "redirect_uri": "https://x"}));
        assert!(TokenShape::default().request_body(b"a=b").is_none());
    }

    #[test]
    fn paths_reach_into_arrays_and_map_over_them() {
        let sites =
            json!([{"id": "c1", "url": "https://a.atlassian.net"}, {"id": "c2", "url": "https://b.atlassian.net"}]);
        assert_eq!(pick(&sites, "0.id"), Some(json!("c1")));
        assert_eq!(pick(&sites, "*.id"), Some(json!(["c1", "c2"])));
        assert_eq!(pick(&sites, "."), Some(sites.clone()));
        assert_eq!(pick(&sites, "2.id"), None);
        assert_eq!(pick(&json!([]), "0.id"), None, "no site: no value, not an error");
        assert_eq!(pick(&json!({"a": null}), "a"), None);
        assert_eq!(at(&json!({"data": [{"gid": "7"}]}), "data.0.gid"), Some(&json!("7")));
    }

    #[test]
    fn other_answers_pass_through() {
        let shape = slack();
        assert_eq!(shape.normalize(200, b"not json"), (200, b"not json".to_vec()));
        assert_eq!(shape.normalize(400, br#"{"error":"invalid_grant"}"#).0, 400);
        assert!(TokenShape::default().is_plain() && !shape.is_plain());
    }
}
