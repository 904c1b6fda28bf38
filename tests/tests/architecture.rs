//! The layers of `liweb/src`: which file may import which.
//!
//! These are the layering rules of docs/ARCHITECTURE.md; the two must say
//! the same thing. The files of `liweb/src` sit in layers, top to bottom:
//!
//! | layer | files |
//! |-------|-------|
//! | 0 | `lib.rs` |
//! | 1 | tooling: `client/`, `typescript/`, `typescript_gate.rs`, `browser.rs`, `fuzz.rs` |
//! | 2 | `transport/`, except `transport/item.rs` |
//! | 3 | `session/` |
//! | 4 | `dispatch/` |
//! | 5 | core: `server/`, `handler/`, `middleware.rs` |
//! | 6 | `auth/` |
//! | 7 | `room/`, except `room/key.rs` |
//! | 8 | `request.rs` |
//! | 9 | `cluster/` |
//! | 10 | `state/` |
//! | 11 | `presence/` |
//! | 12 | `conn/` |
//! | 13 | `transport/item.rs` |
//! | 14 | leaves: `codec/`, `protocol.rs`, `event.rs`, `error.rs`, `util.rs`, `room/key.rs` |
//!
//! A module is a folder or a single file alike (`client/` or `client.rs`).
//!
//! - A file imports files of its own layer and of the layers below it, never
//!   of a layer above. So the modules of one layer may import each other:
//!   the leaves, the tooling, and the core, whose `server/`, `handler/` and
//!   `middleware.rs` call each other (the one cycle allowed).
//! - `lib.rs` may import anything; nothing imports it. Its re-exports count
//!   as the items they re-export: `crate::Server` is an import of `server/`.
//! - Named rules, checked besides the order:
//!   - leaves import nothing above them;
//!   - `conn/` imports only the leaves and `transport/item.rs`;
//!   - `room/`, `state/`, `presence/`, `cluster/` never import `server/`,
//!     `dispatch/`, `session/`, `handler/`;
//!   - `server/` never imports `session/` or `dispatch/` (they call it, not
//!     the other way).
//! - A module with no layer in this table is a violation: a new module
//!   takes its place in the table here and in docs/ARCHITECTURE.md.
//!
//! An import is any path into the crate, in a `use` (grouped ones too:
//! `use crate::{a::{X, Y}, b::Z};`) or written out in code: `crate::a::X`,
//! `super::X`, `self::a::X`, and `liweb::a::X` (the crate names itself
//! `liweb`). Comments and string literals do not count, nor `$crate` paths
//! in `macro_rules!` bodies, which name what the expansion needs where it is
//! used. A path counts as an import of the file of its longest module
//! prefix (`crate::server::builder::Builder` is `server/builder.rs` when
//! that file exists, else `server/mod.rs` or `server.rs`); a module
//! declared with `#[path = "..."]` is the file the attribute names.
//!
//! `liweb_src_keeps_its_layers` reads the files of `liweb/src` and, when a
//! rule breaks, fails with every offending import, one per line, as
//! `liweb/src/<file>: imports <path> (<target file>): <rule>`. The other
//! tests here feed the same functions made-up trees, to show what each rule
//! catches.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The layers, top to bottom: a name for messages and the modules in it,
/// as paths under `liweb/src` without `.rs` (`transport/item` is
/// `transport/item.rs`, `server` is `server.rs` or `server/`). A file
/// belongs to the longest entry that is its module or a parent of it.
/// `lib.rs` is layer 0 on its own.
const LAYERS: &[(&str, &[&str])] = &[
    ("lib.rs", &[]),
    (
        "tooling",
        &["client", "typescript", "typescript_gate", "browser", "fuzz"],
    ),
    ("transport/", &["transport"]),
    ("session/", &["session"]),
    ("dispatch/", &["dispatch"]),
    ("core", &["server", "handler", "middleware"]),
    ("auth/", &["auth"]),
    ("room/", &["room"]),
    ("request.rs", &["request"]),
    ("cluster/", &["cluster"]),
    ("state/", &["state"]),
    ("presence/", &["presence"]),
    ("conn/", &["conn"]),
    ("transport/item.rs", &["transport/item"]),
    (
        "leaves",
        &["codec", "protocol", "event", "error", "util", "room/key"],
    ),
];

/// The index of the leaves in [`LAYERS`].
const LEAVES: usize = LAYERS.len() - 1;

/// Where a file sits: its layer and the [`LAYERS`] entry it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unit {
    layer: usize,
    module: &'static str,
}

/// The module path of a file without `.rs` or `/mod.rs`: `server/builder.rs`
/// is `server/builder`, `server/mod.rs` is `server`.
fn module_key(file: &str) -> &str {
    let key = file.strip_suffix(".rs").unwrap_or(file);
    key.strip_suffix("/mod").unwrap_or(key)
}

/// The unit of `file`, or the name of its top-level module when that
/// module has no layer.
fn unit_of(file: &str) -> Result<Unit, String> {
    if file == "lib.rs" {
        return Ok(Unit {
            layer: 0,
            module: "lib",
        });
    }
    let key = module_key(file);
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(layer, (_, modules))| modules.iter().map(move |module| (layer, *module)))
        .filter(|(_, module)| {
            key == *module
                || key
                    .strip_prefix(module)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|(_, module)| module.len())
        .map(|(layer, module)| Unit { layer, module })
        .ok_or_else(|| key.split('/').next().unwrap_or(key).to_owned())
}

/// The rule text for a module without a layer.
fn no_layer(module: &str) -> String {
    format!(
        "module `{module}` has no layer; add it to the layer table in \
         tests/tests/architecture.rs and docs/ARCHITECTURE.md"
    )
}

/// The rules an import from `from` of `to` breaks, in words.
fn broken_rules(from: Unit, to: Unit) -> Vec<String> {
    let mut broken = Vec::new();
    if to.layer < from.layer {
        broken.push(format!(
            "layer {} ({}) must not import layer {} ({}), above it",
            from.layer, LAYERS[from.layer].0, to.layer, LAYERS[to.layer].0
        ));
    }
    if from.layer == LEAVES && to.layer != LEAVES {
        broken.push("leaves import nothing above them".to_owned());
    }
    if from.module == "conn"
        && !matches!(to.module, "conn" | "transport/item")
        && to.layer != LEAVES
    {
        broken.push("conn/ imports only the leaves and transport/item.rs".to_owned());
    }
    if matches!(from.module, "room" | "state" | "presence" | "cluster")
        && matches!(to.module, "server" | "dispatch" | "session" | "handler")
    {
        broken.push(
            "room/, state/, presence/, cluster/ never import server/, dispatch/, session/, handler/"
                .to_owned(),
        );
    }
    if from.module == "server" && matches!(to.module, "session" | "dispatch") {
        broken.push(
            "server/ never imports session/ or dispatch/ (they call it, not the other way)"
                .to_owned(),
        );
    }
    broken
}

/// A token of Rust source, as far as finding paths needs: comments are
/// gone and literals keep only what `#[path = "..."]` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier or keyword (`r#` stripped; `$crate` keeps its `$`).
    Ident(String),
    /// `::`.
    PathSep,
    /// A string literal's text, escapes left as written.
    Str(String),
    /// A number or character literal.
    Literal,
    /// Any other character.
    Punct(char),
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The string literal starting at `chars[at]`, prefix included (`"`, `b"`,
/// `c"`, `r#"`, `br"`, ...): its text and the index after it.
fn string_literal(chars: &[char], at: usize) -> Option<(String, usize)> {
    let mut i = at;
    if matches!(chars.get(i), Some('b' | 'c')) {
        i += 1;
    }
    if chars.get(i) == Some(&'r') {
        let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
        let open = i + 1 + hashes;
        if chars.get(open) != Some(&'"') {
            return None;
        }
        let mut end = open + 1;
        while end < chars.len() {
            if chars[end] == '"'
                && chars[end + 1..].iter().take_while(|c| **c == '#').count() >= hashes
            {
                return Some((chars[open + 1..end].iter().collect(), end + 1 + hashes));
            }
            end += 1;
        }
        return Some((chars[open + 1..].iter().collect(), chars.len()));
    }
    if chars.get(i) != Some(&'"') {
        return None;
    }
    let mut end = i + 1;
    while end < chars.len() && chars[end] != '"' {
        end += if chars[end] == '\\' { 2 } else { 1 };
    }
    let text = chars[i + 1..end.min(chars.len())].iter().collect();
    Some((text, end + 1))
}

/// The end of the character literal starting at the quote `chars[at]`, or
/// `None` when the quote starts a lifetime or a label.
fn char_literal_end(chars: &[char], at: usize) -> Option<usize> {
    match chars.get(at + 1) {
        Some('\\') => {
            let close = chars.get(at + 3..)?.iter().position(|c| *c == '\'')?;
            Some(at + 3 + close + 1)
        }
        Some(_) if chars.get(at + 2) == Some(&'\'') => Some(at + 3),
        _ => None,
    }
}

/// Splits `source` into [`Token`]s, dropping comments (`//`, `///`, `//!`,
/// nested `/* */`) and whitespace.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                match (chars[i], chars.get(i + 1)) {
                    ('/', Some('*')) => {
                        depth += 1;
                        i += 2;
                    }
                    ('*', Some('/')) => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
        } else if let Some((text, end)) = string_literal(&chars, i) {
            tokens.push(Token::Str(text));
            i = end;
        } else if c == 'b' && next == Some('\'') {
            tokens.push(Token::Literal);
            i = char_literal_end(&chars, i + 1).unwrap_or(i + 2);
        } else if c == '\'' {
            match char_literal_end(&chars, i) {
                Some(end) => {
                    tokens.push(Token::Literal);
                    i = end;
                }
                None => {
                    tokens.push(Token::Punct('\''));
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && is_ident_continue(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Literal);
        } else if is_ident_start(c) || (c == '$' && next.is_some_and(is_ident_start)) {
            if c == 'r'
                && next == Some('#')
                && chars.get(i + 2).copied().is_some_and(is_ident_start)
            {
                i += 2;
            }
            let start = i;
            i += 1;
            while i < chars.len() && is_ident_continue(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && next == Some(':') {
            tokens.push(Token::PathSep);
            i += 2;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Reads the use tree at `tokens[*i]` (after `use`), adding to `out` each
/// path it imports, with the name it is imported as: `a::{b::{X, Y as Z},
/// c::*}` gives `a::b::X` (X), `a::b::Y` (Z), `a::c::*` (*).
fn use_tree(
    tokens: &[Token],
    i: &mut usize,
    mut path: Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    if tokens.get(*i) == Some(&Token::PathSep) {
        *i += 1;
    }
    let mut name = String::new();
    loop {
        match tokens.get(*i) {
            Some(Token::Punct('*')) => {
                *i += 1;
                path.push("*".to_owned());
                name = "*".to_owned();
                break;
            }
            Some(Token::Punct('{')) => {
                *i += 1;
                while let Some(token) = tokens.get(*i) {
                    match token {
                        Token::Punct('}') => {
                            *i += 1;
                            break;
                        }
                        Token::Punct(',') => *i += 1,
                        _ => {
                            let before = *i;
                            use_tree(tokens, i, path.clone(), out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
                return;
            }
            Some(Token::Ident(segment)) => {
                // `a::{self, X}` imports `a` itself.
                if segment != "self" || path.is_empty() {
                    path.push(segment.clone());
                }
                name = path.last().cloned().unwrap_or_default();
                *i += 1;
                if tokens.get(*i) == Some(&Token::PathSep) {
                    *i += 1;
                    continue;
                }
                if tokens.get(*i) == Some(&Token::Ident("as".to_owned())) {
                    if let Some(Token::Ident(alias)) = tokens.get(*i + 1) {
                        name = alias.clone();
                    }
                    *i += 2;
                }
                break;
            }
            _ => break,
        }
    }
    if !path.is_empty() {
        out.push((path, name));
    }
}

/// Whether `path` starts at the crate (`crate`, `liweb`) or at the module
/// it is written in (`super`, `self`).
fn is_crate_path(path: &[String]) -> bool {
    path.first()
        .is_some_and(|word| matches!(word.as_str(), "crate" | "super" | "self" | "liweb"))
}

/// What one file says about the crate's modules.
#[derive(Debug, Default)]
struct Scan {
    /// Each path into the crate: the inline modules (`mod x { .. }`) it is
    /// written in, and its segments.
    paths: Vec<(Vec<String>, Vec<String>)>,
    /// The file's top-level `use`s, with the names they import.
    uses: Vec<(Vec<String>, String)>,
    /// `#[path = "file"] mod name;` at the file's top level: name and file.
    path_modules: Vec<(String, String)>,
}

/// Finds the paths into the crate in `source`, and what resolving them
/// needs.
fn scan(source: &str) -> Scan {
    let tokens = tokens(source);
    let mut scan = Scan::default();
    let mut depth = 0usize;
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut path_attribute: Option<String> = None;
    let ident = |i: usize| match tokens.get(i) {
        Some(Token::Ident(word)) => Some(word.as_str()),
        _ => None,
    };
    let mut i = 0;
    while i < tokens.len() {
        let modules = || {
            inline
                .iter()
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        };
        match &tokens[i] {
            Token::Punct('{') => {
                path_attribute = None;
                depth += 1;
            }
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, at)| *at == depth) {
                    inline.pop();
                }
            }
            Token::Punct(';') => path_attribute = None,
            Token::Punct('#') => {
                if let [
                    Token::Punct('['),
                    Token::Ident(path),
                    Token::Punct('='),
                    Token::Str(file),
                    Token::Punct(']'),
                ] = tokens.get(i + 1..i + 6).unwrap_or_default()
                    && path == "path"
                {
                    path_attribute = Some(file.clone());
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let Some(name) = ident(i + 1) {
                    match tokens.get(i + 2) {
                        Some(Token::Punct('{')) => inline.push((name.to_owned(), depth)),
                        Some(Token::Punct(';')) if inline.is_empty() => {
                            if let Some(file) = path_attribute.take() {
                                scan.path_modules.push((name.to_owned(), file));
                            }
                        }
                        _ => {}
                    }
                }
            }
            Token::Ident(word) if word == "use" => {
                i += 1;
                let mut found = Vec::new();
                use_tree(&tokens, &mut i, Vec::new(), &mut found);
                if inline.is_empty() {
                    scan.uses.extend(found.iter().cloned());
                }
                for (path, _) in found {
                    if is_crate_path(&path) {
                        scan.paths.push((modules(), path));
                    }
                }
                continue;
            }
            Token::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self" | "liweb")
                    && tokens.get(i + 1) == Some(&Token::PathSep)
                    && (i == 0
                        || tokens[i - 1] != Token::PathSep
                        || (i >= 2
                            && !matches!(tokens[i - 2], Token::Ident(_) | Token::Punct('>')))) =>
            {
                let mut path = vec![word.clone()];
                while tokens.get(i + 1) == Some(&Token::PathSep) {
                    let Some(segment) = ident(i + 2) else { break };
                    path.push(segment.to_owned());
                    i += 2;
                }
                scan.paths.push((modules(), path));
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

/// One path into the crate, in `file`, with the file it leads to (paths
/// relative to `liweb/src`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    file: String,
    path: String,
    target: String,
}

/// The files of the crate and how module paths map onto them.
struct Crate {
    files: BTreeSet<String>,
    /// Modules declared with `#[path]`, and their files.
    path_modules: BTreeMap<Vec<String>, String>,
    /// The names `lib.rs` imports at its top level (its re-exports among
    /// them), and the paths they come from.
    root_names: BTreeMap<String, Vec<Vec<String>>>,
}

impl Crate {
    /// The module a file is: `room/key.rs` is `room::key`, `room/mod.rs` is
    /// `room`, `lib.rs` the root; a `#[path]` file is the module declared.
    fn module_of(&self, file: &str) -> Vec<String> {
        if let Some((module, _)) = self.path_modules.iter().find(|(_, f)| *f == file) {
            return module.clone();
        }
        match module_key(file) {
            "lib" => Vec::new(),
            key => key.split('/').map(str::to_owned).collect(),
        }
    }

    /// The file of a module, if it has one of its own.
    fn file_of(&self, module: &[String]) -> Option<String> {
        if module.is_empty() {
            return Some("lib.rs".to_owned());
        }
        if let Some(file) = self.path_modules.get(module) {
            return Some(file.clone());
        }
        let key = module.join("/");
        [format!("{key}.rs"), format!("{key}/mod.rs")]
            .into_iter()
            .find(|file| self.files.contains(file))
    }

    /// The file a path from module `here` leads to: the file of its longest
    /// module prefix, through the root's imports. `None` for a path out of
    /// the crate (a macro the root re-exports) or above the root.
    fn resolve(&self, here: &[String], path: &[String], hops: usize) -> Option<String> {
        let mut segments = path.iter().map(String::as_str).peekable();
        let mut module: Vec<String> = match segments.peek() {
            Some(&("crate" | "liweb")) => {
                segments.next();
                Vec::new()
            }
            _ => here.to_vec(),
        };
        while let Some(&segment) = segments.peek() {
            match segment {
                "self" => {}
                "super" => {
                    module.pop()?;
                }
                _ => break,
            }
            segments.next();
        }
        module.extend(segments.filter(|s| *s != "*").map(str::to_owned));
        let file = (0..=module.len())
            .rev()
            .find_map(|len| self.file_of(&module[..len]))?;
        if file != "lib.rs" || module.is_empty() || hops > 8 {
            return Some(file);
        }
        match self.root_names.get(&module[0]) {
            Some(sources) => {
                let source = sources.iter().find(|source| is_crate_path(source))?;
                let rest: Vec<String> = source.iter().chain(&module[1..]).cloned().collect();
                self.resolve(&[], &rest, hops + 1)
            }
            None => Some(file),
        }
    }
}

/// Every path into the crate in `files` (`(path under liweb/src, source)`),
/// resolved to its file; paths to the file itself left out.
fn imports(files: &[(String, String)]) -> Vec<Import> {
    let scans: Vec<(&str, Scan)> = files
        .iter()
        .map(|(file, source)| (file.as_str(), scan(source)))
        .collect();
    let mut krate = Crate {
        files: files.iter().map(|(file, _)| file.clone()).collect(),
        path_modules: BTreeMap::new(),
        root_names: BTreeMap::new(),
    };
    // `#[path]` in `lib.rs` or a `mod.rs` is relative to its folder; in
    // `a/b.rs`, to `a/b/`.
    for (file, scan) in &scans {
        let folder = match file.strip_suffix("mod.rs") {
            _ if *file == "lib.rs" => String::new(),
            Some(folder) if folder.is_empty() || folder.ends_with('/') => folder.to_owned(),
            _ => format!("{}/", module_key(file)),
        };
        for (name, path) in &scan.path_modules {
            let mut module = krate.module_of(file);
            module.push(name.clone());
            krate.path_modules.insert(module, format!("{folder}{path}"));
        }
    }
    if let Some((_, scan)) = scans.iter().find(|(file, _)| *file == "lib.rs") {
        for (path, name) in &scan.uses {
            krate
                .root_names
                .entry(name.clone())
                .or_default()
                .push(path.clone());
        }
    }
    let mut imports = BTreeSet::new();
    for (file, scan) in &scans {
        let module = krate.module_of(file);
        for (inline, path) in &scan.paths {
            let here: Vec<String> = module.iter().chain(inline).cloned().collect();
            let Some(target) = krate.resolve(&here, path, 0) else {
                continue;
            };
            if target != *file {
                imports.insert(Import {
                    file: (*file).to_owned(),
                    path: path.join("::"),
                    target,
                });
            }
        }
    }
    imports.into_iter().collect()
}

/// Every broken rule in `files` (`(path under liweb/src, source)`), one
/// line per import: `liweb/src/<file>: imports <path> (<target>): <rule>`.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut lines = Vec::new();
    for import in imports(files) {
        if import.file == "lib.rs" {
            continue;
        }
        let broken = match (unit_of(&import.file), unit_of(&import.target)) {
            (Err(module), _) | (Ok(_), Err(module)) => vec![no_layer(&module)],
            (Ok(from), Ok(to)) => broken_rules(from, to),
        };
        if !broken.is_empty() {
            lines.push(format!(
                "liweb/src/{}: imports {} ({}): {}",
                import.file,
                import.path,
                import.target,
                broken.join("; ")
            ));
        }
    }
    // A module without a layer that imports nothing is still out of place.
    for (file, _) in files {
        if let Err(module) = unit_of(file) {
            let prefix = format!("liweb/src/{file}: ");
            if !lines.iter().any(|line| line.starts_with(&prefix)) {
                lines.push(format!("{prefix}{}", no_layer(&module)));
            }
        }
    }
    lines.sort();
    lines
}

/// The `.rs` files under `dir`, as `(path under root, source)`.
fn read_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_sources(root, &path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(root).expect("a path under the root");
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let source = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.push((name, source));
        }
    }
}

#[test]
fn liweb_src_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../liweb/src");
    let mut files = Vec::new();
    read_sources(&root, &root, &mut files);
    assert!(
        files.iter().any(|(file, _)| file == "lib.rs"),
        "no lib.rs under {}",
        root.display()
    );
    let violations = violations(&files);
    assert!(
        violations.is_empty(),
        "liweb/src breaks its layers in {} import(s) (the rules are at the top \
         of tests/tests/architecture.rs and in docs/ARCHITECTURE.md):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

mod tests {
    use super::*;

    /// A synthetic `liweb/src`.
    fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(file, source)| ((*file).to_owned(), (*source).to_owned()))
            .collect()
    }

    /// A tree following every rule, one file per kind of import.
    fn clean() -> Vec<(String, String)> {
        tree(&[
            (
                "lib.rs",
                "mod conn; mod server; mod transport; mod codec; mod room;\n\
                 pub use crate::server::Server;\n\
                 pub use crate::conn::Conn;\n\
                 pub use liweb_macros::Events;\n",
            ),
            (
                "transport/mod.rs",
                "mod item;\nuse crate::server::Server;\nuse self::item::Item;\n",
            ),
            ("transport/item.rs", "use crate::codec::Frame;\n"),
            (
                "server/mod.rs",
                "mod builder;\nuse crate::{conn::Conn, room::Room};\n",
            ),
            (
                "server/builder.rs",
                "use super::Server;\nuse crate::handler::Handler;\n",
            ),
            ("handler/mod.rs", "use crate::server::Server;\n"),
            (
                "room/mod.rs",
                "mod key;\nuse self::key::RoomKey;\nuse crate::Conn;\n",
            ),
            (
                "room/key.rs",
                "use crate::codec::Frame;\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    #[derive(crate::Events)]\n    enum E {}\n}\n",
            ),
            (
                "conn/mod.rs",
                "use crate::{codec::{Frame, json::Json}, transport::item::Item, protocol::CloseCode};\n\
                 fn f() -> crate::error::Error { todo!() }\n",
            ),
            ("codec/mod.rs", "pub mod json;\nuse crate::error::Error;\n"),
            (
                "codec/json.rs",
                "use super::Frame;\nuse crate::room::key::RoomKey;\n",
            ),
            ("protocol.rs", ""),
            ("error.rs", "use crate::protocol::CloseCode;\n"),
        ])
    }

    /// `files` with `file`'s source replaced (or the file added).
    fn with(mut files: Vec<(String, String)>, file: &str, source: &str) -> Vec<(String, String)> {
        files.retain(|(f, _)| f != file);
        files.push((file.to_owned(), source.to_owned()));
        files
    }

    #[test]
    fn a_clean_tree_passes() {
        assert_eq!(violations(&clean()), Vec::<String>::new());
    }

    #[test]
    fn an_upward_import_names_file_import_and_rule() {
        let files = with(clean(), "conn/mod.rs", "use crate::server::Server;\n");
        assert_eq!(
            violations(&files),
            [
                "liweb/src/conn/mod.rs: imports crate::server::Server (server/mod.rs): \
                 layer 12 (conn/) must not import layer 5 (core), above it; \
                 conn/ imports only the leaves and transport/item.rs"
            ]
        );
    }

    #[test]
    fn every_named_rule_is_reported() {
        let files = with(clean(), "codec/mod.rs", "use crate::conn::Conn;\n");
        let files = with(files, "state.rs", "use crate::handler::Handler;\n");
        let files = with(files, "server/mod.rs", "use crate::dispatch::Table;\n");
        let files = with(files, "dispatch/mod.rs", "");
        assert_eq!(
            violations(&files),
            [
                "liweb/src/codec/mod.rs: imports crate::conn::Conn (conn/mod.rs): \
                 layer 14 (leaves) must not import layer 12 (conn/), above it; \
                 leaves import nothing above them",
                "liweb/src/server/mod.rs: imports crate::dispatch::Table (dispatch/mod.rs): \
                 layer 5 (core) must not import layer 4 (dispatch/), above it; \
                 server/ never imports session/ or dispatch/ (they call it, not the other way)",
                "liweb/src/state.rs: imports crate::handler::Handler (handler/mod.rs): \
                 layer 10 (state/) must not import layer 5 (core), above it; \
                 room/, state/, presence/, cluster/ never import server/, dispatch/, session/, handler/",
            ]
        );
    }

    #[test]
    fn a_grouped_nested_import_is_seen() {
        let files = with(
            clean(),
            "error.rs",
            "use crate::{\n    protocol::CloseCode,\n    codec::{json::{self, Json}, Frame as F},\n    \
             room::{key::RoomKey, Room},\n};\n",
        );
        assert_eq!(
            violations(&files),
            [
                "liweb/src/error.rs: imports crate::room::Room (room/mod.rs): \
                 layer 14 (leaves) must not import layer 7 (room/), above it; \
                 leaves import nothing above them"
            ]
        );
        let paths: Vec<String> = imports(&files)
            .into_iter()
            .filter(|import| import.file == "error.rs")
            .map(|import| format!("{} ({})", import.path, import.target))
            .collect();
        assert_eq!(
            paths,
            [
                "crate::codec::Frame (codec/mod.rs)",
                "crate::codec::json (codec/json.rs)",
                "crate::codec::json::Json (codec/json.rs)",
                "crate::protocol::CloseCode (protocol.rs)",
                "crate::room::Room (room/mod.rs)",
                "crate::room::key::RoomKey (room/key.rs)",
            ]
        );
    }

    #[test]
    fn imports_in_comments_and_strings_are_ignored() {
        let source = r####"
//! Unlike [`Server`](crate::server::Server), this is a leaf.
/// Calls `crate::server::Server::new` /* not closed here
// use crate::server::Server;
/* use crate::server::Server;
   /* nested */ use crate::server::Server; */
fn f() -> &'static str {
    let _c = '"'; let _q = '\''; let _b = b'"';
    let _s = "use crate::server::Server; \" crate::server::Server";
    let _r = r##"use crate::server::Server; "# crate::server::Server"##;
    let _b = br"crate::server::Server";
    "crate::server::Server"
}
use crate::protocol::CloseCode;
"####;
        let files = with(clean(), "error.rs", source);
        assert_eq!(violations(&files), Vec::<String>::new());
        let paths: Vec<String> = imports(&files)
            .into_iter()
            .filter(|import| import.file == "error.rs")
            .map(|import| import.path)
            .collect();
        assert_eq!(paths, ["crate::protocol::CloseCode"]);
    }

    #[test]
    fn super_resolves_from_a_mod_rs_and_from_a_plain_file() {
        let files = with(
            clean(),
            "room/mod.rs",
            "mod key;\nuse super::server::Server;\n",
        );
        let files = with(files, "room/key.rs", "use super::Room;\n");
        let files = with(
            files,
            "room/member.rs",
            "use super::Room;\nuse super::super::conn::Conn;\n",
        );
        let targets: Vec<(String, String, String)> = imports(&files)
            .into_iter()
            .filter(|import| import.file.starts_with("room/"))
            .map(|import| (import.file, import.path, import.target))
            .collect();
        let expected = [
            ("room/key.rs", "super::Room", "room/mod.rs"),
            ("room/member.rs", "super::Room", "room/mod.rs"),
            ("room/member.rs", "super::super::conn::Conn", "conn/mod.rs"),
            ("room/mod.rs", "super::server::Server", "server/mod.rs"),
        ]
        .map(|(file, path, target)| (file.to_owned(), path.to_owned(), target.to_owned()));
        assert_eq!(targets, expected);
        assert_eq!(
            violations(&files),
            [
                "liweb/src/room/key.rs: imports super::Room (room/mod.rs): \
                 layer 14 (leaves) must not import layer 7 (room/), above it; \
                 leaves import nothing above them",
                "liweb/src/room/mod.rs: imports super::server::Server (server/mod.rs): \
                 layer 7 (room/) must not import layer 5 (core), above it; \
                 room/, state/, presence/, cluster/ never import server/, dispatch/, session/, handler/",
            ]
        );
    }

    #[test]
    fn super_and_self_follow_inline_modules() {
        let files = with(
            clean(),
            "room/key.rs",
            "mod tests {\n    use super::*;\n    mod deeper { use super::super::Key; }\n}\n\
             mod wire { use self::inner::X; }\nuse super::Room;\n",
        );
        let targets: Vec<(String, String)> = imports(&files)
            .into_iter()
            .filter(|import| import.file == "room/key.rs")
            .map(|import| (import.path, import.target))
            .collect();
        // `super::*` in `mod tests` and `self::inner` are room/key.rs
        // itself; only the last `super` leaves the file.
        assert_eq!(
            targets,
            [("super::Room".to_owned(), "room/mod.rs".to_owned())]
        );
    }

    #[test]
    fn root_reexports_count_as_the_items_they_reexport() {
        let files = with(
            clean(),
            "codec/mod.rs",
            "use crate::Server;\n#[derive(crate::Events)]\nenum E {}\n",
        );
        assert_eq!(
            violations(&files),
            [
                "liweb/src/codec/mod.rs: imports crate::Server (server/mod.rs): \
                 layer 14 (leaves) must not import layer 5 (core), above it; \
                 leaves import nothing above them"
            ]
        );
    }

    #[test]
    fn a_module_without_a_layer_is_a_violation() {
        let files = with(clean(), "ack.rs", "use crate::conn::Conn;\n");
        let files = with(files, "hooks.rs", "");
        let files = with(files, "protocol.rs", "use crate::ack::Ack;\n");
        let rule = "has no layer; add it to the layer table in \
                    tests/tests/architecture.rs and docs/ARCHITECTURE.md";
        assert_eq!(
            violations(&files),
            [
                format!(
                    "liweb/src/ack.rs: imports crate::conn::Conn (conn/mod.rs): module `ack` {rule}"
                ),
                format!("liweb/src/hooks.rs: module `hooks` {rule}"),
                format!(
                    "liweb/src/protocol.rs: imports crate::ack::Ack (ack.rs): module `ack` {rule}"
                ),
            ]
        );
    }

    #[test]
    fn a_path_attribute_module_is_its_file() {
        let mut files = clean();
        files[0]
            .1
            .push_str("#[doc(hidden)]\n#[path = \"fuzz.rs\"]\npub mod __fuzz;\n");
        let files = with(
            files,
            "fuzz.rs",
            "use crate::codec::Frame;\nuse super::codec::json::Json;\n",
        );
        assert_eq!(violations(&files), Vec::<String>::new());
        let files = with(files, "error.rs", "use crate::__fuzz::decode;\n");
        assert_eq!(
            violations(&files),
            [
                "liweb/src/error.rs: imports crate::__fuzz::decode (fuzz.rs): \
                 layer 14 (leaves) must not import layer 1 (tooling), above it; \
                 leaves import nothing above them"
            ]
        );
    }

    #[test]
    fn carved_out_files_keep_their_own_layer() {
        let files = with(clean(), "transport/item.rs", "use super::Transport;\n");
        assert_eq!(
            violations(&files),
            [
                "liweb/src/transport/item.rs: imports super::Transport (transport/mod.rs): \
                 layer 13 (transport/item.rs) must not import layer 2 (transport/), above it"
            ]
        );
    }
}
