//! [`RedisStore`]: room state in Redis, shared by every node.

use std::{
    fmt,
    sync::{Arc, OnceLock},
};

use redis::{AsyncCommands, Script};
use serde_json::{Map, Number, Value};

use super::node::Node;
use crate::{
    cluster::error::ClusterError,
    room::key::RoomKey,
    state::{Modifier, StateError, StatePatch, StateStore},
    util::BoxFuture,
};

/// Room state in Redis; every operation atomic across nodes. Made by
/// [`RedisAdapter::state_store`](super::RedisAdapter::state_store), used by the server the adapter is given
/// to.
#[derive(Clone)]
pub struct RedisStore {
    pub(super) node: Arc<Node>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.node.keys.prefix)
            .finish()
    }
}

/// `HSET` only when the field exists.
pub(super) const UPDATE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
";

/// Compare-and-set of one field: ARGV = field, expected present ('0'/'1'),
/// expected value, write ('1' set / '0' delete), new value.
pub(super) const COMPARE_AND_SET: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '0' then
  if current then return 0 end
elseif current ~= ARGV[3] then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

pub(super) fn scripts() -> &'static (Script, Script) {
    static SCRIPTS: OnceLock<(Script, Script)> = OnceLock::new();
    SCRIPTS.get_or_init(|| (Script::new(UPDATE), Script::new(COMPARE_AND_SET)))
}

pub(super) fn backend(err: redis::RedisError) -> StateError {
    StateError::backend(err)
}

pub(super) fn json(key: &str, value: &Value) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|err| StateError::Encode {
        key: key.to_owned(),
        message: err.to_string(),
    })
}

/// A stored value that is not JSON (something else wrote the hash); the
/// source of a [`StateError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("state key `{key}` holds invalid JSON")]
pub(super) struct InvalidJson {
    pub(super) key: String,
    #[source]
    pub(super) source: serde_json::Error,
}

pub(super) fn parse(key: &str, text: &str) -> Result<Value, StateError> {
    serde_json::from_str(text).map_err(|source| {
        StateError::backend(InvalidJson {
            key: key.to_owned(),
            source,
        })
    })
}

/// What a read-modify-write decided.
pub(super) enum Change<T> {
    /// Write this value (or delete with `None`), then return `T`.
    Write(Option<Value>, T),
    /// Write nothing and return `T`.
    Keep(T),
}

/// How often a compare-and-set is retried before giving up; every retry
/// means another node's write succeeded, so the store as a whole progresses.
pub(super) const MAX_RETRIES: usize = 10_000;

impl RedisStore {
    pub(super) fn report(&self, op: &'static str, err: &StateError) {
        if let StateError::Backend(source) = err {
            self.node.report(ClusterError::Command {
                op,
                source: Arc::clone(source),
            });
        }
    }

    pub(super) async fn read_modify_write<T>(
        &self,
        room: &RoomKey,
        key: &str,
        mut decide: impl FnMut(Option<&Value>) -> Result<Change<T>, StateError>,
    ) -> Result<T, StateError> {
        let hash = self.node.keys.state(room);
        let mut conn = self.node.connection();
        for attempt in 0..MAX_RETRIES {
            let current: Option<String> = conn.hget(&hash, key).await.map_err(backend)?;
            let parsed = current
                .as_deref()
                .map(|text| parse(key, text))
                .transpose()?;
            let (next, result) = match decide(parsed.as_ref())? {
                Change::Keep(result) => return Ok(result),
                Change::Write(next, result) => (next, result),
            };
            let next = next.map(|value| json(key, &value)).transpose()?;
            let mut invocation = scripts().1.key(&hash);
            invocation
                .arg(key)
                .arg(if current.is_some() { "1" } else { "0" })
                .arg(current.as_deref().unwrap_or(""))
                .arg(if next.is_some() { "1" } else { "0" })
                .arg(next.as_deref().unwrap_or(""));
            let written: i64 = invocation.invoke_async(&mut conn).await.map_err(backend)?;
            if written == 1 {
                return Ok(result);
            }
            if attempt % 16 == 15 {
                tokio::task::yield_now().await;
            }
        }
        Err(StateError::backend(format!(
            "state key `{key}` kept changing; gave up after {MAX_RETRIES} attempts"
        )))
    }

    pub(super) async fn add(
        &self,
        room: &RoomKey,
        key: &str,
        by: i128,
    ) -> Result<(Number, StatePatch), StateError> {
        if let Ok(by) = i64::try_from(by) {
            let mut conn = self.node.connection();
            let hash = self.node.keys.state(room);
            match conn.hincr::<_, _, _, i64>(&hash, key, by).await {
                Ok(sum) => {
                    let sum = Number::from(sum);
                    return Ok((
                        sum.clone(),
                        crate::state::patch::set_patch(key, Value::Number(sum)),
                    ));
                }
                // Not an integer, or the sum overflows: exact arithmetic below.
                Err(err) if err.kind() == redis::ErrorKind::ResponseError => {}
                Err(err) => return Err(backend(err)),
            }
        }
        self.read_modify_write(room, key, |current| {
            let sum = match current {
                None => crate::state::patch::add(key, &Number::from(0), by)?,
                Some(Value::Number(current)) => crate::state::patch::add(key, current, by)?,
                Some(_) => return Err(crate::state::patch::not_a_number(key)),
            };
            let value = Value::Number(sum.clone());
            Ok(Change::Write(
                Some(value.clone()),
                (sum, crate::state::patch::set_patch(key, value)),
            ))
        })
        .await
    }
}

impl StateStore for RedisStore {
    fn get<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let text: Option<String> = conn
                .hget(self.node.keys.state(room), key)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state get", e))?;
            text.map(|text| parse(key, &text)).transpose()
        })
    }

    fn has<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            conn.hexists(self.node.keys.state(room), key)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state has", e))
        })
    }

    fn snapshot<'a>(
        &'a self,
        room: &'a RoomKey,
    ) -> BoxFuture<'a, Result<Map<String, Value>, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let all: Vec<(String, String)> = conn
                .hgetall(self.node.keys.state(room))
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state snapshot", e))?;
            let mut sorted = all;
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            sorted
                .into_iter()
                .map(|(key, text)| parse(&key, &text).map(|value| (key, value)))
                .collect()
        })
    }

    fn set<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            let text = json(key, &value)?;
            let mut conn = self.node.connection();
            let () = conn
                .hset(self.node.keys.state(room), key, text)
                .await
                .map(|_: i64| ())
                .map_err(backend)
                .inspect_err(|e| self.report("state set", e))?;
            Ok(crate::state::patch::set_patch(key, value))
        })
    }

    fn update<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        value: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            let text = json(key, &value)?;
            let mut conn = self.node.connection();
            let mut invocation = scripts().0.key(self.node.keys.state(room));
            invocation.arg(key).arg(text);
            let written: i64 = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state update", e))?;
            if written == 1 {
                Ok(crate::state::patch::set_patch(key, value))
            } else {
                Err(StateError::KeyMissing {
                    key: key.to_owned(),
                })
            }
        })
    }

    fn patch<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        fields: Map<String, Value>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                let object = crate::state::patch::patched(key, current, &fields)?;
                Ok(Change::Write(
                    Some(object.clone()),
                    crate::state::patch::set_patch(key, object),
                ))
            })
            .await
            .inspect_err(|e| self.report("state patch", e))
        })
    }

    fn push<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        item: Value,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                let array = crate::state::patch::pushed(key, current, &item)?;
                Ok(Change::Write(
                    Some(array.clone()),
                    crate::state::patch::set_patch(key, array),
                ))
            })
            .await
            .inspect_err(|e| self.report("state push", e))
        })
    }

    fn remove<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        predicate: &'a (dyn Fn(&Value) -> bool + Send + Sync),
    ) -> BoxFuture<'a, Result<(usize, Option<StatePatch>), StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                Ok(
                    match crate::state::patch::without(key, current, predicate)? {
                        None => Change::Keep((0, None)),
                        Some((removed, array)) => Change::Write(
                            Some(array.clone()),
                            (removed, Some(crate::state::patch::set_patch(key, array))),
                        ),
                    },
                )
            })
            .await
            .inspect_err(|e| self.report("state remove", e))
        })
    }

    fn increment<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        Box::pin(async move {
            self.add(room, key, i128::from(by))
                .await
                .inspect_err(|e| self.report("state increment", e))
        })
    }

    fn decrement<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        by: i64,
    ) -> BoxFuture<'a, Result<(Number, StatePatch), StateError>> {
        Box::pin(async move {
            self.add(room, key, -i128::from(by))
                .await
                .inspect_err(|e| self.report("state decrement", e))
        })
    }

    /// Reads the key, runs `modify`, and writes its value only if the key
    /// still holds what was read (compare-and-set); on a conflict, runs
    /// `modify` again on the newer value.
    fn modify<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
        modify: &'a mut Modifier<'_>,
    ) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            self.read_modify_write(room, key, |current| {
                let next = modify(current)?;
                Ok(Change::Write(
                    Some(next.clone()),
                    crate::state::patch::set_patch(key, next),
                ))
            })
            .await
            .inspect_err(|e| self.report("state modify", e))
        })
    }

    fn delete<'a>(
        &'a self,
        room: &'a RoomKey,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StatePatch>, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let removed: i64 = conn
                .hdel(self.node.keys.state(room), key)
                .await
                .map_err(backend)
                .inspect_err(|e| self.report("state delete", e))?;
            Ok((removed > 0).then(|| StatePatch::Delete {
                key: key.to_owned(),
            }))
        })
    }

    fn clear<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<StatePatch, StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            let () = conn
                .del(self.node.keys.state(room))
                .await
                .map(|_: i64| ())
                .map_err(backend)
                .inspect_err(|e| self.report("state clear", e))?;
            Ok(StatePatch::Clear)
        })
    }

    fn drop_room<'a>(&'a self, room: &'a RoomKey) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut conn = self.node.connection();
            conn.del(self.node.keys.state(room))
                .await
                .map(|_: i64| ())
                .map_err(backend)
                .inspect_err(|e| self.report("state drop", e))
        })
    }
}
