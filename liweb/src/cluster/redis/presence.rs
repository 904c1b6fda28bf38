//! Presence records as the adapter stores them, merged across nodes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::keys::{decode_key, encode_key};
use crate::presence::PresenceRecord;

/// A presence record as one node stores it for one connection (or, with
/// `online` false, for a key gone offline on that node).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    /// `c:{uuid}` or `u:{user}`.
    pub(super) key: String,
    pub(super) joined_at: u64,
    pub(super) last_seen: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) activity: Option<String>,
}

pub(super) fn stored(record: &PresenceRecord) -> Option<String> {
    serde_json::to_string(&Stored {
        key: encode_key(&record.key),
        joined_at: record.joined_at,
        last_seen: record.last_seen,
        activity: record.activity.clone(),
    })
    .ok()
}

/// One record per presence key: online when any live connection has it,
/// else its latest offline record until that expires.
pub(super) fn merge_presence(
    records: Vec<(bool, String, Stored)>,
    now_ms: u64,
    offline_ttl_ms: u64,
) -> Vec<PresenceRecord> {
    let mut merged: HashMap<String, PresenceRecord> = HashMap::new();
    let mut offline: HashMap<String, Stored> = HashMap::new();
    for (online, _, stored) in records {
        if !online {
            let keep = offline
                .get(&stored.key)
                .is_none_or(|seen| seen.last_seen < stored.last_seen);
            if keep {
                offline.insert(stored.key.clone(), stored);
            }
            continue;
        }
        let Some(key) = decode_key(&stored.key) else {
            continue;
        };
        match merged.get_mut(&stored.key) {
            Some(record) => {
                record.connections += 1;
                record.joined_at = record.joined_at.min(stored.joined_at);
                if stored.last_seen >= record.last_seen {
                    record.last_seen = stored.last_seen;
                    record.activity = stored.activity;
                }
            }
            None => {
                merged.insert(
                    stored.key.clone(),
                    PresenceRecord {
                        key,
                        online: true,
                        joined_at: stored.joined_at,
                        last_seen: stored.last_seen,
                        activity: stored.activity,
                        connections: 1,
                    },
                );
            }
        }
    }
    for (name, stored) in offline {
        if merged.contains_key(&name) || now_ms.saturating_sub(stored.last_seen) >= offline_ttl_ms {
            continue;
        }
        let Some(key) = decode_key(&stored.key) else {
            continue;
        };
        merged.insert(
            name,
            PresenceRecord {
                key,
                online: false,
                joined_at: stored.joined_at,
                last_seen: stored.last_seen,
                activity: stored.activity,
                connections: 0,
            },
        );
    }
    let mut list: Vec<PresenceRecord> = merged.into_values().collect();
    list.sort_by(|a, b| {
        b.online
            .cmp(&a.online)
            .then(a.joined_at.cmp(&b.joined_at))
            .then_with(|| a.key.cmp(&b.key))
    });
    list
}
