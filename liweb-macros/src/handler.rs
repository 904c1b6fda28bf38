//! `#[liweb::handler(Enum::Variant)]`: turns an `async fn` into a unit value
//! implementing `liweb::Handler` for that event.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, Path, PathArguments, ReturnType, Signature, Token, Type,
    parse::{ParseStream, Parser, discouraged::Speculative},
    spanned::Spanned,
};

use crate::ctxt::Ctxt;

const EXPECTED_EVENT: &str =
    "expected the event this handler handles: `#[liweb::handler(ChatIn::Message)]`";

/// The attribute's arguments: `Enum::Variant, out = Type, guard = path, ..`.
struct Args {
    /// `None` when missing or malformed; the `Ctxt` says why.
    event: Option<Path>,
    out: Option<Type>,
    guards: Vec<syn::Expr>,
}

impl Args {
    /// Parses every argument, reporting each mistake and moving on to the
    /// next comma so the arguments after it are still checked.
    fn parse(cx: &mut Ctxt, tokens: TokenStream) -> Self {
        let mut args = Self {
            event: None,
            out: None,
            guards: Vec::new(),
        };
        let parser = |input: ParseStream<'_>| {
            args.parse_all(cx, input);
            Ok(())
        };
        // `parse_all` consumes every token, so this only fails if it is wrong.
        if let Err(error) = parser.parse2(tokens) {
            cx.push(error);
        }
        args
    }

    fn parse_all(&mut self, cx: &mut Ctxt, input: ParseStream<'_>) {
        if input.is_empty() {
            // `input.error` would prefix "unexpected end of input".
            cx.push(syn::Error::new(Span::call_site(), EXPECTED_EVENT));
            return;
        }
        let mut first = true;
        while !input.is_empty() {
            let result = if first && !(input.peek(Ident) && input.peek2(Token![=])) {
                input.parse().map(|event| self.event = Some(event))
            } else {
                if first {
                    cx.push(input.error(EXPECTED_EVENT));
                }
                self.parse_option(cx, input)
            };
            first = false;
            match result {
                Ok(()) if input.is_empty() || input.peek(Token![,]) => {}
                Ok(()) => {
                    cx.push(input.error("expected `,` between handler attributes"));
                    skip_to_comma(input);
                }
                Err(error) => {
                    cx.push(error);
                    skip_to_comma(input);
                }
            }
            let _ = input.parse::<Option<Token![,]>>();
        }
    }

    /// One `key = value` after the event.
    fn parse_option(&mut self, cx: &mut Ctxt, input: ParseStream<'_>) -> syn::Result<()> {
        let key: Ident = input.parse()?;
        if key == "out" {
            input.parse::<Token![=]>()?;
            let out = input.parse()?;
            if self.out.is_some() {
                cx.error_spanned_by(&key, "duplicate liweb attribute `out`");
            } else {
                self.out = Some(out);
            }
        } else if key == "guard" {
            input.parse::<Token![=]>()?;
            self.guards.push(input.parse()?);
        } else {
            cx.error_spanned_by(
                &key,
                format!(
                    "unknown liweb handler attribute `{key}`; expected `out = Type` or `guard = path`"
                ),
            );
            skip_value(input);
        }
        Ok(())
    }
}

/// Steps over the `= value` of an unknown key: as an expression when it is
/// one, so a closure's commas do not end it early.
fn skip_value(input: ParseStream<'_>) {
    let fork = input.fork();
    let is_expr = fork.parse::<Token![=]>().is_ok()
        && fork.parse::<syn::Expr>().is_ok()
        && (fork.is_empty() || fork.peek(Token![,]));
    if is_expr {
        input.advance_to(&fork);
    } else {
        skip_to_comma(input);
    }
}

fn skip_to_comma(input: ParseStream<'_>) {
    while !input.is_empty() && !input.peek(Token![,]) {
        let _ = input.parse::<TokenTree>();
    }
}

/// The handled event, from `Enum::Variant`.
struct Event {
    /// `Enum`, with the path written before it.
    enum_path: Path,
    variant: Ident,
    /// The variant's key type: `ChatIn::Message` → `chat_in::Message`.
    key: TokenStream,
}

impl Event {
    fn from_path(cx: &mut Ctxt, path: &Path) -> Option<Self> {
        let segments = &path.segments;
        if segments.len() < 2 {
            cx.error_spanned_by(
                path,
                "expected `Enum::Variant`, the event this handler handles: `#[liweb::handler(ChatIn::Message)]`",
            );
            return None;
        }
        let variant = segments[segments.len() - 1].ident.clone();
        let enum_ident = &segments[segments.len() - 2].ident;
        let mut enum_path = path.clone();
        enum_path.segments.pop();
        let enum_path = strip_trailing_punct(enum_path);
        let mut module_path = enum_path.clone();
        module_path
            .segments
            .last_mut()
            .expect("two segments or more")
            .ident = crate::names::companion_module(enum_ident);
        let key = quote_spanned!(variant.span()=> #module_path::#variant);
        Some(Self {
            enum_path,
            variant,
            key,
        })
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    let args = Args::parse(&mut cx, args);
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            // Not a function: there is no handler to stand in for, so the
            // item stays as written and only the error is added.
            cx.push(error);
            let errors = cx.check().expect_err("an error was just pushed");
            let mut tokens = errors.into_compile_error();
            tokens.extend(item);
            return Ok(tokens);
        }
    };
    check_signature(&mut cx, &function.sig);
    let event = args
        .event
        .as_ref()
        .and_then(|path| Event::from_path(&mut cx, path));
    match (cx.check(), event) {
        (Ok(()), Some(event)) => Ok(handler(&args, &event, &function)),
        (Err(errors), event) => {
            // The function and a stub `Handler` impl keep the name a handler,
            // so one mistake does not add an error where it is registered.
            let mut tokens = errors.into_compile_error();
            tokens.extend(fallback(&args, event.as_ref(), &function));
            Ok(tokens)
        }
        (Ok(()), None) => unreachable!("a missing event is reported to the `Ctxt`"),
    }
}

/// Reports every signature a handler cannot have.
fn check_signature(cx: &mut Ctxt, sig: &Signature) {
    if sig.asyncness.is_none() {
        cx.error_spanned_by(sig.fn_token, "handlers must be `async fn`s");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "handlers cannot be generic: each argument needs one concrete type",
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "handlers cannot be variadic");
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                cx.error_spanned_by(receiver, "handlers cannot take `self`")
            }
            FnArg::Typed(pat_type) => match &*pat_type.ty {
                Type::ImplTrait(_) => cx.error_spanned_by(
                    &pat_type.ty,
                    "handler arguments cannot be `impl Trait`: name the extractor type",
                ),
                Type::Reference(_) => cx.error_spanned_by(
                    &pat_type.ty,
                    "handler arguments are owned extractors, not references",
                ),
                _ => {}
            },
        }
    }
}

fn arg_types(sig: &Signature) -> Vec<&Type> {
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(pat_type) => Some(&*pat_type.ty),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// The `Out` type parameter of the `Handler` impl and its generics: the
/// `out = Type` given, or the one a `Conn<Out>` or `Server<In, Out>` argument
/// names, or any `Out`.
fn out_type(args: &Args, sig: &Signature) -> (TokenStream, TokenStream) {
    let out = args
        .out
        .clone()
        .or_else(|| arg_types(sig).into_iter().find_map(out_type_of));
    match out {
        Some(out) => (quote!(), quote!(#out)),
        None => (quote!(<__Out: ::liweb::__private::Events>), quote!(__Out)),
    }
}

/// The items the handler's name stands for, with the user's function as
/// `name::handle`.
///
/// The handler is two items with the function's name: a braced struct in the
/// type namespace (it implements `Handler`) and a function in the value
/// namespace whose signature names that struct, so `.handler(on_message)`
/// finds it. Unlike a unit struct or a const, a function never captures a
/// pattern, so `on_message` stays usable as a binding name, inside the
/// handler or anywhere else in the module.
fn named_items(function: &ItemFn, event: Option<&Event>) -> TokenStream {
    let sig = &function.sig;
    let vis = &function.vis;
    let name = &sig.ident;
    let docs: Vec<_> = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .collect();
    let other_attrs: Vec<_> = function
        .attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("doc"))
        .collect();
    let block = &function.block;
    let mut handle_sig = sig.clone();
    handle_sig.ident = format_ident!("handle", span = sig.ident.span());
    // Reported already; a variadic `fn` outside `extern` would only add
    // rustc's own error.
    handle_sig.variadic = None;
    let doc_value = match event {
        Some(Event {
            enum_path, variant, ..
        }) => format!(
            "Handler of the [`{}`] event; the function itself is [`{name}::handle`].",
            quote!(#enum_path::#variant).to_string().replace(' ', "")
        ),
        None => format!("Handler; the function itself is [`{name}::handle`]."),
    };
    quote! {
        #(#docs)*
        #[doc = ""]
        #[doc = #doc_value]
        #[allow(non_camel_case_types)]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy)]
        #vis struct #name {}

        #(#docs)*
        #[doc = ""]
        #[doc = #doc_value]
        #[allow(dead_code)]
        #vis fn #name(_: ::liweb::__private::HandlerTag<#name>) -> #name {
            #name {}
        }

        impl #name {
            #(#docs)*
            #(#other_attrs)*
            #vis #handle_sig #block
        }
    }
}

fn handler(args: &Args, event: &Event, function: &ItemFn) -> TokenStream {
    let Event { enum_path, key, .. } = event;
    let sig = &function.sig;
    let name = &sig.ident;
    let (impl_generics, out_ty) = out_type(args, sig);
    let arg_types = arg_types(sig);
    let arg_idents: Vec<_> = (0..arg_types.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();
    let extractions = arg_types.iter().zip(&arg_idents).map(|(ty, ident)| {
        quote_spanned! {ty.span()=>
            let #ident = <#ty as ::liweb::__private::FromEvent<#key, <#key as ::liweb::__private::EventKey>::Payload, #enum_path, #out_ty, _>>::from_event(&mut __parts)?;
        }
    });
    let guard_idents: Vec<_> = (0..args.guards.len())
        .map(|i| format_ident!("__guard{}", i))
        .collect();
    let guard_starts = args.guards.iter().zip(&guard_idents).map(|(guard, ident)| {
        quote_spanned! {guard.span()=>
            let #ident = ::liweb::__private::start_guard::<#key, #enum_path, #out_ty, _, _>(#guard, &__parts)?;
        }
    });
    let guard_checks = guard_idents.iter().map(|ident| {
        quote! {
            if let ::core::result::Result::Err(__reason) = #ident.await {
                return ::core::result::Result::Ok(::liweb::__private::Outcome::Rejected(__reason));
            }
        }
    });
    let output_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let into_result = quote_spanned! {output_span=>
        ::liweb::__private::IntoHandlerResult::into_handler_result(__output)
    };
    let items = named_items(function, Some(event));
    quote! {
        #items

        const _: () = {
            #[automatically_derived]
            impl ::liweb::__private::HandlerEvent for #name {
                type Event = #key;
            }

            #[automatically_derived]
            impl #impl_generics ::liweb::__private::Handler<#enum_path, #out_ty> for #name {
                type Event = #key;

                fn call(
                    &self,
                    __call: ::liweb::__private::Call<'_, #enum_path, #out_ty>,
                ) -> ::core::result::Result<::liweb::__private::HandlerFuture, ::liweb::__private::ExtractError> {
                    #[allow(unused_mut, unused_variables)]
                    let mut __parts = ::liweb::__private::EventParts::<#key, #enum_path, #out_ty>::new(__call)?;
                    #(#guard_starts)*
                    #(#extractions)*
                    ::core::result::Result::Ok(::liweb::__private::Box::pin(async move {
                        #(#guard_checks)*
                        let __output = #name::handle(#(#arg_idents),*).await;
                        #into_result
                    }))
                }
            }
        };
    }
}

/// What a handler with errors expands to besides them: its items and a
/// `Handler` impl that never runs, for the event when it is known and for
/// every event otherwise.
fn fallback(args: &Args, event: Option<&Event>, function: &ItemFn) -> TokenStream {
    let name = &function.sig.ident;
    let items = named_items(function, event);
    let never = quote! {
        ::core::unreachable!("liweb reported a compile error for this handler")
    };
    let impls = match event {
        Some(Event { enum_path, key, .. }) => {
            let (impl_generics, out_ty) = out_type(args, &function.sig);
            quote! {
                #[automatically_derived]
                impl ::liweb::__private::HandlerEvent for #name {
                    type Event = #key;
                }

                #[automatically_derived]
                impl #impl_generics ::liweb::__private::Handler<#enum_path, #out_ty> for #name {
                    type Event = #key;

                    fn call(
                        &self,
                        _: ::liweb::__private::Call<'_, #enum_path, #out_ty>,
                    ) -> ::core::result::Result<::liweb::__private::HandlerFuture, ::liweb::__private::ExtractError> {
                        #never
                    }
                }
            }
        }
        None => quote! {
            #[allow(unreachable_pub, missing_debug_implementations)]
            pub struct __UnknownEvent<__In>(::core::marker::PhantomData<fn() -> __In>);

            #[automatically_derived]
            impl<__In: ::liweb::__private::Events> ::liweb::__private::EventKey for __UnknownEvent<__In> {
                type Events = __In;
                type Payload = ();
                const NAME: &'static ::core::primitive::str = "";
                const INDEX: ::core::primitive::usize = 0;
                fn into_event(_: ()) -> __In {
                    #never
                }
            }

            #[automatically_derived]
            impl<__In: ::liweb::__private::Events, __Out: ::liweb::__private::Events>
                ::liweb::__private::Handler<__In, __Out> for #name
            {
                type Event = __UnknownEvent<__In>;

                fn call(
                    &self,
                    _: ::liweb::__private::Call<'_, __In, __Out>,
                ) -> ::core::result::Result<::liweb::__private::HandlerFuture, ::liweb::__private::ExtractError> {
                    #never
                }
            }
        },
    };
    quote! {
        #items

        const _: () = {
            #impls
        };
    }
}

/// The `Out` of a `Conn<Out>` or `Server<In, Out>` argument.
fn out_type_of(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match (last.ident.to_string().as_str(), types.as_slice()) {
        ("Conn", [out]) | ("Server", [_, out]) => Some((*out).clone()),
        _ => None,
    }
}

fn strip_trailing_punct(mut path: Path) -> Path {
    if let Some(pair) = path.segments.pop() {
        path.segments.push(pair.into_value());
    }
    path
}
