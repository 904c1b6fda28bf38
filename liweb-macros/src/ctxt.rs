//! Collects errors so a macro reports every mistake at once.

use std::{fmt::Display, thread};

use quote::ToTokens;

/// Errors collected while a macro runs. It must be consumed by
/// [`Ctxt::check`]: dropping it unchecked panics, so no error is ever lost
/// (serde_derive's drop bomb).
pub(crate) struct Ctxt {
    /// `None` once checked.
    errors: Option<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Self {
            errors: Some(Vec::new()),
        }
    }

    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors
            .as_mut()
            .expect("`Ctxt` used after `check`")
            .push(error);
    }

    /// Every error collected so far, combined into one.
    pub(crate) fn check(mut self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .take()
            .expect("`check` is called once")
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if self.errors.is_some() && !thread::panicking() {
            panic!("a `Ctxt` was dropped without `check`: its errors would be lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;

    use super::Ctxt;

    #[test]
    fn check_combines_every_error_in_order() {
        let mut cx = Ctxt::new();
        cx.push(syn::Error::new(Span::call_site(), "first"));
        cx.push(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = cx
            .check()
            .unwrap_err()
            .into_iter()
            .map(|error| error.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn check_without_errors_is_ok() {
        assert!(Ctxt::new().check().is_ok());
    }

    #[test]
    #[should_panic(expected = "dropped without `check`")]
    fn dropping_unchecked_panics() {
        let _ = Ctxt::new();
    }
}
