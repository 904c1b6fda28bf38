//! Names both macros must agree on.

use heck::ToSnakeCase;
use proc_macro2::Ident;

/// The companion module of an `Events` enum: its name in `snake_case`
/// (`ChatIn` → `chat_in`), as a raw identifier when that is a keyword
/// (`In` → `r#in`).
pub(crate) fn companion_module(enum_ident: &Ident) -> Ident {
    let name = enum_ident.to_string().to_snake_case();
    if syn::parse_str::<Ident>(&name).is_ok() {
        Ident::new(&name, enum_ident.span())
    } else if matches!(name.as_str(), "crate" | "self" | "super") {
        // These cannot be raw identifiers.
        Ident::new(&format!("{name}_"), enum_ident.span())
    } else {
        Ident::new_raw(&name, enum_ident.span())
    }
}
