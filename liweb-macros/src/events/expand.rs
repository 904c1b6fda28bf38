//! Code generation for `#[derive(Events)]`.

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{DeriveInput, Visibility, spanned::Spanned};

use super::{
    ast::{Container, Shape, Variant},
    attr,
};

pub(crate) fn expand(container: &Container<'_>) -> TokenStream {
    let ident = container.ident;
    let vis = container.vis;
    let module = crate::names::companion_module(ident);
    let module_doc = format!("The event keys of [`{ident}`], one type per variant.");

    let keys = container
        .variants
        .iter()
        .map(|variant| key_item(container, variant));
    let key_impls = container
        .variants
        .iter()
        .enumerate()
        .map(|(index, variant)| key_impl(container, &module, index, variant));
    let events_impl = events_impl(container, &module);
    let from_impls = from_impls(container, &module);
    let typescript = container
        .typescript
        .then(|| typescript_impl(container, &module));

    quote! {
        #[doc = #module_doc]
        #[allow(unreachable_pub, missing_debug_implementations, non_camel_case_types)]
        #vis mod #module {
            #(#keys)*
        }

        const _: () = {
            #(#key_impls)*
            #events_impl
            #(#from_impls)*
            #typescript
        };
    }
}

/// The `liweb::typescript::EventMap` implementation, through liweb's
/// `ts_events!` so that it needs liweb's `typescript` feature only when asked
/// for.
fn typescript_impl(container: &Container<'_>, module: &syn::Ident) -> TokenStream {
    let enum_ident = container.ident;
    let visitor = format_ident!("__events");
    let entries = container.variants.iter().map(|variant| {
        let name = &variant.name;
        let ident = variant.ident;
        match &variant.shape {
            Shape::Unit | Shape::Unsupported(_) => quote!(#visitor.unit(#name);),
            Shape::Newtype(ty) => quote_spanned!(ty.span()=> #visitor.payload::<#ty>(#name);),
            Shape::Struct(_) => quote!(#visitor.object::<#module::#ident>(#name);),
        }
    });
    quote! {
        ::liweb::__private::ts_events!(#enum_ident, #visitor, { #(#entries)* });
    }
}

/// The enum's visibility, as written `depth` modules further in: a private
/// enum's keys must still be reachable where the enum is.
fn nested_vis(vis: &Visibility, depth: usize) -> TokenStream {
    let supers = |extra: usize| {
        let supers = std::iter::repeat_n(quote!(super), depth + extra);
        quote!(#(#supers)::*)
    };
    match vis {
        Visibility::Public(_) => quote!(pub),
        Visibility::Inherited => {
            let path = supers(0);
            quote!(pub(in #path))
        }
        Visibility::Restricted(restricted) => {
            let path = &restricted.path;
            let first = path
                .segments
                .first()
                .map(|segment| segment.ident.to_string());
            match first.as_deref() {
                Some("crate") => quote!(#vis),
                Some("self") if path.segments.len() == 1 => {
                    let path = supers(0);
                    quote!(pub(in #path))
                }
                Some("self") => {
                    let rest = path.segments.iter().skip(1);
                    let prefix = supers(0);
                    quote!(pub(in #prefix::#(#rest)::*))
                }
                _ => {
                    let prefix = supers(0);
                    quote!(pub(in #prefix::#path))
                }
            }
        }
    }
}

/// The key type of one variant, inside the companion module.
fn key_item(container: &Container<'_>, variant: &Variant<'_>) -> TokenStream {
    let enum_ident = container.ident;
    let vis1 = nested_vis(container.vis, 1);
    let vis2 = nested_vis(container.vis, 2);
    let ident = variant.ident;
    let name = &variant.name;
    let docs = attr::docs(variant.attrs);
    match &variant.shape {
        Shape::Struct(fields) => {
            let doc = format!(
                "The key and payload of the `{name}` event ([`{enum_ident}::{ident}`](super::{enum_ident}::{ident}))."
            );
            let inner = format_ident!("__{}", ident.to_string().to_snake_case());
            let serde_container = attr::serde_attrs(variant.attrs);
            let fields = fields.iter().map(|field| {
                let field_ident = field.ident;
                let ty = field.ty;
                let docs = attr::docs(field.attrs);
                let serde = attr::serde_attrs(field.attrs);
                let ts = if container.typescript {
                    attr::ts_attrs(field.attrs)
                } else {
                    Vec::new()
                };
                quote!(#(#docs)* #(#serde)* #(#ts)* #vis2 #field_ident: #ty,)
            });
            let item = quote! {
                #[doc = #doc]
                #(#docs)*
                #[derive(::liweb::__private::serde::Serialize, ::liweb::__private::serde::Deserialize)]
                #[serde(crate = "::liweb::__private::serde")]
                #(#serde_container)*
                #vis2 struct #ident {
                    #(#fields)*
                }
            };
            let item = if container.typescript {
                quote!(::liweb::__private::ts_struct! { #item })
            } else {
                item
            };
            quote! {
                mod #inner {
                    // The payload's field types resolve where the enum is
                    // declared; only this variant's own name is shadowed here.
                    #[allow(unused_imports)]
                    use super::super::*;

                    #item
                }
                #vis1 use self::#inner::#ident;
            }
        }
        _ => {
            let doc = format!(
                "The key of the `{name}` event ([`{enum_ident}::{ident}`](super::{enum_ident}::{ident}))."
            );
            quote! {
                #[doc = #doc]
                #[derive(
                    ::core::fmt::Debug,
                    ::core::clone::Clone,
                    ::core::marker::Copy,
                    ::core::cmp::PartialEq,
                    ::core::cmp::Eq,
                    ::core::hash::Hash,
                    ::core::default::Default,
                )]
                #vis1 struct #ident;
            }
        }
    }
}

fn payload_type(module: &syn::Ident, variant: &Variant<'_>) -> TokenStream {
    let ident = variant.ident;
    match &variant.shape {
        Shape::Unit | Shape::Unsupported(_) => quote!(()),
        // Spanned so a missing `Serialize`/`Deserialize` points at the field type.
        Shape::Newtype(ty) => quote_spanned!(ty.span()=> #ty),
        Shape::Struct(_) => quote!(#module::#ident),
    }
}

fn key_impl(
    container: &Container<'_>,
    module: &syn::Ident,
    index: usize,
    variant: &Variant<'_>,
) -> TokenStream {
    let enum_ident = container.ident;
    let ident = variant.ident;
    let name = &variant.name;
    let payload = payload_type(module, variant);
    let into_event = match &variant.shape {
        Shape::Unit => quote!(#enum_ident::#ident),
        // Expanded only beside the error `valid` reports for it.
        Shape::Unsupported(_) => {
            quote!(::core::unreachable!(
                "liweb reported a compile error for this variant"
            ))
        }
        Shape::Newtype(_) => quote!(#enum_ident::#ident(payload)),
        Shape::Struct(fields) => {
            let idents = fields.iter().map(|field| field.ident);
            let idents2 = fields.iter().map(|field| field.ident);
            quote!(#enum_ident::#ident { #(#idents: payload.#idents2),* })
        }
    };
    let unused = matches!(variant.shape, Shape::Unit | Shape::Unsupported(_))
        .then(|| quote!(let _ = payload;));
    quote! {
        #[automatically_derived]
        impl ::liweb::__private::EventKey for #module::#ident {
            type Events = #enum_ident;
            type Payload = #payload;
            const NAME: &'static ::core::primitive::str = #name;
            const INDEX: ::core::primitive::usize = #index;
            fn into_event(payload: Self::Payload) -> #enum_ident {
                #unused
                #into_event
            }
        }
    }
}

fn events_impl(container: &Container<'_>, module: &syn::Ident) -> TokenStream {
    let enum_ident = container.ident;
    let names: Vec<&String> = container
        .variants
        .iter()
        .map(|variant| &variant.name)
        .collect();
    let missing = container.variants.iter().map(|variant| {
        format!(
            "`{enum_ident}` is exhaustive and event `{}` (`{enum_ident}::{}`) has no handler",
            variant.name, variant.ident
        )
    });
    let index_arms = container
        .variants
        .iter()
        .enumerate()
        .map(|(index, variant)| {
            let ident = variant.ident;
            match &variant.shape {
                Shape::Unit => quote!(Self::#ident => #index,),
                Shape::Newtype(_) | Shape::Unsupported(_) => quote!(Self::#ident(..) => #index,),
                Shape::Struct(_) => quote!(Self::#ident { .. } => #index,),
            }
        });
    let name_arms = names
        .iter()
        .enumerate()
        .map(|(index, name)| quote!(#name => ::core::option::Option::Some(#index),));
    let decode_arms = container
        .variants
        .iter()
        .enumerate()
        .map(|(index, variant)| {
            let ident = variant.ident;
            quote! {
                #index => ::core::result::Result::map(
                    <D as ::liweb::__private::PayloadDecoder>::decode::<
                        <#module::#ident as ::liweb::__private::EventKey>::Payload,
                    >(payload),
                    <#module::#ident as ::liweb::__private::EventKey>::into_event,
                ),
            }
        });
    let mut ref_structs = Vec::new();
    let serialize_arms: Vec<_> = container
        .variants
        .iter()
        .map(|variant| {
            let ident = variant.ident;
            match &variant.shape {
                Shape::Unit => quote! {
                    Self::#ident => ::liweb::__private::serde::Serializer::serialize_unit(__serializer),
                },
                Shape::Unsupported(_) => quote! {
                    Self::#ident(..) => ::liweb::__private::serde::Serializer::serialize_unit(__serializer),
                },
                Shape::Newtype(_) => quote! {
                    Self::#ident(payload) => ::liweb::__private::serde::Serialize::serialize(payload, __serializer),
                },
                Shape::Struct(fields) => {
                    let ref_ident = format_ident!("__LiwebRef{}", ident);
                    let ident_str = ident.to_string();
                    let serde_container = attr::serde_attrs(variant.attrs);
                    let ref_fields = fields.iter().map(|field| {
                        let field_ident = field.ident;
                        let ty = field.ty;
                        let serde = attr::serde_attrs(field.attrs);
                        quote!(#(#serde)* #field_ident: &'__a #ty,)
                    });
                    ref_structs.push(quote! {
                        #[derive(::liweb::__private::serde::Serialize)]
                        #[serde(crate = "::liweb::__private::serde", rename = #ident_str)]
                        #(#serde_container)*
                        struct #ref_ident<'__a> {
                            #(#ref_fields)*
                        }
                    });
                    let idents: Vec<_> = fields.iter().map(|field| field.ident).collect();
                    quote! {
                        Self::#ident { #(#idents),* } => ::liweb::__private::serde::Serialize::serialize(
                            &#ref_ident { #(#idents),* },
                            __serializer,
                        ),
                    }
                }
            }
        })
        .collect();
    quote! {
        #(#ref_structs)*

        #[automatically_derived]
        impl ::liweb::__private::Events for #enum_ident {
            const NAMES: &'static [&'static ::core::primitive::str] = &[#(#names),*];
            const MISSING_HANDLER: &'static [&'static ::core::primitive::str] = &[#(#missing),*];

            fn index(&self) -> ::core::primitive::usize {
                match self {
                    #(#index_arms)*
                }
            }

            fn index_of(
                name: &::core::primitive::str,
            ) -> ::core::option::Option<::core::primitive::usize> {
                // Two variants share a name only beside the error saying so.
                #[allow(unreachable_patterns)]
                match name {
                    #(#name_arms)*
                    _ => ::core::option::Option::None,
                }
            }

            fn decode<D: ::liweb::__private::PayloadDecoder>(
                index: ::core::primitive::usize,
                payload: D,
            ) -> ::core::option::Option<::core::result::Result<Self, D::Error>> {
                ::core::option::Option::Some(match index {
                    #(#decode_arms)*
                    _ => return ::core::option::Option::None,
                })
            }

            fn serialize_payload<__S: ::liweb::__private::serde::Serializer>(
                &self,
                __serializer: __S,
            ) -> ::core::result::Result<__S::Ok, __S::Error> {
                match self {
                    #(#serialize_arms)*
                }
            }
        }
    }
}

/// `From<Payload>` for newtype variants whose payload type no other newtype
/// variant shares, and `From<key>` for struct variants.
fn from_impls(container: &Container<'_>, module: &syn::Ident) -> Vec<TokenStream> {
    let enum_ident = container.ident;
    let newtype_types: Vec<String> = container
        .variants
        .iter()
        .filter_map(|variant| match &variant.shape {
            Shape::Newtype(ty) => Some(quote!(#ty).to_string()),
            _ => None,
        })
        .collect();
    container
        .variants
        .iter()
        .filter_map(|variant| {
            let ident = variant.ident;
            match &variant.shape {
                Shape::Newtype(ty) => {
                    let text = quote!(#ty).to_string();
                    (newtype_types.iter().filter(|other| **other == text).count() == 1).then(|| {
                        quote! {
                            #[automatically_derived]
                            impl ::core::convert::From<#ty> for #enum_ident {
                                fn from(payload: #ty) -> Self {
                                    Self::#ident(payload)
                                }
                            }
                        }
                    })
                }
                Shape::Struct(_) => Some(quote! {
                    #[automatically_derived]
                    impl ::core::convert::From<#module::#ident> for #enum_ident {
                        fn from(payload: #module::#ident) -> Self {
                            <#module::#ident as ::liweb::__private::EventKey>::into_event(payload)
                        }
                    }
                }),
                _ => None,
            }
        })
        .collect()
}

/// What an enum with errors expands to beside them, so that its uses, and
/// handlers naming its keys, do not add errors of their own: the usual
/// expansion when the enum can have one (wire names the errors concern are
/// still valid Rust), else a stub `Events` impl.
pub(crate) fn fallback(input: &DeriveInput, container: Option<Container<'_>>) -> TokenStream {
    if !matches!(input.data, syn::Data::Enum(_))
        || !input.generics.params.is_empty()
        || input.generics.where_clause.is_some()
    {
        return TokenStream::new();
    }
    if let Some(mut container) = container.filter(|container| !container.variants.is_empty()) {
        // Without liweb's `typescript` feature this would add an error.
        container.typescript = false;
        return expand(&container);
    }
    let ident = &input.ident;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::liweb::__private::Events for #ident {
                const NAMES: &'static [&'static ::core::primitive::str] = &[];
                const MISSING_HANDLER: &'static [&'static ::core::primitive::str] = &[];
                fn index(&self) -> ::core::primitive::usize {
                    0
                }
                fn index_of(
                    _: &::core::primitive::str,
                ) -> ::core::option::Option<::core::primitive::usize> {
                    ::core::option::Option::None
                }
                fn decode<D: ::liweb::__private::PayloadDecoder>(
                    _: ::core::primitive::usize,
                    _: D,
                ) -> ::core::option::Option<::core::result::Result<Self, D::Error>> {
                    ::core::option::Option::None
                }
                fn serialize_payload<__S: ::liweb::__private::serde::Serializer>(
                    &self,
                    __serializer: __S,
                ) -> ::core::result::Result<__S::Ok, __S::Error> {
                    ::liweb::__private::serde::Serializer::serialize_unit(__serializer)
                }
            }
        };
    }
}
