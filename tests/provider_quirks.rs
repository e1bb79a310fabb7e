//! Providers that bend OAuth, configured with the `oauth2` kind's knobs, each through the
//! whole flow against a stand-in shaped like it (see `examples/support/dev_upstream`):
//! the authorization request it needs, the code exchange, who the user is, the values the MCP
//! server gets beside the token (`upstream.extra`), upstream refresh with rotation or without,
//! and refusals told from outages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Upstream tokens live two minutes: Tether refreshes them within a minute of expiry.
fn options(kind: Kind) -> Options {
    Options {
        kind,
        upstream_ttl: Some(Duration::from_secs(120)),
        single_resource: true,
        revoke_upstream: true,
        ..Options::default()
    }
}

struct Flow {
    app: TestApp,
    client: TestClient,
    access: String,
    refresh: String,
    upstream: HashMap<String, String>,
}

/// Authorizes a client as `user` and exchanges the code; returns the upstream request.
async fn authorize(kind: Kind, user: &str) -> Flow {
    authorize_with(options(kind), user).await
}

async fn authorize_with(options: Options, user: &str) -> Flow {
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let client = app.register_client("none").await;
    let pkce = Pkce::new();
    let browser = app.browser();
    let url = app.authorize_url(&client, &pkce, &[("scope", Some("files:read files:write"))]);
    let upstream_url = app.go_upstream(&browser, &url).await;
    let upstream = query(&upstream_url);
    let back = browser.upstream_login(&upstream_url, user, "approve").await;
    let to_client = browser.get(&location(&back)).await;
    assert_eq!(to_client.status(), 302, "{}", to_client.text().await.unwrap());
    let done = query(&location(&to_client));
    let code = done.get("code").unwrap_or_else(|| panic!("no code: {done:?}"));
    let response = app.exchange_code(&client, code, &pkce.verifier).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let text = |name: &str| tokens[name].as_str().unwrap().to_owned();
    Flow { access: text("access_token"), refresh: text("refresh_token"), app, client, upstream }
}

/// Revoking at Tether revokes at the provider, in the provider's way: the upstream token
/// stops working there.
async fn revoked_upstream(flow: &Flow) {
    let upstream = upstream_of(flow).await;
    let token = upstream["access_token"].as_str().unwrap();
    assert!(flow.app.upstream.accepts(token));
    assert_eq!(flow.app.revoke(&flow.client, &flow.refresh).await.status(), 200);
    assert_eq!(flow.app.introspect(&flow.access).await, json!({"active": false}));
    assert_eq!(flow.app.upstream.counts().revocations, 1, "revoked at the provider");
    assert!(!flow.app.upstream.accepts(token), "the provider no longer takes the token");
}

async fn upstream_of(flow: &Flow) -> Value {
    let answer = flow.app.introspect(&flow.access).await;
    assert_eq!(answer["active"], true, "{answer}");
    answer["upstream"].clone()
}

/// Refreshes upstream twice (the second proves the first stored what the provider wants
/// kept or rotated), survives an outage, and ends the grant when the provider refuses.
async fn refresh_rotation_outage_refusal(flow: &Flow, outage: u16) {
    let app = &flow.app;
    let first = upstream_of(flow).await;
    for round in 1..=2 {
        app.clock.advance(61);
        let now = upstream_of(flow).await;
        assert_ne!(now["access_token"], first["access_token"], "round {round}: refreshed");
        assert!(app.upstream.accepts(now["access_token"].as_str().unwrap()), "round {round}: works upstream");
        assert_eq!(now["extra"], first["extra"], "round {round}: the extra values stay");
        assert_eq!(app.upstream.counts().refreshes, round);
    }
    app.clock.advance(61);
    app.upstream.fail_token_endpoint(Some(outage));
    let response = app.introspect_as(RESOURCE_ID, RESOURCE_SECRET, &flow.access).await;
    expect_error(response, 503, "temporarily_unavailable", "an outage keeps the grant").await;
    app.upstream.fail_token_endpoint(None);
    upstream_of(flow).await;
    app.clock.advance(61);
    app.upstream.revoke_all_refresh_tokens();
    let refused = app.introspect(&flow.access).await;
    assert!(refused.get("upstream").is_none(), "a refusal ends the credential: {refused}");
    assert_eq!(refused["upstream_error"], "interaction_required", "and asks for the person: {refused}");
}

#[tokio::test]
async fn slack_user_tokens_with_rotation() {
    let flow = authorize(Kind::Slack, "sam").await;
    assert_eq!(flow.upstream.get("user_scope").map(String::as_str), Some("repo:read,repo:write"));
    assert!(!flow.upstream.contains_key("scope"), "{:?}", flow.upstream);
    assert!(!flow.upstream.contains_key("code_challenge"), "no PKCE for an app that did not opt in");
    let id = flow.app.upstream.user_id("sam");
    let answer = flow.app.introspect(&flow.access).await;
    assert_eq!(answer["sub"], format!("T0DEV:U{id}"), "a Slack user id is qualified by its workspace");
    let upstream = &answer["upstream"];
    assert!(upstream["access_token"].as_str().unwrap().starts_with("dev_at_"), "the user token, not the bot's");
    assert_eq!(upstream["token_type"], "bearer");
    assert_eq!(upstream["extra"], json!({"team_id": "T0DEV", "api_base_url": "https://slack.com/api"}));
    assert_eq!(upstream["expires_at"].as_i64().unwrap() - flow.app.clock.now_secs(), 120);
    // Slack's rate limit is `ok: false` with status 200: an outage all the same.
    refresh_rotation_outage_refusal(&flow, 429).await;
}

#[tokio::test]
async fn notion_json_basic_token_requests_and_the_user_in_the_answer() {
    let flow = authorize(Kind::Notion, "nia").await;
    assert_eq!(flow.upstream.get("owner").map(String::as_str), Some("user"));
    assert!(!flow.upstream.contains_key("code_challenge"));
    let id = flow.app.upstream.user_id("nia");
    let answer = flow.app.introspect(&flow.access).await;
    assert_eq!(answer["sub"], format!("nu-{id}"));
    let extra = &answer["upstream"]["extra"];
    assert_eq!(extra["workspace_id"], "ws-dev");
    assert_eq!(extra["api_headers"], json!({"Notion-Version": "2022-06-28"}));
    assert_eq!(extra["api_base_url"], "https://api.notion.com/v1");
    // No `expires_in`, and no default configured: the token does not expire for Tether.
    assert!(answer["upstream"].get("expires_at").is_none(), "{answer}");
    assert_eq!(flow.app.upstream.counts().code_exchanges, 1, "one exchange, accepted as JSON with Basic");
}

#[tokio::test]
async fn salesforce_instance_url_and_a_refresh_token_that_is_kept() {
    let flow = authorize(Kind::Salesforce, "sue").await;
    assert!(flow.upstream.contains_key("code_challenge"), "Salesforce takes PKCE");
    let id = flow.app.upstream.user_id("sue");
    let answer = flow.app.introspect(&flow.access).await;
    let base = &flow.app.upstream.base_url;
    assert_eq!(answer["sub"], format!("{base}/id/00Dorg/005{id}"));
    assert_eq!(answer["upstream"]["extra"], json!({"instance_url": format!("{base}/sf-instance")}));
    let expires = answer["upstream"]["expires_at"].as_i64().unwrap() - flow.app.clock.now_secs();
    assert_eq!(expires, 120, "no expires_in: the configured default (default_expires_in)");
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[test]
fn knobs_are_checked_by_name_and_kind() {
    let base = "[providers.p]\nclient_id = \"c\"\n";
    let oauth2 = format!("{base}kind = \"oauth2\"\nauthorize_url = \"https://x/a\"\ntoken_url = \"https://x/t\"\n");
    let github = format!("{base}kind = \"github\"\n");
    for (toml, key, says) in [
        (format!("{github}token_path = \"authed_user\"\n"), "providers.p.token_path", "only to \"oauth2\""),
        (
            format!("{oauth2}userinfo_url = \"https://x/u\"\nuserinfo_body = \"{{}}\"\n"),
            "providers.p.userinfo_body",
            "post",
        ),
        (
            format!("{oauth2}userinfo_url = \"https://x/u\"\nuserinfo_method = \"post\"\nuserinfo_body = \"{{x\"\n"),
            "providers.p.userinfo_body",
            "JSON",
        ),
        (
            format!("{oauth2}identity = \"token_response\"\nextra_values = {{ api_base_url = \"a\" }}\n"),
            "providers.p.extra_values",
            "set by Tether",
        ),
        (
            format!("{oauth2}identity = \"token_response\"\napi_base_url = \"ftp://x\"\n"),
            "providers.p.api_base_url",
            "https",
        ),
        (
            format!("{oauth2}identity = \"token_response\"\napi_headers = {{ Authorization = \"x\" }}\n"),
            "providers.p.api_headers",
            "header",
        ),
        (
            format!("{oauth2}identity = \"token_response\"\nscope_param = \"state\"\n"),
            "providers.p.scope_param",
            "sets itself",
        ),
        (format!("{oauth2}token_body = \"xml\"\n"), "token_body", "xml"),
        (format!("{oauth2}\n"), "providers.p.userinfo_url", "required"),
    ] {
        let errors = config_errors(&toml);
        assert!(errors.contains(key) && errors.contains(says), "{key}: {errors}");
    }
    for (pkce, ok) in [("true", true), ("false", true), ("\"optional\"", true), ("\"off\"", true), ("\"plain\"", false)]
    {
        let errors = config_errors(&format!("{oauth2}userinfo_url = \"https://x/u\"\npkce = {pkce}\n"));
        assert_eq!(!errors.contains("pkce"), ok, "pkce = {pkce}: {errors}");
    }
    for (extra, key, says) in [
        ("revocation_style = \"delete\"\nrevocation_url = \"https://x/r\"\n", "revocation_style", "{refresh_token}"),
        ("revocation_style = \"bearer\"\n", "revocation_style", "needs revocation_url"),
        ("allowed_tenants = [\"a\"]\n", "providers.p.allowed_tenants", "only to \"oidc\""),
        ("userinfo_values = { tenant_id = \"x\" }\n", "providers.p.userinfo_values", "set by Tether"),
        ("extra_call = { url = \"ftp://x\", values = { a = \"0.id\" } }\n", "providers.p.extra_call.url", "https"),
        ("required_scopes = [\"a b\"]\n", "providers.p.required_scopes", "not one scope"),
    ] {
        let errors = config_errors(&format!("{oauth2}userinfo_url = \"https://x/u\"\n{extra}"));
        assert!(errors.contains(key) && errors.contains(says), "{key}: {errors}");
    }
    let oidc = format!("{base}kind = \"oidc\"\nissuer = \"https://login.example/common/v2.0\"\n");
    let errors = config_errors(&format!("{oidc}allowed_tenants = [\"a/b\"]\n"));
    assert!(errors.contains("tenant_claim") && errors.contains("not a tenant id"), "{errors}");
    let errors = config_errors(&format!("{github}refresh_scope = true\n"));
    assert!(errors.contains("providers.p.refresh_scope"), "{errors}");
    // The token answer naming the user makes the user endpoint unnecessary.
    let errors = config_errors(&format!("{oauth2}identity = \"token_response\"\nsubject_field = \"a.b\"\n"));
    assert!(!errors.contains("providers.p"), "{errors}");
}

#[tokio::test]
async fn the_gitlab_preset_from_its_base_url_alone() {
    let app = TestApp::spawn_with(Backend::Redis, options(Kind::GitLab)).await;
    let client = app.register_client("none").await;
    let to = app.go_upstream(&app.browser(), &app.authorize_url(&client, &Pkce::new(), &[])).await;
    assert!(to.starts_with(&format!("{}/oauth/authorize?", app.upstream.base_url)), "{to}");
    let access = app.tokens_for(&client, "gil").await["access_token"].as_str().unwrap().to_owned();
    let extra = &app.introspect(&access).await["upstream"]["extra"];
    assert_eq!(extra["api_base_url"], format!("{}/api/v4", app.upstream.base_url));
    core_flow(&app, "gus").await;
}

#[test]
fn presets_are_checked_by_name_and_their_variables_by_name() {
    let base = "[providers.p]\nclient_id = \"c\"\n";
    for (extra, key, says) in [
        ("preset = \"nowhere\"\n", "providers.p.preset", "tether providers list"),
        ("preset = \"gitlab\"\nvariables = { tenant = \"x\" }\n", "providers.p.variables.tenant", "has: base_url"),
        ("kind = \"oauth2\"\nvariables = { tenant = \"x\" }\n", "providers.p.variables", "preset only"),
        (
            "preset = \"gitlab\"\nvariables = { base_url = \"ftp://git.example\" }\n",
            "providers.p.authorize_url",
            "https",
        ),
        ("preset = \"slack\"\ntoken_pathh = \"x\"\n", "token_pathh", "unknown field"),
    ] {
        let errors = config_errors(&format!("{base}{extra}"));
        assert!(errors.contains(key) && errors.contains(says), "{key}: {errors}");
    }
    let errors =
        config_errors(&format!("{base}preset = \"salesforce\"\nvariables = {{ host = \"test.salesforce.com\" }}\n"));
    assert!(!errors.contains("providers.p"), "{errors}");
}

#[tokio::test]
async fn figma_refreshes_at_its_own_endpoint_and_keeps_the_refresh_token() {
    let flow = authorize(Kind::Figma, "fig").await;
    assert!(!flow.upstream.contains_key("code_challenge"));
    let id = flow.app.upstream.user_id("fig");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], format!("fu-{id}"));
    // The stand-in refuses refresh at the token endpoint: two refreshes prove the refresh URL
    // is used and the kept refresh token still works. Its refusals are Figma's
    // (`{"error": true, ...}`), which must still end the grant.
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[tokio::test]
async fn dropbox_offline_access_and_the_user_from_a_post_endpoint() {
    let flow = authorize(Kind::Dropbox, "dot").await;
    assert_eq!(flow.upstream.get("token_access_type").map(String::as_str), Some("offline"));
    let id = flow.app.upstream.user_id("dot");
    let answer = flow.app.introspect(&flow.access).await;
    assert_eq!(answer["sub"], format!("dbid:{id}"));
    assert_eq!(answer["upstream"]["extra"]["api_base_url"], "https://api.dropboxapi.com/2");
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Dropbox, "dot").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn linear_comma_scopes_and_the_user_from_graphql() {
    let flow = authorize(Kind::Linear, "lin").await;
    assert_eq!(flow.upstream.get("scope").map(String::as_str), Some("read,repo:read,repo:write"));
    assert_eq!(flow.upstream.get("prompt").map(String::as_str), Some("consent"));
    let id = flow.app.upstream.user_id("lin");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], format!("lin-{id}"));
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[tokio::test]
async fn microsoft_multi_tenant_issuer_tenant_and_object_ids() {
    let flow = authorize(Kind::Microsoft, "alice@contoso").await;
    assert_eq!(flow.upstream.get("response_mode").map(String::as_str), Some("query"));
    let scope = flow.upstream.get("scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "offline_access"), "offline_access is always asked: {scope}");
    assert!(flow.upstream.contains_key("code_challenge"));
    let answer = flow.app.introspect(&flow.access).await;
    let (tid, id) = (tenant_id("contoso"), flow.app.upstream.user_id("alice@contoso"));
    // The ID token's issuer is the tenant's, not the `{tenantid}` template discovery names.
    assert_eq!(answer["sub"], format!("{tid}:{}", tenant_id(&format!("oid-{id}"))), "tid+oid");
    let extra = &answer["upstream"]["extra"];
    assert_eq!(extra["tenant_id"], tid.as_str());
    assert_eq!(extra["api_base_url"], "https://graph.microsoft.com/v1.0");
    // Refresh tokens are reissued and the old one still works: both are fine.
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[tokio::test]
async fn microsoft_tenants_outside_the_allow_list_are_turned_away() {
    let mut options = options(Kind::Microsoft);
    let contoso = tenant_id("contoso");
    options.provider = Some(format!(
        "[providers.ms]\npreset = \"microsoft\"\nclient_id = \"tether-dev\"\nclient_secret_file = \"{{dir}}/dev-secret\"\n\
         issuer = \"{{upstream}}/common/v2.0\"\nallowed_tenants = [\"{contoso}\"]"
    ));
    let app = TestApp::spawn_with(Backend::Redis, options).await;
    let client = app.register_client("none").await;
    for (user, admitted) in [("bob@fabrikam", false), ("carol", false), ("alice@contoso", true)] {
        let browser = app.browser();
        let url = app.authorize_url(&client, &Pkce::new(), &[]);
        let upstream_url = app.go_upstream(&browser, &url).await;
        let back = browser.upstream_login(&upstream_url, user, "approve").await;
        let to_client = browser.get(&location(&back)).await;
        assert_eq!(to_client.status(), 302, "{user}");
        let result = query(&location(&to_client));
        if admitted {
            assert!(result.contains_key("code"), "{user}: {result:?}");
        } else {
            assert_eq!(result.get("error").map(String::as_str), Some("access_denied"), "{user}: {result:?}");
            let why = result.get("error_description").unwrap();
            assert!(why.contains("not one this service admits"), "{why}");
        }
    }
}

#[tokio::test]
async fn atlassian_cloud_ids_from_the_call_after_the_exchange_and_rotating_refresh() {
    let flow = authorize(Kind::Atlassian, "ann").await;
    // The stand-in refuses an authorization without audience and prompt.
    assert_eq!(flow.upstream.get("audience").map(String::as_str), Some("api.atlassian.com"));
    assert!(flow.upstream.get("scope").unwrap().contains("offline_access"));
    assert!(!flow.upstream.contains_key("code_challenge"));
    let answer = flow.app.introspect(&flow.access).await;
    let id = flow.app.upstream.user_id("ann");
    assert_eq!(answer["sub"], format!("712020:{id}"));
    let extra = &answer["upstream"]["extra"];
    assert_eq!(extra["cloud_id"], "cloud-1111");
    assert_eq!(extra["site_url"], "https://dev-one.atlassian.net");
    assert_eq!(extra["cloud_ids"], json!(["cloud-1111", "cloud-2222"]), "every site the token reaches");
    assert_eq!(extra["api_base_url"], flow.app.upstream.base_url.as_str());
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[tokio::test]
async fn box_form_credentials_single_use_refresh_and_revocation() {
    let flow = authorize(Kind::Box, "bo").await;
    let id = flow.app.upstream.user_id("bo");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], id.to_string());
    revoked_upstream(&flow).await;
    let flow = authorize(Kind::Box, "bo").await;
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[tokio::test]
async fn hubspot_token_info_in_the_path_kept_refresh_token_and_delete_revocation() {
    let flow = authorize(Kind::HubSpot, "hu").await;
    let id = flow.app.upstream.user_id("hu");
    let answer = flow.app.introspect(&flow.access).await;
    assert_eq!(answer["sub"], format!("62515:{id}"), "hub_id+user_id");
    assert_eq!(answer["upstream"]["extra"]["hub_id"], 62515);
    assert_eq!(answer["upstream"]["extra"]["hub_domain"], "dev.hubspot.example");
    revoked_upstream(&flow).await;
    let flow = authorize(Kind::HubSpot, "hu").await;
    refresh_rotation_outage_refusal(&flow, 503).await;
}

#[tokio::test]
async fn zoom_basic_only_api_url_and_revocation() {
    let flow = authorize(Kind::Zoom, "zo").await;
    assert_eq!(flow.upstream.get("code_challenge_method").map(String::as_str), Some("S256"));
    let id = flow.app.upstream.user_id("zo");
    let answer = flow.app.introspect(&flow.access).await;
    assert_eq!(answer["sub"], format!("zm{id}"));
    let extra = &answer["upstream"]["extra"];
    assert_eq!(extra["api_url"], "https://api-eu.zoom.us");
    assert_eq!(extra["account_id"], "zacct-dev");
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Zoom, "zo").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn asana_nested_user_kept_refresh_token_and_revocation() {
    let flow = authorize(Kind::Asana, "as").await;
    let id = flow.app.upstream.user_id("as");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], format!("{id}00"));
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Asana, "as").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn discord_forms_without_pkce_and_revocation() {
    let flow = authorize(Kind::Discord, "di").await;
    assert!(!flow.upstream.contains_key("code_challenge"));
    let id = flow.app.upstream.user_id("di");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], format!("8{id}"));
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Discord, "di").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn okta_offline_access_and_scopes_on_refresh() {
    let flow = authorize(Kind::Okta, "ok").await;
    assert!(flow.upstream.get("scope").unwrap().contains("offline_access"));
    let id = flow.app.upstream.user_id("ok");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], id.to_string());
    // The stand-in refuses a refresh without `scope`, as Okta does.
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Okta, "ok").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn auth0_audience_and_a_trailing_slash_issuer() {
    let flow = authorize(Kind::Auth0, "au").await;
    assert_eq!(flow.upstream.get("audience").map(String::as_str), Some(AUTH0_AUDIENCE));
    let id = flow.app.upstream.user_id("au");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], id.to_string());
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Auth0, "au").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn keycloak_realm_issuer_from_the_preset_and_offline_tokens_without_a_refresh_limit() {
    let flow = authorize(Kind::Keycloak, "kc").await;
    assert!(flow.upstream.get("scope").unwrap().contains("offline_access"));
    let id = flow.app.upstream.user_id("kc");
    assert_eq!(flow.app.introspect(&flow.access).await["sub"], id.to_string());
    // `refresh_expires_in: 0` is "no limit" (an offline token): read as a lifetime of zero,
    // the first refresh would be refused and the grant ended.
    refresh_rotation_outage_refusal(&flow, 503).await;
    let flow = authorize(Kind::Keycloak, "kc").await;
    revoked_upstream(&flow).await;
}

#[tokio::test]
async fn bearer_revocation_for_linear() {
    let flow = authorize(Kind::Linear, "li").await;
    revoked_upstream(&flow).await;
}
