//! The value rules of the state operations, shared by every store so they
//! cannot drift: each takes the key's current value (`None` when missing)
//! and returns its new value, or why the operation does not apply.

use serde_json::{Map, Number, Value};

use super::store::{StateError, StatePatch};

/// `patch`: a missing key becomes `fields`; an object gets them merged in.
pub(crate) fn patched(
    key: &str,
    current: Option<&Value>,
    fields: &Map<String, Value>,
) -> Result<Value, StateError> {
    match current {
        None => Ok(Value::Object(fields.clone())),
        Some(Value::Object(object)) => {
            let mut object = object.clone();
            object.extend(fields.clone());
            Ok(Value::Object(object))
        }
        Some(_) => Err(not_an_object(key)),
    }
}

/// `push`: a missing key becomes `[item]`; an array gets `item` appended.
pub(crate) fn pushed(
    key: &str,
    current: Option<&Value>,
    item: &Value,
) -> Result<Value, StateError> {
    match current {
        None => Ok(Value::Array(vec![item.clone()])),
        Some(Value::Array(items)) => {
            let mut items = items.clone();
            items.push(item.clone());
            Ok(Value::Array(items))
        }
        Some(_) => Err(not_an_array(key)),
    }
}

/// `remove`: how many items match `predicate` and the array without them;
/// `None` when the key is missing or nothing matches. The predicate sees
/// every item before anything changes, so one that panics changes nothing.
pub(crate) fn without(
    key: &str,
    current: Option<&Value>,
    predicate: &(dyn Fn(&Value) -> bool + Send + Sync),
) -> Result<Option<(usize, Value)>, StateError> {
    let items = match current {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(not_an_array(key)),
    };
    let kept: Vec<Value> = items
        .iter()
        .filter(|item| !predicate(item))
        .cloned()
        .collect();
    let removed = items.len() - kept.len();
    Ok((removed > 0).then_some((removed, Value::Array(kept))))
}

pub(crate) fn set_patch(key: &str, value: Value) -> StatePatch {
    StatePatch::Set {
        key: key.to_owned(),
        value,
    }
}

pub(crate) fn not_a_number(key: &str) -> StateError {
    StateError::NotANumber {
        key: key.to_owned(),
    }
}

pub(crate) fn not_an_array(key: &str) -> StateError {
    StateError::NotAnArray {
        key: key.to_owned(),
    }
}

pub(crate) fn not_an_object(key: &str) -> StateError {
    StateError::NotAnObject {
        key: key.to_owned(),
    }
}

/// `current + by`, exact while the sum is a JSON integer.
pub(crate) fn add(key: &str, current: &Number, by: i128) -> Result<Number, StateError> {
    let exact = current
        .as_i64()
        .map(i128::from)
        .or_else(|| current.as_u64().map(i128::from))
        .and_then(|n| n.checked_add(by));
    let float = match exact {
        Some(sum) => {
            if let Ok(sum) = i64::try_from(sum) {
                return Ok(sum.into());
            }
            if let Ok(sum) = u64::try_from(sum) {
                return Ok(sum.into());
            }
            sum as f64
        }
        None => current.as_f64().unwrap_or(f64::NAN) + by as f64,
    };
    // Only a non-finite sum has no JSON form, and the sum of a finite f64 and
    // an i128 stays finite; this guards a store built with features that let
    // other numbers in.
    Number::from_f64(float).ok_or_else(|| StateError::Encode {
        key: key.to_owned(),
        message: format!("{float} is not a JSON number"),
    })
}
