//! The macros `#[derive(Events)]` expands to for `#[event(typescript)]`.
//!
//! The derive cannot see liweb's cargo features, so it hands the TypeScript
//! code to these macros, which exist in two forms: with the `typescript`
//! feature they expand to it, without it to an error that asks for the
//! feature. Enums without `#[event(typescript)]` never reach them.

/// The [`EventMap`](crate::typescript::EventMap) implementation of an enum:
/// `ts_events!(Enum, visitor, { visitor.unit("name"); ... })`.
#[cfg(feature = "typescript")]
#[doc(hidden)]
#[macro_export]
macro_rules! __liweb_ts_events {
    ($enum:ident, $visitor:ident, { $($body:tt)* }) => {
        #[automatically_derived]
        impl $crate::typescript::EventMap for $enum {
            const MAP_NAME: &'static str = ::core::stringify!($enum);
            fn visit_events($visitor: &mut $crate::typescript::EventTypes) {
                $($body)*
            }
        }
    };
}

/// Without the `typescript` feature: an error asking for it.
#[cfg(not(feature = "typescript"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __liweb_ts_events {
    ($enum:ident, $($rest:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "`#[event(typescript)]` on `",
            ::core::stringify!($enum),
            "` needs liweb's `typescript` feature: `liweb = { version = \"...\", features = [\"typescript\"] }`"
        ));
    };
}

/// The companion struct of a struct variant, deriving `TS` with the feature.
#[cfg(feature = "typescript")]
#[doc(hidden)]
#[macro_export]
macro_rules! __liweb_ts_struct {
    ($(#[$attr:meta])* $vis:vis struct $name:ident { $($fields:tt)* }) => {
        #[derive($crate::__private::ts_rs::TS)]
        #[ts(crate = "::liweb::__private::ts_rs")]
        $(#[$attr])*
        $vis struct $name { $($fields)* }
    };
}

/// Without the feature the struct stays as it is (`__liweb_ts_events`
/// reports the missing feature).
#[cfg(not(feature = "typescript"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __liweb_ts_struct {
    ($item:item) => {
        $item
    };
}
