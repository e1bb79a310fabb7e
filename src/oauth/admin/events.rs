//! The audit trail as the admin API reads it: newest first, filtered, in pages.

use serde::Serialize;

use crate::clock::UnixTime;

use super::super::error::OAuthError;
use super::{AdminContext, MAX_PAGE};

/// Audit events, newest first, that match a query.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub types: Vec<crate::audit::EventType>,
    pub user: Option<String>,
    pub grant_id: Option<String>,
    pub client_id: Option<String>,
    /// Only events at or after this time (seconds).
    pub since: Option<UnixTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventPage {
    pub events: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of events matching `query`, continuing before `page_token` (a stream position).
pub async fn events(
    ctx: AdminContext<'_>,
    query: &EventQuery,
    page_size: usize,
    page_token: Option<&str>,
) -> Result<EventPage, OAuthError> {
    let page_size = page_size.clamp(1, MAX_PAGE);
    if let Some(token) = page_token {
        let valid = token.split_once('-').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        });
        if !valid {
            return Err(OAuthError::invalid_request("page_token is not one this listing handed out"));
        }
    }
    let mut before = page_token.map(str::to_owned);
    let mut out = Vec::new();
    // Reads at most this many stored events per call, so a selective query cannot hold the
    // store for long; the page token lets the caller go on.
    let mut budget = 20 * MAX_PAGE;
    loop {
        let batch = ctx.events.events(before.as_deref(), page_size.max(100)).await?;
        let exhausted = batch.is_empty();
        for stored in batch {
            budget = budget.saturating_sub(1);
            before = Some(stored.id.clone());
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&stored.json) else { continue };
            let time = event["time"].as_str().unwrap_or_default().to_owned();
            if query
                .since
                .is_some_and(|since| time.as_str() < crate::audit::rfc3339(since.saturating_mul(1000)).as_str())
            {
                return Ok(EventPage { events: out, next_page_token: None });
            }
            if matches_event(&event, query) {
                out.push(event);
                if out.len() == page_size {
                    return Ok(EventPage { events: out, next_page_token: before });
                }
            }
            if budget == 0 {
                return Ok(EventPage { events: out, next_page_token: before });
            }
        }
        if exhausted {
            return Ok(EventPage { events: out, next_page_token: None });
        }
    }
}

fn matches_event(event: &serde_json::Value, query: &EventQuery) -> bool {
    let data = &event["data"];
    let is =
        |field: &str, want: &Option<String>| want.as_ref().is_none_or(|w| data[field].as_str() == Some(w.as_str()));
    (query.types.is_empty() || query.types.iter().any(|t| event["type"].as_str() == Some(t.name())))
        && is("user", &query.user)
        && is("grant_id", &query.grant_id)
        && is("client_id", &query.client_id)
}
