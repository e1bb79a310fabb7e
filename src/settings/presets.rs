//! The provider catalogue: presets shipped with Tether as data (`config/providers/*.toml`,
//! embedded), so that `preset = "slack"` and a client id and secret configure a provider with
//! every quirk it has. A preset declares its variables (a tenant, an instance host) with their
//! defaults and fills in the provider's settings, `{variable}` replaced; anything the operator
//! sets in the provider's table wins.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ConfigErrors;

/// Every preset: (name, TOML).
const CATALOGUE: &[(&str, &str)] = &[
    ("asana", include_str!("../../config/providers/asana.toml")),
    ("atlassian", include_str!("../../config/providers/atlassian.toml")),
    ("auth0", include_str!("../../config/providers/auth0.toml")),
    ("box", include_str!("../../config/providers/box.toml")),
    ("discord", include_str!("../../config/providers/discord.toml")),
    ("dropbox", include_str!("../../config/providers/dropbox.toml")),
    ("figma", include_str!("../../config/providers/figma.toml")),
    ("gitlab", include_str!("../../config/providers/gitlab.toml")),
    ("hubspot", include_str!("../../config/providers/hubspot.toml")),
    ("keycloak", include_str!("../../config/providers/keycloak.toml")),
    ("linear", include_str!("../../config/providers/linear.toml")),
    ("microsoft", include_str!("../../config/providers/microsoft.toml")),
    ("notion", include_str!("../../config/providers/notion.toml")),
    ("okta", include_str!("../../config/providers/okta.toml")),
    ("salesforce", include_str!("../../config/providers/salesforce.toml")),
    ("slack", include_str!("../../config/providers/slack.toml")),
    ("zoom", include_str!("../../config/providers/zoom.toml")),
];

/// Placeholders Tether fills in itself when it calls the provider.
const RUNTIME: &[&str] = &["access_token", "refresh_token"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    #[serde(default)]
    pub default: Option<String>,
    pub description: String,
}

/// One provider of the catalogue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    #[serde(skip)]
    pub name: String,
    pub display_name: String,
    /// Where to register the app, what to enter, what is assumed.
    pub notes: String,
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, Variable>,
    /// The provider's settings, as in a `[providers.<id>]` table.
    pub provider: Map<String, Value>,
}

fn parse(name: &str, text: &str) -> Result<Preset, String> {
    let config = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| format!("preset {name}: {e}"))?;
    let mut preset: Preset = config.try_deserialize().map_err(|e| format!("preset {name}: {e}"))?;
    preset.name = name.to_owned();
    Ok(preset)
}

/// The whole catalogue, by name. (A preset that does not parse is a bug the tests catch.)
pub fn all() -> Vec<Preset> {
    CATALOGUE.iter().filter_map(|(name, text)| parse(name, text).ok()).collect()
}

pub fn get(name: &str) -> Option<Preset> {
    CATALOGUE.iter().find(|(n, _)| *n == name).and_then(|(n, text)| parse(n, text).ok())
}

/// `text` with every `{variable}` replaced; the names it uses that are not in `values`.
fn substitute(text: &str, values: &std::collections::BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return Ok(out);
        };
        let name = &after[..close];
        match values.get(name) {
            Some(value) => out.push_str(value),
            // Filled in per request, not by the preset (a token in a URL's path).
            None if RUNTIME.contains(&name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
            // Not a variable (JSON paths never use braces; a literal `{` stays).
            None if !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') || name.is_empty() => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
            None => return Err(name.to_owned()),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn fill(value: &Value, values: &std::collections::BTreeMap<String, String>) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(substitute(s, values)?),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, values)).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), fill(v, values)?))).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
}

/// Fills in the settings of every provider that names a preset (operator values win).
pub fn apply(providers: &mut Map<String, Value>, errors: &mut ConfigErrors) {
    for (id, table) in providers.iter_mut() {
        let Some(table) = table.as_object_mut() else { continue };
        let key = |member: &str| format!("providers.{id}.{member}");
        let given: std::collections::BTreeMap<String, String> = match table.get("variables") {
            None => Default::default(),
            Some(Value::Object(vars)) => {
                vars.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
            }
            Some(_) => {
                errors.push(key("variables"), "must be a table of name = \"value\"");
                continue;
            }
        };
        let Some(name) = table.get("preset").map(|p| p.as_str().unwrap_or_default().to_owned()) else {
            if !given.is_empty() {
                errors.push(key("variables"), "applies with a preset only");
            }
            continue;
        };
        let Some(preset) = get(&name) else {
            let known: Vec<&str> = CATALOGUE.iter().map(|(n, _)| *n).collect();
            errors.push(
                key("preset"),
                format!("no preset `{name}` (tether providers list shows them: {})", known.join(", ")),
            );
            continue;
        };
        let mut values = std::collections::BTreeMap::new();
        for given_name in given.keys() {
            if !preset.variables.contains_key(given_name) {
                let declared: Vec<&str> = preset.variables.keys().map(String::as_str).collect();
                let has = if declared.is_empty() { "none".to_owned() } else { declared.join(", ") };
                errors.push(
                    key(&format!("variables.{given_name}")),
                    format!("the {name} preset has no such variable (it has: {has})"),
                );
            }
        }
        for (var, declared) in &preset.variables {
            match given.get(var).filter(|v| !v.is_empty()).or(declared.default.as_ref()) {
                Some(value) if value.contains(['{', '}', ' ', '"', '\'']) || value.is_empty() => {
                    errors.push(key(&format!("variables.{var}")), "must not contain braces, quotes or spaces");
                }
                Some(value) => {
                    values.insert(var.clone(), value.trim_end_matches('/').to_owned());
                }
                None => errors.push(
                    key(&format!("variables.{var}")),
                    format!("required by the {name} preset: {}", declared.description),
                ),
            }
        }
        if values.len() != preset.variables.len() {
            continue;
        }
        if !table.contains_key("display_name") {
            table.insert("display_name".to_owned(), Value::from(preset.display_name.clone()));
        }
        for (member, value) in &preset.provider {
            if table.contains_key(member) {
                continue;
            }
            match fill(value, &values) {
                Ok(filled) => {
                    table.insert(member.clone(), filled);
                }
                Err(unknown) => {
                    errors.push(key(member), format!("the {name} preset uses an undeclared variable `{unknown}`"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_declares_what_it_uses() {
        assert_eq!(
            all().len(),
            CATALOGUE.len(),
            "a preset does not parse: {:?}",
            CATALOGUE.iter().map(|(n, t)| parse(n, t).err()).collect::<Vec<_>>()
        );
        for preset in all() {
            let values = preset.variables.keys().map(|k| (k.clone(), "x".to_owned())).collect();
            for (member, value) in &preset.provider {
                assert!(fill(value, &values).is_ok(), "{}: {member} uses an undeclared variable", preset.name);
            }
            assert!(preset.provider.contains_key("kind"), "{}", preset.name);
            assert!(!preset.notes.trim().is_empty(), "{}", preset.name);
        }
    }

    #[test]
    fn variables_are_filled_and_operator_values_win() {
        let mut providers: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sf": {"preset": "salesforce", "client_id": "c", "variables": {"host": "acme.my.salesforce.com/"},
                   "default_expires_in": 900},
            "plain": {"kind": "oauth2"},
        }))
        .unwrap();
        let mut errors = ConfigErrors::default();
        apply(&mut providers, &mut errors);
        assert!(errors.0.is_empty(), "{errors}");
        let sf = &providers["sf"];
        assert_eq!(sf["authorize_url"], "https://acme.my.salesforce.com/services/oauth2/authorize");
        assert_eq!(sf["default_expires_in"], 900, "the operator's value wins");
        assert_eq!(sf["kind"], "oauth2");
        assert_eq!(sf["display_name"], "Salesforce");
        assert_eq!(providers["plain"], serde_json::json!({"kind": "oauth2"}));
    }

    #[test]
    fn unknown_presets_and_variables_are_errors() {
        let mut providers: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "a": {"preset": "nowhere"},
            "b": {"preset": "slack", "variables": {"tenant": "x"}},
            "c": {"kind": "oauth2", "variables": {"x": "y"}},
            "d": {"preset": "gitlab", "variables": {"base_url": "https://git {lab}"}},
        }))
        .unwrap();
        let mut errors = ConfigErrors::default();
        apply(&mut providers, &mut errors);
        let text = errors.to_string();
        for expected in [
            "providers.a.preset",
            "providers.b.variables.tenant",
            "providers.c.variables",
            "providers.d.variables.base_url",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn braces_that_are_not_variables_stay() {
        let values = [("host".to_owned(), "h".to_owned())].into_iter().collect();
        assert_eq!(substitute("https://{host}/a", &values).unwrap(), "https://h/a");
        assert_eq!(substitute("{not a var} {A}", &values).unwrap(), "{not a var} {A}");
        assert_eq!(substitute("https://{tenant}/", &values), Err("tenant".to_owned()));
    }
}
