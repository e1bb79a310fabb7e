//! The account page ("Connected apps") and the pages around it: sign-in, confirmations, the
//! result of a removal, signed out. Every form posts a form token (CSRF) and works without
//! script.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use maud::{Markup, html};

use crate::clock::UnixTime;
use crate::oauth::account::{AccountView, ClientCard, ConnectionCard, Registration, Removed};
use crate::oauth::admin::State;
use crate::oauth::revocation::UpstreamResult;

use super::{Frame, render};

/// `2026-12-05 14:03 UTC`, in a `<time>` element.
fn when(at: UnixTime) -> Markup {
    let full = crate::audit::rfc3339(at.saturating_mul(1000));
    html! { time datetime=(full) { (readable(&full)) } }
}

fn readable(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
        _ => rfc3339.to_owned(),
    }
}

fn chip(state: State) -> Markup {
    let (class, text) = match state {
        State::Active => ("active", "Active"),
        State::NeedsReauth => ("needs_reauth", "Needs re-authorization"),
        State::Expired => ("expired", "Expired"),
        State::Revoked => ("revoked", "Removed"),
    };
    html! { span class={ "chip " (class) } { (text) } }
}

fn connection_chip(status: Option<&str>) -> Markup {
    let (class, text) = match status {
        Some("needs_reauth") => ("needs_reauth", "Needs re-authorization"),
        Some("waiting") => ("needs_reauth", "Not connected yet"),
        Some("expired") => ("expired", "Expired"),
        Some("ended") => ("ended", "Ended"),
        _ => ("active", "Active"),
    };
    html! { span class={ "chip " (class) } { (text) } }
}

/// Whether the client is known to be who it says: the badge and the line under the name.
fn registration(card: &ClientCard) -> Markup {
    match &card.registration {
        Registration::Dynamic { redirect_host } => html! {
            span.badge.unverified { "Not verified" }
            p.muted { "Registered itself with Tether: anyone can use this name."
                @if let Some(host) = redirect_host { " Its access goes to " strong { (host) } "." } }
        },
        Registration::Document { host } => html! {
            span.badge.unverified { "Not verified" }
            p.muted { "Identified by a document published by " strong { (host) } "." }
        },
        Registration::PreRegistered => html! {
            span.badge.verified { "Pre-registered" }
            p.muted { "Set up by your administrator." }
        },
        Registration::Unknown => html! {
            span.badge.unverified { "Not verified" }
            p.muted { "How it registered was not recorded." }
        },
    }
}

fn client_name(card: &ClientCard) -> &str {
    card.name.as_deref().unwrap_or("An unnamed application")
}

fn client_card(card: &ClientCard) -> Markup {
    let heading = format!("client-{}", crate::crypto::hash::digest(&card.client_id).get(..10).unwrap_or_default());
    html! {
        section.card.client aria-labelledby=(heading) {
            header {
                h3 id=(heading) { (client_name(card)) }
                (chip(card.status))
            }
            (registration(card))
            dl {
                dt { "Connected on" } dd { (when(card.connected_at)) }
                dt { "Last used" }
                dd {
                    @match card.last_used_at {
                        Some(at) => { (when(at)) @if let Some(by) = &card.last_used_by { " by " (by) } }
                        None => { "Not yet" }
                    }
                }
                dt { "Application id" } dd { code { (card.client_id) } }
            }
            @for server in &card.servers {
                div.server {
                    p { "Reaches " strong { (server.resource_name) }
                        @if let Some(account) = &server.account { " as your " (server.provider_name) " account " strong { (account) } }
                        @else { " with your " (server.provider_name) " account" }
                        " " (chip(server.status)) }
                    @if !server.scopes.is_empty() {
                        ul { @for (scope, description) in &server.scopes {
                            li { @match description { Some(d) => { (d) " (" code { (scope) } ")" } None => { code { (scope) } } } }
                        } }
                    }
                    @if !server.upstream_scopes.is_empty() {
                        p.muted { (server.provider_name) " permissions: "
                            @for (i, s) in server.upstream_scopes.iter().enumerate() { @if i > 0 { ", " } code { (s) } } }
                    }
                }
            }
            div.actions {
                a.button.danger href={ "/account/remove?client_id=" (urlencode(&card.client_id)) } {
                    "Remove access" span.visually-hidden { " of " (client_name(card)) }
                }
            }
        }
    }
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn connection_card(connection: &ConnectionCard, form_token: &str) -> Markup {
    let waiting = connection.status == Some("waiting");
    let needs_person = matches!(connection.status, Some("needs_reauth" | "expired" | "waiting"));
    html! {
        section.card.connection {
            header {
                h3 { (connection.provider_name) @if let Some(account) = &connection.account { ": " (account) } }
                (connection_chip(connection.status))
            }
            dl {
                @if let Some(at) = connection.connected_at { dt { "Connected on" } dd { (when(at)) } }
                dt { "Used by" } dd { (connection.active_grants) " authorization" @if connection.active_grants != 1 { "s" } }
                @if !connection.scope.is_empty() {
                    dt { "Permissions" }
                    dd { @for (i, s) in connection.scope.iter().enumerate() { @if i > 0 { ", " } code { (s) } } }
                }
            }
            div.actions {
                @if needs_person {
                    form method="post" action="/account/reconnect" {
                        input type="hidden" name="connection" value=(connection.id);
                        input type="hidden" name="form_token" value=(form_token);
                        button.primary type="submit" {
                            @if waiting { "Connect " } @else { "Connect again to " } (connection.provider_name)
                        }
                    }
                }
                a.button href={ "/account/disconnect?connection=" (urlencode(&connection.id)) } {
                    "Disconnect " (connection.provider_name)
                }
                @if let Some(page) = &connection.provider_page {
                    a href=(page) rel="noreferrer" { "Your apps at " (connection.provider_name) }
                }
            }
        }
    }
}

/// The list: one card per client, the connections, recent activity.
pub fn account_page(view: &AccountView, token: &str) -> HttpResponse {
    let frame = Frame { title: "Connected apps", signed_in: Some((view.who(), token)) };
    render(
        StatusCode::OK,
        &frame,
        html! {
            h1 { "Connected apps" }
            p { "These applications can use MCP servers on your behalf through Tether. Remove what you no longer use." }
            @if view.clients.is_empty() {
                p.box { "No application has access on your behalf." }
            } @else {
                h2 { "Applications" }
                @for card in &view.clients { (client_card(card)) }
                div.actions {
                    a.button href="/account/remove-all" { "Remove all" }
                }
            }
            @if !view.connections.is_empty() {
                h2 { "Your accounts at other services" }
                p.muted { "The applications above act through these accounts. Disconnecting one ends every application's access through it." }
                @for connection in &view.connections { (connection_card(connection, token)) }
            }
            h2 { "Recent activity" }
            @if view.activity.is_empty() {
                p.muted { "Nothing recorded yet." }
            } @else {
                ol.activity {
                    @for item in &view.activity {
                        li { time datetime=(item.time) { (readable(&item.time)) } (item.what) }
                    }
                }
            }
        },
    )
}

/// Not signed in: how to sign in.
pub fn sign_in_page(choices: &[(String, String)]) -> HttpResponse {
    render(
        StatusCode::OK,
        &Frame { title: "Sign in", signed_in: None },
        html! {
            h1 { "See your connected apps" }
            p { "Sign in to see which applications can use MCP servers on your behalf, and to remove their access." }
            @if choices.is_empty() {
                p.box { "No sign-in is configured on this server." }
            } @else {
                div.actions {
                    @for (id, name) in choices {
                        a.button.primary href={ "/account/sign-in?provider=" (urlencode(id)) } { "Sign in with " (name) }
                    }
                }
                @if choices.len() > 1 {
                    p.muted { "Each account shows the applications that act through it." }
                }
            }
        },
    )
}

/// "Remove access" for one client: what stops working, then the button.
pub fn confirm_remove(card: &ClientCard, who: &str, token: &str) -> HttpResponse {
    let name = client_name(card);
    render(
        StatusCode::OK,
        &Frame { title: "Remove access", signed_in: Some((who, token)) },
        html! {
            h1 { "Remove access of " (name) "?" }
            div.box {
                p { strong { (name) } " will no longer be able to use:" }
                ul { @for server in &card.servers {
                    li { (server.resource_name) @if let Some(account) = &server.account { " (as " (server.provider_name) " " (account) ")" } }
                } }
                p { "Its tokens stop working at once. To use these servers again it must ask you to approve it again." }
                p.muted { "Data it already fetched is not deleted: Tether cannot reach into the application." }
            }
            form.actions method="post" action="/account/remove" {
                input type="hidden" name="form_token" value=(token);
                input type="hidden" name="client_id" value=(card.client_id);
                button.danger type="submit" { "Remove access" }
                a.button href="/account" { "Cancel" }
            }
        },
    )
}

/// "Remove all".
pub fn confirm_remove_all(view: &AccountView, token: &str) -> HttpResponse {
    render(
        StatusCode::OK,
        &Frame { title: "Remove all access", signed_in: Some((view.who(), token)) },
        html! {
            h1 { "Remove the access of every application?" }
            div.box {
                p { "These applications will no longer be able to act on your behalf:" }
                ul { @for card in &view.clients { li { (client_name(card)) } } }
                p { "Their tokens stop working at once." }
                p.muted { "Data they already fetched is not deleted." }
            }
            form.actions method="post" action="/account/remove-all" {
                input type="hidden" name="form_token" value=(token);
                button.danger type="submit" { "Remove all" }
                a.button href="/account" { "Cancel" }
            }
        },
    )
}

/// "Disconnect GitHub": every grant on the connection, with the upstream revocation option.
pub fn confirm_disconnect(connection: &ConnectionCard, who: &str, token: &str) -> HttpResponse {
    let provider = &connection.provider_name;
    render(
        StatusCode::OK,
        &Frame { title: "Disconnect", signed_in: Some((who, token)) },
        html! {
            h1 { "Disconnect " (provider) "?" }
            div.box {
                p { "Every application that acts through your " (provider) " account "
                    @if let Some(account) = &connection.account { strong { (account) } " " }
                    "loses that access (" (connection.active_grants) " authorization" @if connection.active_grants != 1 { "s" } ")." }
                p.muted { "Data already fetched is not deleted." }
            }
            form method="post" action="/account/disconnect" {
                input type="hidden" name="form_token" value=(token);
                input type="hidden" name="connection" value=(connection.id);
                label.check {
                    input type="checkbox" name="upstream" value="on" checked[connection.revokes_upstream];
                    span { "Also revoke Tether's access at " (provider)
                        @if !connection.revokes_upstream { " (this server is not set up to do so; remove it at " (provider) " yourself)" } }
                }
                div.actions {
                    button.danger type="submit" { "Disconnect " (provider) }
                    a.button href="/account" { "Cancel" }
                }
            }
            @if let Some(page) = &connection.provider_page {
                p.muted { "You can also see and remove Tether at " a href=(page) rel="noreferrer" { (provider) "'s own page" } "." }
            }
        },
    )
}

/// What a removal did, including at the provider.
pub fn removed_page(
    title: &str,
    removed: &Removed,
    provider: Option<(&str, Option<&str>)>,
    who: &str,
    token: &str,
) -> HttpResponse {
    let (provider_name, page) = provider.unwrap_or(("the provider", None));
    let upstream = match removed.upstream {
        UpstreamResult::Revoked => format!("Tether's access at {provider_name} was revoked too."),
        UpstreamResult::Failed => format!(
            "{provider_name} could not be reached to revoke Tether's access there; Tether no longer uses it. You can remove it at {provider_name} yourself."
        ),
        UpstreamResult::Unsupported => {
            format!(
                "This server does not revoke at {provider_name}; Tether no longer uses its access. You can remove it at {provider_name} yourself."
            )
        }
        UpstreamResult::Skipped => {
            "Your accounts at other services stay connected where other applications still use them.".to_owned()
        }
    };
    render(
        StatusCode::OK,
        &Frame { title, signed_in: Some((who, token)) },
        html! {
            h1 { (title) }
            p.notice role="status" {
                (removed.ended) " authorization" @if removed.ended != 1 { "s" } " ended. " (upstream)
            }
            @if let Some(page) = page {
                p { a href=(page) rel="noreferrer" { "Your apps at " (provider_name) } }
            }
            p { a href="/account" { "Back to your connected apps" } }
        },
    )
}

pub fn signed_out_page() -> HttpResponse {
    render(
        StatusCode::OK,
        &Frame { title: "Signed out", signed_in: None },
        html! {
            h1 { "Signed out" }
            p { "You are signed out of Tether in this browser. Applications you approved keep their access until you remove it." }
            p { a href="/account" { "Sign in again" } }
        },
    )
}

/// A page the account area answers with when something is wrong (expired session, a form
/// from elsewhere, nothing to remove).
pub fn problem_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    render(
        status,
        &Frame { title, signed_in: None },
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/account" { "Back to your connected apps" } }
        },
    )
}

/// `GET /account/logout`: the button (signing out is a POST with the form token).
pub fn confirm_sign_out(who: &str, token: &str) -> HttpResponse {
    render(
        StatusCode::OK,
        &Frame { title: "Sign out", signed_in: Some((who, token)) },
        html! {
            h1 { "Sign out of Tether?" }
            form.actions method="post" action="/account/logout" {
                input type="hidden" name="form_token" value=(token);
                button.primary type="submit" { "Sign out" }
                a.button href="/account" { "Cancel" }
            }
        },
    )
}
