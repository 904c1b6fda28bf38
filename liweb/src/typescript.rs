//! TypeScript event maps for the browser client (feature `typescript`).
//!
//! From an `In` and an `Out` enum, [`render`] writes one TypeScript module
//! with one *event map* per direction — an object type from wire name to
//! payload type — and the declarations of every payload type they use, made
//! by [ts-rs](https://docs.rs/ts-rs). `liweb.d.ts` types `LiwebClient<In,
//! Out>` with such maps, so `client.emit("chat:message", {text})` is checked
//! by `tsc`.
//!
//! An enum takes part with `#[event(typescript)]`, and every payload type it
//! names derives [`TS`] (re-exported from ts-rs):
//!
//! ```
//! use liweb::prelude::*;
//! use liweb::typescript::TS;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, TS)]
//! #[ts(crate = "liweb::typescript::ts_rs")]
//! struct Say {
//!     text: String,
//! }
//!
//! #[derive(Events)]
//! #[event(typescript)]
//! enum ChatIn {
//!     #[event(name = "chat:message")]
//!     Message(Say),
//!     Typing,
//! }
//!
//! #[derive(Events)]
//! #[event(typescript)]
//! enum ChatOut {
//!     Typing { id: liweb::ConnId },
//! }
//!
//! let ts = liweb::typescript::render::<ChatIn, ChatOut>();
//! assert!(ts.contains(r#""chat:message": Say"#));
//! assert!(ts.contains(r#""typing": null"#));
//! assert!(ts.contains("export type ConnId = string;"));
//! // liweb::typescript::export::<ChatIn, ChatOut>("static/chat-events.ts")?;
//! ```
//!
//! The payload of a unit variant is `null`, of a newtype variant its field's
//! type, of a struct variant an object type of its fields (with their serde
//! renames; `#[ts(...)]` attributes on the fields are passed on, e.g.
//! `#[ts(optional)]`).
//!
//! # Why opt in per enum
//!
//! `#[derive(Events)]` cannot see liweb's cargo features. With
//! `#[event(typescript)]` it writes an implementation of the hidden trait
//! [`EventMap`] (and derives [`TS`] on the companion types of struct
//! variants) through a macro of liweb that exists in two forms: with the
//! feature it expands to that code, without it to a `compile_error!` asking
//! for the feature. Enums without the attribute are untouched, so turning the
//! feature on somewhere in a workspace (cargo unifies features) never asks
//! other crates' payload types for `TS`.

use std::{any::TypeId, collections::BTreeMap, fmt::Write as _, path::Path};

pub use ts_rs::{self, TS};

use crate::{ConnId, Events};

/// An [`Events`] enum that `#[event(typescript)]` describes for TypeScript:
/// its name and, per variant, the wire name and payload type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no TypeScript event map",
    label = "`{Self}` lacks `#[event(typescript)]`",
    note = "add `#[event(typescript)]` next to `#[derive(Events)]` and derive `liweb::typescript::TS` on its payload types"
)]
pub trait EventMap: Events {
    /// The name of the map in TypeScript: the enum's name.
    #[doc(hidden)]
    const MAP_NAME: &'static str;

    /// Reports every variant to `events`, in declaration order.
    #[doc(hidden)]
    fn visit_events(events: &mut EventTypes);
}

/// Collects the entries of one event map and the declarations they need.
/// Only generated code calls it.
#[doc(hidden)]
pub struct EventTypes {
    cfg: ts_rs::Config,
    entries: Vec<(&'static str, String)>,
    decls: BTreeMap<String, (TypeId, String)>,
}

impl std::fmt::Debug for EventTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTypes")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl EventTypes {
    fn new() -> Self {
        Self {
            // JSON numbers reach JavaScript as `number`, 64-bit ones too.
            cfg: ts_rs::Config::new().with_large_int("number"),
            entries: Vec::new(),
            decls: BTreeMap::new(),
        }
    }

    /// A unit variant: the payload is `null`.
    pub fn unit(&mut self, name: &'static str) {
        self.entries.push((name, "null".to_owned()));
    }

    /// A newtype variant: the payload is `T`, by name.
    pub fn payload<T: TS + 'static + ?Sized>(&mut self, name: &'static str) {
        self.entries.push((name, T::name(&self.cfg)));
        self.declare::<T>();
        T::visit_dependencies(self);
    }

    /// A struct variant: the payload is `T` (its companion type) inlined.
    pub fn object<T: TS + 'static + ?Sized>(&mut self, name: &'static str) {
        self.entries.push((name, T::inline(&self.cfg)));
        T::visit_dependencies(self);
    }

    /// Declares `T` if it is a named type (not a primitive or a generic
    /// container), then what it depends on.
    fn declare<T: TS + 'static + ?Sized>(&mut self) {
        if T::output_path().is_none() {
            return;
        }
        let ident = T::ident(&self.cfg);
        let id = TypeId::of::<T::WithoutGenerics>();
        if let Some((seen, _)) = self.decls.get(&ident) {
            assert!(
                *seen == id,
                "two different payload types are both named `{ident}` in TypeScript; \
                 rename one with `#[ts(rename = \"...\")]`"
            );
            return;
        }
        let mut decl = T::docs().unwrap_or_default();
        decl.push_str("export ");
        decl.push_str(&T::WithoutGenerics::decl(&self.cfg));
        self.decls.insert(ident, (id, decl));
        T::visit_dependencies(self);
    }
}

impl ts_rs::TypeVisitor for EventTypes {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        self.declare::<T>();
    }
}

impl TS for ConnId {
    type WithoutGenerics = Self;
    type OptionInnerType = Self;

    fn docs() -> Option<String> {
        Some("/** A connection id: a UUID in its hyphenated string form. */\n".to_owned())
    }
    fn name(_: &ts_rs::Config) -> String {
        "ConnId".to_owned()
    }
    fn inline(_: &ts_rs::Config) -> String {
        "string".to_owned()
    }
    fn decl(_: &ts_rs::Config) -> String {
        "type ConnId = string;".to_owned()
    }
    fn decl_concrete(cfg: &ts_rs::Config) -> String {
        Self::decl(cfg)
    }
    fn output_path() -> Option<std::path::PathBuf> {
        Some("ConnId.ts".into())
    }
}

/// The TypeScript module for a server with events `In` (client → server)
/// and `Out` (server → client): the payload declarations, then the two
/// event maps, named after the enums.
///
/// # Panics
///
/// When two different payload types have the same TypeScript name.
pub fn render<In: EventMap, Out: EventMap>() -> String {
    let mut incoming = EventTypes::new();
    In::visit_events(&mut incoming);
    let mut outgoing = EventTypes::new();
    Out::visit_events(&mut outgoing);

    let mut decls = incoming.decls;
    for (ident, (id, decl)) in outgoing.decls {
        if let Some((seen, _)) = decls.get(&ident) {
            assert!(
                *seen == id,
                "two different payload types are both named `{ident}` in TypeScript; \
                 rename one with `#[ts(rename = \"...\")]`"
            );
        } else {
            decls.insert(ident, (id, decl));
        }
    }

    let mut out = format!(
        "// Generated by liweb::typescript::render::<{in_name}, {out_name}>(); do not edit.\n\
         // `{in_name}`: events the client sends; `{out_name}`: events the server sends.\n\
         // Use with liweb.js: `new LiwebClient<{in_name}, {out_name}>(url)`.\n",
        in_name = In::MAP_NAME,
        out_name = Out::MAP_NAME,
    );
    for (_, decl) in decls.values() {
        out.push('\n');
        out.push_str(decl);
        out.push('\n');
    }
    write_map(&mut out, In::MAP_NAME, "client → server", &incoming.entries);
    write_map(
        &mut out,
        Out::MAP_NAME,
        "server → client",
        &outgoing.entries,
    );
    // ts-rs ends the line before a field's doc comment with a space.
    let mut trimmed: String = out
        .lines()
        .map(|line| line.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    trimmed.push('\n');
    trimmed
}

fn write_map(out: &mut String, name: &str, direction: &str, entries: &[(&str, String)]) {
    let _ = write!(
        out,
        "\n/** Events {direction}: wire name → payload. */\nexport type {name} = {{\n"
    );
    for (event, payload) in entries {
        // A JSON string literal is a TypeScript string literal.
        let key = serde_json::to_string(event).unwrap_or_default();
        let _ = writeln!(out, "  {key}: {payload};");
    }
    out.push_str("};\n");
}

/// Writes [`render::<In, Out>()`](render) to `path`, creating its directory.
///
/// # Errors
///
/// When the file cannot be written.
pub fn export<In: EventMap, Out: EventMap>(path: impl AsRef<Path>) -> std::io::Result<()> {
    let path = path.as_ref();
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render::<In, Out>())
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    /// A point.
    #[derive(Serialize, Deserialize, TS)]
    #[ts(crate = "crate::typescript::ts_rs")]
    pub(crate) struct Point {
        x: i32,
        /// Up is positive.
        y: u64,
    }

    #[derive(Serialize, Deserialize, TS)]
    #[ts(crate = "crate::typescript::ts_rs")]
    pub(crate) struct Path {
        points: Vec<Point>,
        #[serde(default)]
        #[ts(optional)]
        label: Option<String>,
    }

    #[derive(crate::Events)]
    #[event(typescript, rename_all = "camelCase")]
    pub(crate) enum Up {
        #[event(name = "draw:path")]
        Draw(Path),
        ClearAll,
        Count(u32),
    }

    #[derive(crate::Events)]
    #[event(typescript)]
    pub(crate) enum Down {
        Drawn {
            by: ConnId,
            path: Path,
            #[serde(rename = "when")]
            at: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            #[ts(optional)]
            note: Option<String>,
        },
        Moved(Point),
        Reset,
    }

    #[test]
    fn renders_both_maps_and_every_payload_declaration() {
        let ts = render::<Up, Down>();
        let expected = r#"// Generated by liweb::typescript::render::<Up, Down>(); do not edit.
// `Up`: events the client sends; `Down`: events the server sends.
// Use with liweb.js: `new LiwebClient<Up, Down>(url)`.

/** A connection id: a UUID in its hyphenated string form. */
export type ConnId = string;

export type Path = { points: Array<Point>, label?: string, };

/**
 * A point.
 */
export type Point = { x: number,
/**
 * Up is positive.
 */
y: number, };

/** Events client → server: wire name → payload. */
export type Up = {
  "draw:path": Path;
  "clearAll": null;
  "count": number;
};

/** Events server → client: wire name → payload. */
export type Down = {
  "drawn": { by: ConnId, path: Path, when: number, note?: string, };
  "moved": Point;
  "reset": null;
};
"#;
        assert_eq!(ts, expected, "got:\n{ts}");
    }

    #[test]
    fn export_writes_the_rendering() {
        let dir = std::env::temp_dir().join(format!("liweb-ts-{}", std::process::id()));
        let file = dir.join("nested").join("events.ts");
        export::<Up, Down>(&file).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            render::<Up, Down>()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
