//! `#[event(...)]` attributes on the enum and on its variants.

use heck::{
    ToKebabCase, ToLowerCamelCase, ToShoutyKebabCase, ToShoutySnakeCase, ToSnakeCase,
    ToUpperCamelCase,
};
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Token, meta::ParseNestedMeta};

use crate::ctxt::Ctxt;

/// How variant names become wire names.
#[derive(Clone, Copy, Default)]
pub(crate) enum RenameRule {
    #[default]
    Snake,
    Camel,
    Pascal,
    Kebab,
    ScreamingSnake,
    ScreamingKebab,
    Lower,
    Upper,
}

impl RenameRule {
    const ALL: &'static [(&'static str, Self)] = &[
        ("snake_case", Self::Snake),
        ("camelCase", Self::Camel),
        ("PascalCase", Self::Pascal),
        ("kebab-case", Self::Kebab),
        ("SCREAMING_SNAKE_CASE", Self::ScreamingSnake),
        ("SCREAMING-KEBAB-CASE", Self::ScreamingKebab),
        ("lowercase", Self::Lower),
        ("UPPERCASE", Self::Upper),
    ];

    pub(crate) fn apply(self, variant: &str) -> String {
        match self {
            Self::Snake => variant.to_snake_case(),
            Self::Camel => variant.to_lower_camel_case(),
            Self::Pascal => variant.to_upper_camel_case(),
            Self::Kebab => variant.to_kebab_case(),
            Self::ScreamingSnake => variant.to_shouty_snake_case(),
            Self::ScreamingKebab => variant.to_shouty_kebab_case(),
            Self::Lower => variant.to_lowercase(),
            Self::Upper => variant.to_uppercase(),
        }
    }
}

pub(crate) struct ContainerAttrs {
    pub(crate) rename_all: RenameRule,
    /// `#[event(typescript)]`: describe the enum for `liweb::typescript`.
    pub(crate) typescript: bool,
}

pub(crate) struct VariantAttrs {
    pub(crate) name: Option<LitStr>,
}

/// One `key = "value"` seen so far, to report keys given twice.
struct Seen(Vec<String>);

impl Seen {
    fn first(&mut self, cx: &mut Ctxt, path: &syn::Path, key: &str) -> bool {
        if self.0.iter().any(|seen| seen == key) {
            cx.error_spanned_by(path, format!("duplicate liweb attribute `{key}`"));
            false
        } else {
            self.0.push(key.to_owned());
            true
        }
    }
}

pub(crate) fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> ContainerAttrs {
    let mut rename_all = RenameRule::default();
    let mut typescript = false;
    let mut seen = Seen(Vec::new());
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("event")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                let Some(value) = string_value(cx, &meta, "rename_all")? else {
                    return Ok(());
                };
                if seen.first(cx, &meta.path, "rename_all") {
                    match RenameRule::ALL
                        .iter()
                        .find(|(name, _)| *name == value.value())
                    {
                        Some((_, rule)) => rename_all = *rule,
                        None => {
                            let expected: Vec<_> = RenameRule::ALL
                                .iter()
                                .map(|(name, _)| format!("`{name}`"))
                                .collect();
                            cx.error_spanned_by(
                                &value,
                                format!(
                                    "unknown `rename_all` rule; expected one of {}",
                                    expected.join(", ")
                                ),
                            );
                        }
                    }
                }
                Ok(())
            } else if meta.path.is_ident("typescript") {
                flag(cx, &meta, "typescript")?;
                if seen.first(cx, &meta.path, "typescript") {
                    typescript = true;
                }
                Ok(())
            } else if meta.path.is_ident("name") {
                cx.push(meta.error("`name` goes on a variant; on the enum use `rename_all`"));
                skip_value(&meta)
            } else {
                cx.push(meta.error(format!(
                    "unknown liweb attribute `{}`; on the enum, `#[event(...)]` takes `rename_all` and `typescript`",
                    path_text(&meta.path)
                )));
                skip_value(&meta)
            }
        });
        if let Err(err) = result {
            cx.push(err);
        }
    }
    ContainerAttrs {
        rename_all,
        typescript,
    }
}

pub(crate) fn variant(cx: &mut Ctxt, attrs: &[Attribute]) -> VariantAttrs {
    let mut name = None;
    let mut seen = Seen(Vec::new());
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("event")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let Some(value) = string_value(cx, &meta, "name")? else {
                    return Ok(());
                };
                if seen.first(cx, &meta.path, "name") {
                    name = Some(value);
                }
                Ok(())
            } else {
                cx.push(meta.error(format!(
                    "unknown liweb attribute `{}`; on a variant, `#[event(...)]` takes `name`",
                    path_text(&meta.path)
                )));
                skip_value(&meta)
            }
        });
        if let Err(err) = result {
            cx.push(err);
        }
    }
    VariantAttrs { name }
}

/// The value of `key = "..."`, or `None` once the `Ctxt` has the reason, so
/// a wrong value does not hide the keys after it.
fn string_value(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta<'_>,
    key: &str,
) -> syn::Result<Option<LitStr>> {
    let expected = format!("`{key}` takes a string: `{key} = \"...\"`");
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(&meta.path, expected);
        skip_value(meta)?;
        return Ok(None);
    }
    match meta.value()?.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(value),
            ..
        }) => Ok(Some(value)),
        other => {
            cx.error_spanned_by(other, expected);
            Ok(None)
        }
    }
}

/// Reports and steps over a value given to a key that takes none.
fn flag(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<()> {
    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        cx.error_spanned_by(
            &meta.path,
            format!("`{key}` takes no value: `#[event({key})]`"),
        );
        skip_value(meta)?;
    }
    Ok(())
}

/// Steps over the value of a key already reported as wrong, so the keys after
/// it are still checked.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|nested| skip_value(&nested))?;
    }
    Ok(())
}

fn path_text(path: &syn::Path) -> String {
    path.segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// Field attributes carried over to the generated payload structs.
pub(crate) fn serde_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .collect()
}

/// `#[ts(...)]` field attributes, carried over to the payload structs of an
/// `#[event(typescript)]` enum.
pub(crate) fn ts_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("ts"))
        .collect()
}

/// Doc comments carried over to generated items.
pub(crate) fn docs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .collect()
}
