//! The HTML Tether shows people: the consent page, error pages and the account page, in one
//! layout with one stylesheet (served by Tether itself, `/assets/tether.css`).
//!
//! Every client-supplied string (names, URIs, scopes) is escaped by `maud`. Pages carry no
//! script, load nothing from elsewhere, refuse to be framed, and are never cached.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder};
use maud::{DOCTYPE, Markup, html};

use crate::oauth::flow::{ConsentView, PageStatus};

pub mod account;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The stylesheet every page links; its path carries a digest of its content, so it can be
/// cached for good and a new version is fetched at once.
pub const STYLESHEET: &str = include_str!("tether.css");
/// Headers every page and browser redirect carries (MCP security best practices, RFC 9700 §4.16).
pub fn browser_headers(response: &mut HttpResponseBuilder) {
    response.insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)));
    response.insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    response.insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")));
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    response.insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")));
}

/// `/assets/tether.css?v=<digest>`: changes whenever the stylesheet does.
pub fn stylesheet_path() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let digest = crate::crypto::hash::digest(STYLESHEET);
        format!("/assets/tether.css?v={}", &digest[..12])
    })
}

/// `GET /assets/tether.css`.
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .content_type("text/css; charset=utf-8")
        .body(STYLESHEET)
}

/// The frame every page shares: Tether's name, who is signed in (with the sign-out button),
/// and the page's own content as the main landmark.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The signed-in person's name and the form token for signing out.
    pub signed_in: Option<(&'a str, &'a str)>,
}

pub fn render(status: StatusCode, frame: &Frame<'_>, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (frame.title) " · Tether" }
                link rel="stylesheet" href=(stylesheet_path());
            }
            body {
                header.top {
                    a.brand href="/account" { "Tether" }
                    @if let Some((who, token)) = frame.signed_in {
                        div.who {
                            span { "Signed in as " strong { (who) } }
                            form method="post" action="/account/logout" {
                                input type="hidden" name="form_token" value=(token);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    let mut response = HttpResponse::build(status);
    browser_headers(&mut response);
    response.content_type("text/html; charset=utf-8").body(markup.into_string())
}

fn page(status: StatusCode, title: &str, body: Markup) -> HttpResponse {
    render(status, &Frame { title, signed_in: None }, body)
}

/// A browser form body that could not be read (too large, cut off): a page with its status.
pub fn body_error(error: &actix_web::Error) -> HttpResponse {
    let status = error.as_response_error().status_code();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "The submitted form is too large."
    } else {
        "The submitted form could not be read."
    };
    let mut response = error_page(PageStatus::BadRequest, message);
    *response.status_mut() = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
    response
}

pub fn error_page(status: PageStatus, message: &str) -> HttpResponse {
    let status = match status {
        PageStatus::BadRequest => StatusCode::BAD_REQUEST,
        PageStatus::Forbidden => StatusCode::FORBIDDEN,
        PageStatus::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        PageStatus::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        PageStatus::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
    };
    page(
        status,
        "Authorization failed",
        html! {
            h1 { "Authorization failed" }
            p { (message) }
            p.muted { "You can close this window." }
        },
    )
}

/// A page that tells the user how something ended (the connect flow's last step).
pub fn message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(
        status,
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p.muted { "You can close this window. You can see and remove what you connected at any time on "
                a href="/account" { "your connected apps page" } "." }
        },
    )
}

pub fn consent_page(view: &ConsentView) -> HttpResponse {
    let name = view.client_name.as_deref().unwrap_or("An unnamed application");
    page(
        StatusCode::OK,
        "Authorize access",
        html! {
            @if view.connect {
            h1 { "Connect " (view.provider_name) " to " (view.resource_name) "?" }
            div.box {
                p { "The MCP server " strong { (view.resource_name) } " asks to act at " strong { (view.provider_name) }
                    " on your behalf, in the conversation that gave you this link." }
                p.muted { "MCP server: " code { (view.resource_uri) } }
                @if !view.scopes.is_empty() {
                    p { "It asks to:" }
                    ul { @for (scope, description) in &view.scopes {
                        li { code { (scope) } @if let Some(d) = description { " — " (d) } }
                    } }
                }
            }
            } @else {
            h1 { "Authorize " (name) "?" }
            @if let Some(who) = &view.signed_in_as {
            p.muted { "Signed in to Tether as " strong { (who) } "." }
            }
            div.box {
                p { strong { (name) } " wants to use " strong { (view.resource_name) } " on your behalf." }
                p.muted { "MCP server: " code { (view.resource_uri) } }
                @if let Some(host) = &view.document_host {
                p.muted { "Identified by a metadata document published by " strong { (host) } ": " code { (view.client_id) } }
            } @else {
                p.muted { "Application id: " code { (view.client_id) } }
            }
                @if let Some(account) = &view.connected_as {
                p { "It will act as your " strong { (view.provider_name) } " account " strong { (account) }
                    ", already connected: after you approve, the application's access is sent to "
                    strong { (view.redirect_host) } "." }
                } @else {
                p { "After you approve, you sign in at " strong { (view.provider_name) } " and the application's access is sent to "
                    strong { (view.redirect_host) } "." }
                }
                @if !view.scopes.is_empty() {
                    p { "It asks to:" @if view.widening { " (including what you approved for it before)" } }
                    ul { @for (scope, description) in &view.scopes {
                        li { code { (scope) } @if let Some(d) = description { " — " (d) } }
                    } }
                }
                @if !view.upstream_scopes.is_empty() {
                    p.muted { (view.provider_name) " permissions requested: "
                        @for (i, s) in view.upstream_scopes.iter().enumerate() { @if i > 0 { ", " } code { (s) } } }
                }
            }
            }
            @if view.connect {
            p.warning { "Approve only if you asked for this in your conversation just now: anyone can send you such "
                "a link, and whoever holds that conversation gets this access." }
            } @else if view.local_only {
            p.warning { "This application receives the authorization on this computer (localhost). Anyone can claim "
                "such an application's name: approve only if you started " (name) " yourself just now." }
        } @else {
            p.muted { "Only approve if you started this from " (name) " and expected to be sent here." }
        }
            form.actions method="post" action="/consent" {
                input type="hidden" name="consent" value=(view.consent_id);
                button.primary type="submit" name="decision" value="approve" { "Approve" }
                button type="submit" name="decision" value="deny" { "Deny" }
            }
            p.muted { "You can see and remove this access later on " a href="/account" { "your connected apps page" } "." }
        },
    )
}
