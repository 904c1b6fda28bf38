//! `#[liweb::handler(Enum::Variant)]`: turns an `async fn` into a unit value
//! implementing `liweb::Handler` for that event.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{
    FnArg, GenericArgument, ItemFn, Path, PathArguments, ReturnType, Token, Type,
    parse::{Parse, ParseStream},
    spanned::Spanned,
};

use crate::ctxt::Ctxt;

pub(crate) struct Args {
    event: Path,
    out: Option<Type>,
    guards: Vec<syn::Expr>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error(
                "expected the event this handler handles: `#[liweb::handler(ChatIn::Message)]`",
            ));
        }
        let event: Path = input.parse()?;
        let mut out = None;
        let mut guards = Vec::new();
        while input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            let key: syn::Ident = input.parse()?;
            if key == "out" {
                input.parse::<Token![=]>()?;
                if out.is_some() {
                    return Err(syn::Error::new(
                        key.span(),
                        "duplicate liweb attribute `out`",
                    ));
                }
                out = Some(input.parse()?);
            } else if key == "guard" {
                input.parse::<Token![=]>()?;
                guards.push(input.parse()?);
            } else {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown liweb handler attribute `{key}`; expected `out = Type` or `guard = path`"
                    ),
                ));
            }
        }
        Ok(Self { event, out, guards })
    }
}

pub(crate) fn expand(args: Args, item: ItemFn) -> syn::Result<TokenStream> {
    let mut cx = Ctxt::new();
    let sig = &item.sig;
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
    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                cx.error_spanned_by(receiver, "handlers cannot take `self`")
            }
            FnArg::Typed(pat_type) => {
                if let Type::ImplTrait(_) = &*pat_type.ty {
                    cx.error_spanned_by(
                        &pat_type.ty,
                        "handler arguments cannot be `impl Trait`: name the extractor type",
                    );
                } else if let Type::Reference(_) = &*pat_type.ty {
                    cx.error_spanned_by(
                        &pat_type.ty,
                        "handler arguments are owned extractors, not references",
                    );
                }
                arg_types.push(&*pat_type.ty);
            }
        }
    }

    // `ChatIn::Message` → enum `ChatIn`, key `chat_in::Message`.
    let segments = &args.event.segments;
    if segments.len() < 2 {
        cx.error_spanned_by(
            &args.event,
            "expected `Enum::Variant`, the event this handler handles: `#[liweb::handler(ChatIn::Message)]`",
        );
    }
    cx.check()?;

    let variant = &segments[segments.len() - 1].ident;
    let enum_segment = &segments[segments.len() - 2];
    let mut enum_path = args.event.clone();
    enum_path.segments.pop();
    let enum_path = strip_trailing_punct(enum_path);
    let module = crate::names::companion_module(&enum_segment.ident);
    let mut module_path = enum_path.clone();
    module_path
        .segments
        .last_mut()
        .expect("two segments or more")
        .ident = module;
    let key = quote_spanned!(variant.span()=> #module_path::#variant);

    let out = args
        .out
        .clone()
        .or_else(|| arg_types.iter().find_map(|ty| out_type_of(ty)));
    let (impl_generics, out_ty) = match &out {
        Some(out) => (quote!(), quote!(#out)),
        None => (quote!(<__Out: ::liweb::__private::Events>), quote!(__Out)),
    };

    let vis = &item.vis;
    let name = &sig.ident;
    let docs: Vec<_> = item
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .collect();
    let other_attrs: Vec<_> = item
        .attrs
        .iter()
        .filter(|attr| !attr.path().is_ident("doc"))
        .collect();
    let block = &item.block;
    let mut handle_sig = sig.clone();
    handle_sig.ident = format_ident!("handle", span = sig.ident.span());

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
    let doc_value = format!(
        "Handler of the [`{}`] event; the function itself is [`{name}::handle`].",
        quote!(#enum_path::#variant).to_string().replace(' ', "")
    );

    // The handler is two items with the function's name: a braced struct in
    // the type namespace (it implements `Handler`) and a function in the
    // value namespace whose signature names that struct, so
    // `.handler(on_message)` finds it. Unlike a unit struct or a const, a
    // function never captures a pattern, so `on_message` stays usable as a
    // binding name, inside the handler or anywhere else in the module.
    Ok(quote! {
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
    })
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
