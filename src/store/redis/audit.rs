//! The audit trail on Redis: one stream (`audit`), appended with `XADD … MINID ~` so that
//! entries older than the retention leave as new ones come (and the whole stream when none
//! come for as long), capped by length too (`XTRIM MAXLEN ~`), read newest first with
//! `XREVRANGE`. Stream ids (Redis's clock,
//! milliseconds and a sequence) are the cursors.

use async_trait::async_trait;

use super::{RedisStore, SCHEMA};
use crate::store::{AuditStore, Retention, StoreResult, StoredEvent};

impl RedisStore {
    fn audit_key(&self) -> String {
        format!("{}:{SCHEMA}:audit", self.prefix)
    }
}

#[async_trait]
impl AuditStore for RedisStore {
    async fn append_events(&self, events: &[String], kept: Retention) -> StoreResult<()> {
        let key = self.audit_key();
        let events = events.to_vec();
        let retention_ms = u64::try_from(kept.age.as_millis()).unwrap_or(u64::MAX);
        self.run(async move |mut c| {
            // Trim by Redis's own clock, the one its stream ids are made of.
            let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(&mut c).await?;
            let oldest = (secs * 1000 + micros / 1000).saturating_sub(retention_ms);
            let mut pipe = ::redis::pipe();
            for event in &events {
                pipe.cmd("XADD").arg(&key).arg("MINID").arg("~").arg(oldest).arg("*").arg("e").arg(event).ignore();
            }
            // However busy, never more than about `count` events (MINID trims by age only).
            pipe.cmd("XTRIM").arg(&key).arg("MAXLEN").arg("~").arg(kept.count).ignore();
            // A trail nobody adds to leaves too, like every other key.
            pipe.cmd("PEXPIRE").arg(&key).arg(retention_ms.max(1)).ignore();
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    async fn events(&self, before: Option<&str>, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        let key = self.audit_key();
        let end = before.map_or_else(|| "+".to_owned(), |cursor| format!("({cursor}"));
        let entries: Vec<(String, Vec<(String, String)>)> = self
            .run(async move |mut c| {
                ::redis::cmd("XREVRANGE").arg(&key).arg(end).arg("-").arg("COUNT").arg(limit).query_async(&mut c).await
            })
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                fields.into_iter().find(|(name, _)| name == "e").map(|(_, json)| StoredEvent { id, json })
            })
            .collect())
    }
}
