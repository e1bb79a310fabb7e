//! The audit trail on Redis: one stream (`audit`), appended with `XADD … MINID ~` so that
//! entries older than the retention leave as new ones come (and the whole stream when none
//! come for as long), capped by length too (`XTRIM MAXLEN ~`), read newest first with
//! `XREVRANGE`. Stream ids (Redis's clock,
//! milliseconds and a sequence) are the cursors.
//!
//! A person's recent events (the account page) are a short list of stream ids per user
//! (`activity:{<user>}`, `LPUSH` + `LTRIM`, expiring with the trail's retention), read with one
//! `XRANGE id id` each. The list and the stream are written in two steps (they live in
//! different Cluster slots): an id whose event is gone, or never made it, is skipped.

use async_trait::async_trait;

use super::{RedisStore, SCHEMA};
use crate::store::{AuditStore, Retention, StoreResult, StoredEvent, USER_EVENTS};

impl RedisStore {
    fn audit_key(&self) -> String {
        format!("{}:{SCHEMA}:audit", self.prefix)
    }

    fn activity_key(&self, user: &str) -> String {
        format!("{}:{SCHEMA}:activity:{{{user}}}", self.prefix)
    }
}

fn stored(entries: Vec<(String, Vec<(String, String)>)>) -> impl Iterator<Item = StoredEvent> {
    entries.into_iter().filter_map(|(id, fields)| {
        fields.into_iter().find(|(name, _)| name == "e").map(|(_, json)| StoredEvent { id, json })
    })
}

#[async_trait]
impl AuditStore for RedisStore {
    async fn append_events(&self, events: &[String], kept: Retention) -> StoreResult<Vec<String>> {
        let key = self.audit_key();
        let events = events.to_vec();
        let retention_ms = u64::try_from(kept.age.as_millis()).unwrap_or(u64::MAX);
        self.run(async move |mut c| {
            // Trim by Redis's own clock, the one its stream ids are made of.
            let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(&mut c).await?;
            let oldest = (secs * 1000 + micros / 1000).saturating_sub(retention_ms);
            let mut pipe = ::redis::pipe();
            for event in &events {
                pipe.cmd("XADD").arg(&key).arg("MINID").arg("~").arg(oldest).arg("*").arg("e").arg(event);
            }
            // However busy, never more than about `count` events (MINID trims by age only).
            pipe.cmd("XTRIM").arg(&key).arg("MAXLEN").arg("~").arg(kept.count).ignore();
            // A trail nobody adds to leaves too, like every other key.
            pipe.cmd("PEXPIRE").arg(&key).arg(retention_ms.max(1)).ignore();
            pipe.query_async::<Vec<String>>(&mut c).await
        })
        .await
    }

    async fn note_user_events(&self, user: &str, ids: &[String], kept: Retention) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.activity_key(user);
        let ids = ids.to_vec();
        let retention_ms = u64::try_from(kept.age.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(async move |mut c| {
            ::redis::pipe()
                .cmd("LPUSH")
                .arg(&key)
                .arg(&ids)
                .ignore()
                .cmd("LTRIM")
                .arg(&key)
                .arg(0)
                .arg(USER_EVENTS - 1)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(retention_ms)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn user_events(&self, user: &str) -> StoreResult<Vec<StoredEvent>> {
        let key = self.activity_key(user);
        let ids: Vec<String> = self
            .run(async move |mut c| {
                ::redis::cmd("LRANGE").arg(&key).arg(0).arg(USER_EVENTS - 1).query_async(&mut c).await
            })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let trail = self.audit_key();
        let found: Vec<Vec<(String, Vec<(String, String)>)>> = self
            .run(async move |mut c| {
                let mut pipe = ::redis::pipe();
                for id in &ids {
                    pipe.cmd("XRANGE").arg(&trail).arg(id).arg(id);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(found.into_iter().flat_map(stored).collect())
    }

    async fn events(&self, before: Option<&str>, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let key = self.audit_key();
        let end = before.map_or_else(|| "+".to_owned(), |cursor| format!("({cursor}"));
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .run(async move |mut c| {
                ::redis::cmd("XREVRANGE").arg(&key).arg(end).arg("-").arg("COUNT").arg(limit).query_async(&mut c).await
            })
            .await?;
        Ok(stored(entries).collect())
    }
}
