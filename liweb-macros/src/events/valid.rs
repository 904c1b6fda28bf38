//! Checks that need the whole enum: names, shapes, generics.

use super::ast::{Container, Shape};
use crate::ctxt::Ctxt;

/// Names liweb's own protocol uses; an application event may not take them.
const RESERVED: &[&str] = &[
    "error",
    "auth:success",
    "auth:error",
    "state:patch",
    "state:snapshot",
    "presence:join",
    "presence:leave",
    "presence:update",
    "presence:snapshot",
];

pub(crate) fn check(cx: &mut Ctxt, container: &Container<'_>) {
    if !container.generics.params.is_empty() || container.generics.where_clause.is_some() {
        cx.error_spanned_by(
            container.generics,
            "`Events` cannot be derived for a generic enum: each event needs one concrete payload type",
        );
    }
    if container.variants.is_empty() {
        cx.error_spanned_by(
            container.ident,
            "an `Events` enum needs at least one variant",
        );
    }
    for (index, variant) in container.variants.iter().enumerate() {
        match &variant.shape {
            Shape::Unsupported(syn::Fields::Unnamed(fields)) if fields.unnamed.is_empty() => {
                cx.error_spanned_by(fields, "empty tuple variants cannot be encoded; use a unit variant");
            }
            Shape::Unsupported(fields) => cx.error_spanned_by(
                fields,
                "tuple variants with several fields cannot be encoded; use a struct variant or one field of a struct type",
            ),
            Shape::Struct(fields) if !container.typescript => {
                for attr in fields.iter().flat_map(|field| super::attr::ts_attrs(field.attrs)) {
                    cx.error_spanned_by(
                        attr,
                        "`#[ts(...)]` needs `#[event(typescript)]` on the enum",
                    );
                }
            }
            _ => {}
        }
        let name = &variant.name;
        if name.is_empty() {
            cx.push(syn::Error::new(
                variant.name_span,
                "an event name cannot be empty",
            ));
        } else if name.starts_with("__") {
            cx.push(syn::Error::new(
                variant.name_span,
                format!(
                    "event name `{name}` starts with `__`, which liweb reserves for its protocol"
                ),
            ));
        } else if RESERVED.contains(&name.as_str()) {
            cx.error_spanned_by(
                &variant.name_tokens,
                format!("event name `{name}` is reserved by liweb; rename the variant or set `#[event(name = \"...\")]`"),
            );
        }
        if let Some(first) = container.variants[..index]
            .iter()
            .find(|other| other.name == *name)
        {
            cx.error_spanned_by(
                &variant.name_tokens,
                format!(
                    "duplicate event name `{name}`: variant `{}` already uses it",
                    first.ident
                ),
            );
        }
    }
}
