//! `#[derive(Events)]`, in phases: `attr` parses attributes, `ast` builds the
//! intermediate form, `valid` checks it, `expand` writes the code.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::ctxt::Ctxt;

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    let container = ast::Container::from_ast(&mut cx, input);
    if let Some(container) = &container {
        valid::check(&mut cx, container);
    }
    match (cx.check(), container) {
        (Ok(()), Some(container)) => Ok(expand::expand(&container)),
        (Err(errors), container) => {
            // What the enum would have expanded to keeps one mistake from
            // cascading into errors at every use of the enum and its keys.
            let mut tokens = errors.into_compile_error();
            tokens.extend(expand::fallback(input, container));
            Ok(tokens)
        }
        (Ok(()), None) => unreachable!("`from_ast` reports why it returns `None`"),
    }
}
