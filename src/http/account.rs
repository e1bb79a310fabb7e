//! `/account`: the signed-in person's connected apps, and the forms that take access back
//! (see `oauth::account`). Reads need the browser's session; every POST also needs the
//! session's form token and a same-origin request.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::oauth::OAuthError;
use crate::oauth::account::{self, SessionRecord};
use crate::oauth::error::ErrorCode;

use super::AppState;
use super::authorize::{flow_error, redirect, with_binding};
use super::pages::account as pages;

/// The signed-in session and its cookie value.
struct Signed {
    record: SessionRecord,
    cookie: String,
}

impl Signed {
    fn who(&self) -> &str {
        account::who(&self.record)
    }
}

fn unavailable(e: &OAuthError) -> HttpResponse {
    tracing::warn!(error = %e.description, "account page failed");
    let (status, message) = match e.code {
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, format!("Nothing was removed: {}.", e.description)),
        ErrorCode::TemporarilyUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Tether cannot reach its store right now. Try again in a moment.".to_owned(),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong. Try again in a moment.".to_owned()),
    };
    pages::problem_page(status, "Something went wrong", &message)
}

async fn signed_in(req: &HttpRequest, state: &AppState) -> Result<Option<Signed>, HttpResponse> {
    let Some(cookie) = state.session(req) else { return Ok(None) };
    let binding = state.binding(req);
    let origin = super::origin(req, state);
    let record = account::session(state.broker.flow(&origin), Some(&cookie), binding.as_deref(), state.clock.now())
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(record.map(|record| Signed { record, cookie }))
}

fn token(state: &AppState, signed: &Signed) -> String {
    account::form_token(state.broker.vault.keys(), &signed.cookie)
}

/// `GET /account`.
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let origin = super::origin(&req, &state);
    let flow = state.broker.flow(&origin);
    let signed = match signed_in(&req, &state).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return pages::sign_in_page(&account::sign_in_choices(flow)),
        Err(page) => return page,
    };
    match account::view(flow, state.broker.admin(), &signed.record).await {
        Ok(view) => pages::account_page(&view, &token(&state, &signed)),
        Err(e) => unavailable(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInParams {
    provider: Option<String>,
}

/// `GET /account/sign-in?provider=...`: to the provider, and back to `/account`.
pub async fn sign_in(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let origin = super::origin(&req, &state);
    let flow = state.broker.flow(&origin);
    let provider = serde_urlencoded::from_str::<SignInParams>(req.query_string()).ok().and_then(|p| p.provider);
    let Some(provider) = provider.or_else(|| flow.login.map(|l| l.id().to_owned())) else {
        return pages::sign_in_page(&account::sign_in_choices(flow));
    };
    // The same browser binding as the consent flow: the session is bound to it.
    let presented = state.binding(&req);
    match account::start_sign_in(flow, &provider, presented.as_deref(), state.clock.now()).await {
        Ok((url, binding)) => with_binding(redirect(url.as_str(), StatusCode::FOUND), &state, binding),
        Err(e) => flow_error(e),
    }
}

/// Only forms of Tether's own pages: the browser's `Sec-Fetch-Site`, when sent, must say so,
/// and so must `Origin`, when it names one (Tether's pages send no referrer, so a browser may
/// send `Origin: null` for them). The form token is the check that does not depend on the
/// browser.
fn same_origin(req: &HttpRequest, state: &AppState) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let site_ok = header("sec-fetch-site").is_none_or(|s| s == "same-origin" || s == "none");
    let issuer = url::Url::parse(&state.broker.issuer).map(|u| u.origin().ascii_serialization());
    let origin_ok = header("origin").filter(|o| *o != "null").is_none_or(|o| issuer.as_deref().is_ok_and(|i| i == o));
    site_ok && origin_ok
}

/// A POST's checks: same origin, signed in, the session's form token. The form's fields.
async fn checked<T: for<'de> Deserialize<'de>>(
    req: &HttpRequest,
    state: &AppState,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<(Signed, T), HttpResponse> {
    let body = body.map_err(|e| super::pages::body_error(&e))?;
    if !same_origin(req, state) {
        return Err(pages::problem_page(
            StatusCode::FORBIDDEN,
            "Not sent from this site",
            "This form was not sent from Tether's own page, so nothing was done.",
        ));
    }
    let Some(signed) = signed_in(req, state).await? else {
        return Err(pages::problem_page(
            StatusCode::FORBIDDEN,
            "Signed out",
            "Your sign-in has ended, so nothing was done. Sign in again and repeat it.",
        ));
    };
    #[derive(Deserialize)]
    struct Token {
        form_token: Option<String>,
    }
    let token = serde_urlencoded::from_bytes::<Token>(&body).ok().and_then(|t| t.form_token);
    if !token.is_some_and(|t| account::form_token_ok(state.broker.vault.keys(), &signed.cookie, &t)) {
        return Err(pages::problem_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form is from an earlier sign-in or another site, so nothing was done. Open the page again.",
        ));
    }
    let form = serde_urlencoded::from_bytes::<T>(&body).map_err(|_| {
        pages::problem_page(StatusCode::BAD_REQUEST, "Form not understood", "The form is malformed; nothing was done.")
    })?;
    Ok((signed, form))
}

/// For the confirmation pages: signed in, or back to `/account` to sign in.
async fn require(req: &HttpRequest, state: &AppState) -> Result<Signed, HttpResponse> {
    match signed_in(req, state).await? {
        Some(signed) => Ok(signed),
        None => Err(redirect("/account", StatusCode::SEE_OTHER)),
    }
}

#[derive(Debug, Deserialize)]
pub struct ClientForm {
    client_id: Option<String>,
}

/// `GET /account/remove?client_id=...`: what stops working.
pub async fn confirm_remove(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let signed = match require(&req, &state).await {
        Ok(signed) => signed,
        Err(page) => return page,
    };
    let client = serde_urlencoded::from_str::<ClientForm>(req.query_string()).ok().and_then(|f| f.client_id);
    let origin = super::origin(&req, &state);
    let view = match account::view(state.broker.flow(&origin), state.broker.admin(), &signed.record).await {
        Ok(view) => view,
        Err(e) => return unavailable(&e),
    };
    match view.clients.iter().find(|c| Some(&c.client_id) == client.as_ref()) {
        Some(card) => pages::confirm_remove(card, signed.who(), &token(&state, &signed)),
        None => pages::problem_page(
            StatusCode::NOT_FOUND,
            "No such application",
            "That application has no access on your behalf (it may have been removed already).",
        ),
    }
}

/// `POST /account/remove`.
pub async fn remove(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (signed, form) = match checked::<ClientForm>(&req, &state, body).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let Some(client_id) = form.client_id else {
        return pages::problem_page(StatusCode::BAD_REQUEST, "Form not understood", "No application was named.");
    };
    let origin = super::origin(&req, &state);
    let now = state.clock.now();
    match account::remove_client(state.broker.admin(), &signed.record.user, &client_id, &origin, now).await {
        Ok(removed) => pages::removed_page("Access removed", &removed, None, signed.who(), &token(&state, &signed)),
        Err(e) => unavailable(&e),
    }
}

/// `GET /account/remove-all`.
pub async fn confirm_remove_all(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let signed = match require(&req, &state).await {
        Ok(signed) => signed,
        Err(page) => return page,
    };
    let origin = super::origin(&req, &state);
    match account::view(state.broker.flow(&origin), state.broker.admin(), &signed.record).await {
        Ok(view) if view.clients.is_empty() => redirect("/account", StatusCode::SEE_OTHER),
        Ok(view) => pages::confirm_remove_all(&view, &token(&state, &signed)),
        Err(e) => unavailable(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct NoFields {}

/// `POST /account/remove-all`.
pub async fn remove_all(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (signed, _) = match checked::<NoFields>(&req, &state, body).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let origin = super::origin(&req, &state);
    match account::remove_all(state.broker.admin(), &signed.record.user, &origin, state.clock.now()).await {
        Ok(removed) => pages::removed_page("All access removed", &removed, None, signed.who(), &token(&state, &signed)),
        Err(e) => unavailable(&e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ConnectionForm {
    connection: Option<String>,
    /// A checked box sends `on`; an unchecked one sends nothing.
    upstream: Option<String>,
}

fn no_such_connection() -> HttpResponse {
    pages::problem_page(StatusCode::NOT_FOUND, "No such connection", "You have no such connected account.")
}

/// The signed-in person's own connection `id`, or the page saying there is none.
async fn own_connection(
    req: &HttpRequest,
    state: &AppState,
    signed: &Signed,
    id: Option<&str>,
) -> Result<account::ConnectionCard, HttpResponse> {
    let Some(id) = id else { return Err(no_such_connection()) };
    let origin = super::origin(req, state);
    match account::connection(state.broker.flow(&origin), state.broker.admin(), &signed.record, id).await {
        Ok(Some(connection)) => Ok(connection),
        Ok(None) => Err(no_such_connection()),
        Err(e) => Err(unavailable(&e)),
    }
}

/// `GET /account/disconnect?connection=...`.
pub async fn confirm_disconnect(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let signed = match require(&req, &state).await {
        Ok(signed) => signed,
        Err(page) => return page,
    };
    let id = serde_urlencoded::from_str::<ConnectionForm>(req.query_string()).ok().and_then(|f| f.connection);
    match own_connection(&req, &state, &signed, id.as_deref()).await {
        Ok(connection) => pages::confirm_disconnect(&connection, signed.who(), &token(&state, &signed)),
        Err(page) => page,
    }
}

/// `POST /account/reconnect`: the person connects one of their accounts that needs them
/// (refused, expired, or made for them and not connected yet) from the account page.
pub async fn reconnect(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (signed, form) = match checked::<ConnectionForm>(&req, &state, body).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let connection = match own_connection(&req, &state, &signed, form.connection.as_deref()).await {
        Ok(connection) => connection,
        Err(page) => return page,
    };
    // The session is bound to this browser's binding: the sign-in continues in it.
    let Some(binding) = state.binding(&req) else {
        return pages::problem_page(StatusCode::FORBIDDEN, "Signed out", "Sign in again and repeat it.");
    };
    let origin = super::origin(&req, &state);
    let flow = state.broker.flow(&origin);
    let user = &signed.record.user;
    match crate::oauth::reconnect::start_for_owner(flow, user, &connection.id, &binding, state.clock.now()).await {
        Ok(Some(url)) => redirect(url.as_str(), StatusCode::SEE_OTHER),
        // Not a connection (a grant made before connections), or not theirs.
        Ok(None) => no_such_connection(),
        Err(e) => flow_error(e),
    }
}

/// `POST /account/disconnect`.
pub async fn disconnect(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (signed, form) = match checked::<ConnectionForm>(&req, &state, body).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let Some(id) = form.connection else {
        return pages::problem_page(StatusCode::BAD_REQUEST, "Form not understood", "No connection was named.");
    };
    let connection = match own_connection(&req, &state, &signed, Some(&id)).await {
        Ok(connection) => connection,
        Err(page) => return page,
    };
    let origin = super::origin(&req, &state);
    let admin = state.broker.admin();
    let upstream = form.upstream.as_deref() == Some("on");
    match account::disconnect(admin, &signed.record, &connection, upstream, &origin, state.clock.now()).await {
        Ok(removed) => pages::removed_page(
            &format!("{} disconnected", connection.provider_name),
            &removed,
            Some((&connection.provider_name, connection.provider_page.as_deref())),
            signed.who(),
            &token(&state, &signed),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `GET /account/logout`: the button.
pub async fn confirm_logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    match require(&req, &state).await {
        Ok(signed) => pages::confirm_sign_out(signed.who(), &token(&state, &signed)),
        Err(page) => page,
    }
}

/// `POST /account/logout`: ends the session in the store and drops the cookie.
pub async fn logout(
    req: HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (signed, _) = match checked::<NoFields>(&req, &state, body).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let origin = super::origin(&req, &state);
    if let Err(e) = account::sign_out(state.broker.flow(&origin), &signed.cookie).await {
        return unavailable(&e);
    }
    let mut response = pages::signed_out_page();
    if let Err(e) = response.add_cookie(&state.session_cookie_removal()) {
        tracing::error!(error = %e, "cannot drop the session cookie");
    }
    response
}
