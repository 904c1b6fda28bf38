//! Procedural macros of [liweb](https://docs.rs/liweb). Use them through the
//! `liweb` crate, which re-exports them and documents them.

mod ctxt;
mod events;
mod handler;
mod names;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `liweb::Events` for an enum of events. See `liweb::Events`.
#[proc_macro_derive(Events, attributes(event, serde, ts))]
pub fn derive_events(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    events::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Turns an `async fn` into a handler of one event. See `liweb::handler`.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
