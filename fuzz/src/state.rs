//! Room state operations checked against a model: a plain map per room with
//! the documented rules of each operation written out independently.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
};

use arbitrary::Arbitrary;
use liweb::state::{
    MemoryStore, ModifyError, RoomKey, RoomState, StateError, StatePatch, StateStore,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

/// A JSON value as the fuzzer builds it.
#[derive(Debug, Clone, Arbitrary)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Arr(Vec<Val>),
    Obj(Vec<(Key, Val)>),
}

/// Deep values add nothing the rules care about (they treat a value as a
/// whole), so nesting is cut off here.
const MAX_DEPTH: usize = 6;

impl Val {
    pub fn to_json(&self) -> Value {
        self.to_json_at(0)
    }

    fn to_json_at(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(n) => Value::from(*n),
            Val::Uint(n) => Value::from(*n),
            // Not finite has no JSON form; `from_f64` gives `None`.
            Val::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Val::Str(s) => Value::String(s.clone()),
            Val::Arr(items) => items.iter().map(|v| v.to_json_at(depth + 1)).collect(),
            Val::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.name().to_owned(), v.to_json_at(depth + 1)))
                    .collect(),
            ),
        }
    }
}

/// One of a few keys, so operations meet each other's values.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Key {
    A,
    B,
    C,
    Empty,
}

impl Key {
    pub fn name(self) -> &'static str {
        match self {
            Key::A => "a",
            Key::B => "b",
            Key::C => "c:d",
            Key::Empty => "",
        }
    }
}

/// The type `get::<T>` asks for.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Ty {
    Value,
    I64,
    U64,
    F64,
    String,
    Vec,
    Bool,
}

/// What `remove` matches.
#[derive(Debug, Clone, Arbitrary)]
pub enum Pred {
    Equals(Val),
    IsNumber,
    IsString,
    Everything,
    Nothing,
}

impl Pred {
    fn matcher(&self) -> impl Fn(&Value) -> bool + Send + Sync + 'static {
        let target = match self {
            Pred::Equals(v) => Some(v.to_json()),
            _ => None,
        };
        let kind = match self {
            Pred::Equals(_) => 0,
            Pred::IsNumber => 1,
            Pred::IsString => 2,
            Pred::Everything => 3,
            Pred::Nothing => 4,
        };
        move |item: &Value| match kind {
            0 => Some(item) == target.as_ref(),
            1 => item.is_number(),
            2 => item.is_string(),
            3 => true,
            _ => false,
        }
    }
}

/// What the function given to `try_modify` does with the key's current value
/// (a JSON value, so it never fails to decode).
#[derive(Debug, Clone, Arbitrary)]
pub enum ValueFn {
    /// Ignores it and returns this value.
    Replace(Val),
    /// Returns `[current]`, or `[]` when the key is not set.
    Wrap,
    /// Refuses.
    Refuse,
    /// Refuses when the key is not set, else returns this value.
    RefuseIfMissing(Val),
}

/// A refusal of a [`ValueFn`].
#[derive(Debug)]
struct Refused;

impl ValueFn {
    fn call(&self, current: Option<Value>) -> Result<Value, Refused> {
        match self {
            ValueFn::Replace(value) => Ok(value.to_json()),
            ValueFn::Wrap => Ok(Value::Array(current.into_iter().collect())),
            ValueFn::Refuse => Err(Refused),
            ValueFn::RefuseIfMissing(value) => current.map(|_| value.to_json()).ok_or(Refused),
        }
    }
}

/// The outcome standing for `try_modify`'s [`ModifyError::Refused`].
fn refused() -> Value {
    Value::String("<refused>".into())
}

/// The outcome standing for a [`StateError::Decode`] error.
fn decode_error() -> Value {
    Value::String("<decode error>".into())
}

/// One state operation on room 0 or 1.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    Get(bool, Key, Ty),
    Has(bool, Key),
    Snapshot(bool),
    Set(bool, Key, Val),
    Update(bool, Key, Val),
    Patch(bool, Key, Val),
    Push(bool, Key, Val),
    Remove(bool, Key, Pred),
    Increment(bool, Key, i64),
    Decrement(bool, Key, i64),
    Delete(bool, Key),
    Clear(bool),
    /// The room is deleted (`StateStore::drop_room`).
    DropRoom(bool),
    /// `try_modify::<Value, _, _>` with this function.
    Modify(bool, Key, ValueFn),
    /// `modify::<i64, _>`: the number (0 when not set) plus one, wrapping.
    ModifyI64(bool, Key),
}

/// Polls a future of the in-memory store, which never waits.
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a MemoryStore operation waited"),
    }
}

fn missing(key: &str) -> StateError {
    StateError::KeyMissing { key: key.into() }
}
fn not_array(key: &str) -> StateError {
    StateError::NotAnArray { key: key.into() }
}
fn not_number(key: &str) -> StateError {
    StateError::NotANumber { key: key.into() }
}
fn not_object(key: &str) -> StateError {
    StateError::NotAnObject { key: key.into() }
}
fn set(key: &str, value: Value) -> StatePatch {
    StatePatch::Set {
        key: key.into(),
        value,
    }
}

/// `number + by` by the documented rule: exact while the result is an `i64`
/// or a `u64`, else a float.
fn model_add(number: &Number, by: i128) -> Number {
    let exact = if let Some(n) = number.as_i64() {
        Some(i128::from(n))
    } else {
        number.as_u64().map(i128::from)
    };
    match exact.map(|n| n + by) {
        Some(sum) if i64::try_from(sum).is_ok() => Number::from(sum as i64),
        Some(sum) if u64::try_from(sum).is_ok() => Number::from(sum as u64),
        Some(sum) => Number::from_f64(sum as f64).expect("finite"),
        None => Number::from_f64(number.as_f64().expect("a float") + by as f64).expect("finite"),
    }
}

/// The model: each room's map, and the patches the store should report.
#[derive(Debug, Default)]
struct Model {
    rooms: BTreeMap<bool, Map<String, Value>>,
}

type Outcome = Result<Option<Value>, StateError>;

impl Model {
    fn room(&mut self, room: bool) -> &mut Map<String, Value> {
        self.rooms.entry(room).or_default()
    }

    /// Applies `op`; returns the result and the patch it should emit.
    fn apply(&mut self, op: &Op) -> (Outcome, Option<StatePatch>) {
        match op {
            Op::Get(room, key, ty) => {
                let value = self.room(*room).get(key.name()).cloned();
                (Ok(value.map(|v| typed(*ty, v))), None)
            }
            Op::Has(room, key) => (
                Ok(Some(Value::Bool(self.room(*room).contains_key(key.name())))),
                None,
            ),
            Op::Snapshot(room) => (Ok(Some(Value::Object(self.room(*room).clone()))), None),
            Op::Set(room, key, value) => {
                let value = value.to_json();
                self.room(*room).insert(key.name().into(), value.clone());
                (Ok(None), Some(set(key.name(), value)))
            }
            Op::Update(room, key, value) => {
                let k = key.name();
                let map = self.room(*room);
                if !map.contains_key(k) {
                    return (Err(missing(k)), None);
                }
                let value = value.to_json();
                map.insert(k.into(), value.clone());
                (Ok(None), Some(set(k, value)))
            }
            Op::Patch(room, key, fields) => {
                let k = key.name();
                let Value::Object(fields) = fields.to_json() else {
                    return (Err(not_object(k)), None);
                };
                let map = self.room(*room);
                let new = match map.get(k) {
                    None => Value::Object(fields),
                    Some(Value::Object(current)) => {
                        let mut merged = current.clone();
                        for (field, value) in fields {
                            merged.insert(field, value);
                        }
                        Value::Object(merged)
                    }
                    Some(_) => return (Err(not_object(k)), None),
                };
                map.insert(k.into(), new.clone());
                (Ok(None), Some(set(k, new)))
            }
            Op::Push(room, key, item) => {
                let k = key.name();
                let item = item.to_json();
                let map = self.room(*room);
                let new = match map.get(k) {
                    None => Value::Array(vec![item]),
                    Some(Value::Array(items)) => {
                        let mut items = items.clone();
                        items.push(item);
                        Value::Array(items)
                    }
                    Some(_) => return (Err(not_array(k)), None),
                };
                map.insert(k.into(), new.clone());
                (Ok(None), Some(set(k, new)))
            }
            Op::Remove(room, key, pred) => {
                let k = key.name();
                let matches = pred.matcher();
                let map = self.room(*room);
                match map.get(k) {
                    None => (Ok(Some(Value::from(0))), None),
                    Some(Value::Array(items)) => {
                        let kept: Vec<Value> =
                            items.iter().filter(|i| !matches(i)).cloned().collect();
                        let removed = items.len() - kept.len();
                        if removed == 0 {
                            return (Ok(Some(Value::from(0))), None);
                        }
                        map.insert(k.into(), Value::Array(kept.clone()));
                        (
                            Ok(Some(Value::from(removed))),
                            Some(set(k, Value::Array(kept))),
                        )
                    }
                    Some(_) => (Err(not_array(k)), None),
                }
            }
            Op::Increment(room, key, by) => self.add(*room, *key, i128::from(*by)),
            Op::Decrement(room, key, by) => self.add(*room, *key, -i128::from(*by)),
            Op::Delete(room, key) => {
                let k = key.name();
                let was = self.room(*room).remove(k).is_some();
                let patch = was.then(|| StatePatch::Delete { key: k.into() });
                (Ok(Some(Value::Bool(was))), patch)
            }
            Op::Clear(room) => {
                self.room(*room).clear();
                (Ok(None), Some(StatePatch::Clear))
            }
            Op::DropRoom(room) => {
                self.rooms.remove(room);
                (Ok(None), None)
            }
            Op::Modify(room, key, f) => {
                let k = key.name();
                let map = self.room(*room);
                match f.call(map.get(k).cloned()) {
                    Ok(new) => {
                        map.insert(k.into(), new.clone());
                        (Ok(Some(new.clone())), Some(set(k, new)))
                    }
                    Err(Refused) => (Ok(Some(refused())), None),
                }
            }
            Op::ModifyI64(room, key) => {
                let k = key.name();
                let map = self.room(*room);
                let current = match map.get(k).cloned().map(serde_json::from_value::<i64>) {
                    None => 0,
                    Some(Ok(n)) => n,
                    Some(Err(_)) => return (Ok(Some(decode_error())), None),
                };
                let new = Value::from(current.wrapping_add(1));
                map.insert(k.into(), new.clone());
                (Ok(Some(new.clone())), Some(set(k, new)))
            }
        }
    }

    fn add(&mut self, room: bool, key: Key, by: i128) -> (Outcome, Option<StatePatch>) {
        let k = key.name();
        let map = self.room(room);
        let sum = match map.get(k) {
            None => model_add(&Number::from(0), by),
            Some(Value::Number(n)) => model_add(n, by),
            Some(_) => return (Err(not_number(k)), None),
        };
        map.insert(k.into(), Value::Number(sum.clone()));
        (
            Ok(Some(Value::Number(sum.clone()))),
            Some(set(k, Value::Number(sum))),
        )
    }
}

/// `get::<T>` in the model: the value as `T`, re-encoded for comparison, or
/// `Value::String("<decode error>")` standing for a decode error.
fn typed(ty: Ty, value: Value) -> Value {
    fn as_<T: DeserializeOwned + serde::Serialize>(value: Value) -> Value {
        match serde_json::from_value::<T>(value) {
            Ok(v) => serde_json::to_value(v).expect("re-encodes"),
            Err(_) => decode_error(),
        }
    }
    match ty {
        Ty::Value => value,
        Ty::I64 => as_::<i64>(value),
        Ty::U64 => as_::<u64>(value),
        Ty::F64 => as_::<f64>(value),
        Ty::String => as_::<String>(value),
        Ty::Vec => as_::<Vec<Value>>(value),
        Ty::Bool => as_::<bool>(value),
    }
}

/// `RoomState::get::<T>` in the same form as [`typed`].
fn get_as<T: DeserializeOwned + serde::Serialize>(state: &RoomState, key: &str) -> Outcome {
    match now(state.get::<T>(key)) {
        Ok(v) => Ok(v.map(|v| serde_json::to_value(v).expect("re-encodes"))),
        Err(StateError::Decode { key: k, .. }) => {
            assert_eq!(k, key, "a decode error names another key");
            Ok(Some(decode_error()))
        }
        Err(other) => Err(other),
    }
}

/// The store under test: two rooms of one [`MemoryStore`], with the patches
/// each reports.
struct Real {
    store: Arc<MemoryStore>,
    rooms: [RoomState; 2],
    patches: Arc<Mutex<Vec<(RoomKey, StatePatch)>>>,
}

impl Real {
    fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let patches = Arc::new(Mutex::new(Vec::new()));
        let room = |name: &str| {
            let sink = Arc::clone(&patches);
            RoomState::new(
                Arc::clone(&store) as Arc<dyn StateStore>,
                RoomKey::new("fuzz", name),
                Some(Arc::new(move |room: &RoomKey, patch: &StatePatch| {
                    sink.lock().unwrap().push((room.clone(), patch.clone()));
                })),
            )
        };
        let rooms = [room("zero"), room("one")];
        Self {
            store,
            rooms,
            patches,
        }
    }

    fn apply(&self, op: &Op) -> Outcome {
        let state = |room: &bool| &self.rooms[usize::from(*room)];
        match op {
            Op::Get(room, key, ty) => {
                let (state, key) = (state(room), key.name());
                match ty {
                    Ty::Value => get_as::<Value>(state, key),
                    Ty::I64 => get_as::<i64>(state, key),
                    Ty::U64 => get_as::<u64>(state, key),
                    Ty::F64 => get_as::<f64>(state, key),
                    Ty::String => get_as::<String>(state, key),
                    Ty::Vec => get_as::<Vec<Value>>(state, key),
                    Ty::Bool => get_as::<bool>(state, key),
                }
            }
            Op::Has(room, key) => now(state(room).has(key.name())).map(|b| Some(Value::Bool(b))),
            Op::Snapshot(room) => now(state(room).snapshot()).map(|m| Some(Value::Object(m))),
            Op::Set(room, key, value) => {
                now(state(room).set(key.name(), &value.to_json())).map(|()| None)
            }
            Op::Update(room, key, value) => {
                now(state(room).update(key.name(), &value.to_json())).map(|()| None)
            }
            Op::Patch(room, key, fields) => {
                now(state(room).patch(key.name(), &fields.to_json())).map(|()| None)
            }
            Op::Push(room, key, item) => {
                now(state(room).push(key.name(), &item.to_json())).map(|()| None)
            }
            Op::Remove(room, key, pred) => {
                now(state(room).remove(key.name(), pred.matcher())).map(|n| Some(Value::from(n)))
            }
            Op::Increment(room, key, by) => {
                now(state(room).increment(key.name(), *by)).map(|n| Some(Value::Number(n)))
            }
            Op::Decrement(room, key, by) => {
                now(state(room).decrement(key.name(), *by)).map(|n| Some(Value::Number(n)))
            }
            Op::Delete(room, key) => now(state(room).delete(key.name())).map(|b| Some(b.into())),
            Op::Clear(room) => now(state(room).clear()).map(|()| None),
            Op::DropRoom(room) => now(self.store.drop_room(state(room).room())).map(|()| None),
            Op::Modify(room, key, f) => {
                match now(state(room).try_modify(key.name(), |current| f.call(current))) {
                    Ok(value) => Ok(Some(value)),
                    Err(ModifyError::Refused(Refused)) => Ok(Some(refused())),
                    Err(ModifyError::State(err)) => Err(err),
                }
            }
            Op::ModifyI64(room, key) => {
                let key = key.name();
                let added =
                    state(room).modify(key, |n: Option<i64>| n.unwrap_or(0).wrapping_add(1));
                match now(added) {
                    Ok(n) => Ok(Some(Value::from(n))),
                    Err(StateError::Decode { key: k, .. }) => {
                        assert_eq!(k, key, "a decode error names another key");
                        Ok(Some(decode_error()))
                    }
                    Err(other) => Err(other),
                }
            }
        }
    }
}

/// The state target: runs `ops` against a [`MemoryStore`] and the model and
/// checks that every result, every error, every patch and the whole state
/// after each operation agree.
pub fn check_ops(ops: &[Op]) {
    let real = Real::new();
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let (expected, patch) = model.apply(op);
        let got = real.apply(op);
        assert_eq!(got, expected, "step {step}: {op:?}");
        let patches: Vec<_> = std::mem::take(&mut *real.patches.lock().unwrap());
        let room = |r: bool| real.rooms[usize::from(r)].room().clone();
        let expected_patches: Vec<_> = patch.into_iter().map(|p| (room(op_room(op)), p)).collect();
        assert_eq!(patches, expected_patches, "step {step}: {op:?}");
        for r in [false, true] {
            let snapshot = now(real.rooms[usize::from(r)].snapshot()).expect("snapshot");
            assert_eq!(
                snapshot,
                model.room(r).clone(),
                "step {step}: room {r} after {op:?}"
            );
            for key in [Key::A, Key::B, Key::C, Key::Empty] {
                let has = now(real.rooms[usize::from(r)].has(key.name())).expect("has");
                assert_eq!(has, snapshot.contains_key(key.name()));
            }
        }
    }
}

fn op_room(op: &Op) -> bool {
    match op {
        Op::Get(r, ..)
        | Op::Has(r, ..)
        | Op::Snapshot(r)
        | Op::Set(r, ..)
        | Op::Update(r, ..)
        | Op::Patch(r, ..)
        | Op::Push(r, ..)
        | Op::Remove(r, ..)
        | Op::Increment(r, ..)
        | Op::Decrement(r, ..)
        | Op::Delete(r, ..)
        | Op::Clear(r)
        | Op::DropRoom(r)
        | Op::Modify(r, ..)
        | Op::ModifyI64(r, ..) => *r,
    }
}
