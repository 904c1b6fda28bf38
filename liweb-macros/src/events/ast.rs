//! The enum as the derive sees it, keeping the syn nodes for spans.

use proc_macro2::Span;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, Type, Visibility};

use super::attr;
use crate::ctxt::Ctxt;

pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) generics: &'a syn::Generics,
    pub(crate) variants: Vec<Variant<'a>>,
    /// `#[event(typescript)]` was given.
    pub(crate) typescript: bool,
}

pub(crate) struct Variant<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) attrs: &'a [Attribute],
    pub(crate) shape: Shape<'a>,
    /// The wire name.
    pub(crate) name: String,
    /// Where the wire name comes from: the `name = "..."` literal or the ident.
    pub(crate) name_span: Span,
    /// The tokens to point at when the wire name is wrong.
    pub(crate) name_tokens: proc_macro2::TokenStream,
}

pub(crate) enum Shape<'a> {
    Unit,
    Newtype(&'a Type),
    Struct(Vec<Field<'a>>),
    /// A shape the derive cannot encode; `valid` reports it.
    Unsupported(&'a Fields),
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: &'a [Attribute],
}

impl<'a> Container<'a> {
    pub(crate) fn from_ast(cx: &mut Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let Data::Enum(data) = &input.data else {
            cx.error_spanned_by(
                &input.ident,
                "`Events` can only be derived for enums: each variant is one event",
            );
            return None;
        };
        let attrs = attr::container(cx, &input.attrs);
        let variants = data
            .variants
            .iter()
            .map(|variant| {
                let variant_attrs = attr::variant(cx, &variant.attrs);
                let (name, name_span, name_tokens) = match &variant_attrs.name {
                    Some(lit) => (lit.value(), lit.span(), quote::quote!(#lit)),
                    None => {
                        let ident = &variant.ident;
                        (
                            attrs.rename_all.apply(&ident.to_string()),
                            ident.span(),
                            quote::quote!(#ident),
                        )
                    }
                };
                let shape = match &variant.fields {
                    Fields::Unit => Shape::Unit,
                    Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                        Shape::Newtype(&fields.unnamed[0].ty)
                    }
                    Fields::Named(fields) => Shape::Struct(
                        fields
                            .named
                            .iter()
                            .map(|field| Field {
                                ident: field.ident.as_ref().expect("named fields have idents"),
                                ty: &field.ty,
                                attrs: &field.attrs,
                            })
                            .collect(),
                    ),
                    other => Shape::Unsupported(other),
                };
                Variant {
                    ident: &variant.ident,
                    attrs: &variant.attrs,
                    shape,
                    name,
                    name_span,
                    name_tokens,
                }
            })
            .collect();
        Some(Container {
            ident: &input.ident,
            vis: &input.vis,
            generics: &input.generics,
            variants,
            typescript: attrs.typescript,
        })
    }
}
