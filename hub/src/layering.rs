//! The layering of this crate, checked: every `crate::` path in the code
//! (comments aside) goes from a layer to the same or a lower one, and no
//! component names another.
//!
//! - core (0): everything not listed below;
//! - services (1): `services/`;
//! - components (2): `components/<name>/`, and the kit all of them share
//!   (`components/*.rs`), which names no component; beside them, the
//!   publish API (`backend_api.rs`), which names no component either;
//! - assembly (3): `assembly.rs`, `config.rs`, `lib.rs`.

use std::path::{Path, PathBuf};

/// Where a file or a `crate::` path belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layer {
    Core,
    Services,
    /// A component's folder, by name; `None`: the kit they share.
    Component(Option<String>),
    Api,
    Assembly,
}

impl Layer {
    fn rank(&self) -> u8 {
        match self {
            Layer::Core => 0,
            Layer::Services => 1,
            Layer::Component(_) | Layer::Api => 2,
            Layer::Assembly => 3,
        }
    }

    /// The layer of a module path below `crate` (`["components", "chat"]`).
    fn of_module(segments: &[&str]) -> Layer {
        match segments {
            [] | ["assembly" | "config", ..] => Layer::Assembly,
            // The crate root's re-exports are the assembly's.
            [
                "Hub" | "Handlers" | "StartError" | "HubConfig" | "BackendConfig",
                ..,
            ] => Layer::Assembly,
            [
                "ComponentsConfig" | "IdentityConfig" | "NamespaceConfig" | "LiveConfig",
                ..,
            ] => Layer::Assembly,
            ["services", ..] => Layer::Services,
            ["backend_api", ..] => Layer::Api,
            ["components", name, ..] if is_component(name) => {
                Layer::Component(Some((*name).to_owned()))
            }
            ["components", ..] => Layer::Component(None),
            _ => Layer::Core,
        }
    }

    /// Whether code in `self` may name something in `to`.
    fn may_use(&self, to: &Layer) -> bool {
        match (self, to) {
            (Layer::Component(from), Layer::Component(to)) => to.is_none() || from == to,
            (Layer::Api, Layer::Component(_)) | (Layer::Component(_), Layer::Api) => false,
            _ => to.rank() <= self.rank(),
        }
    }
}

/// Whether `name` is a component's folder (rather than a kit module).
fn is_component(name: &str) -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/components")
        .join(name)
        .is_dir()
}

/// The layer of a source file, from its path below `src/`.
fn layer_of_file(relative: &Path) -> Layer {
    let parts: Vec<&str> = relative
        .iter()
        .filter_map(|p| p.to_str())
        .map(|p| p.strip_suffix(".rs").unwrap_or(p))
        .collect();
    match parts.as_slice() {
        ["lib"] => Layer::Assembly,
        ["components", name, _, ..] => Layer::Component(Some((*name).to_owned())),
        ["components", ..] => Layer::Component(None),
        other => Layer::of_module(other),
    }
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module paths `code` names after `crate::` (each of a `crate::{a,
/// b::c}` group), as segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        // `crate::` inside an identifier (`hub_crate::`) is not ours.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                paths.push(segments(item.trim()));
            }
        } else {
            paths.push(segments(rest));
        }
    }
    paths
}

/// The leading `a::b::c` of `text`.
fn segments(text: &str) -> Vec<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `source` without its comments (line comments, doc comments included).
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `file (layer) -> crate::path (layer)` that breaks the layering.
fn wrong_arrows() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "found the sources in {}", src.display());
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("below src");
        if relative == Path::new("layering.rs") {
            continue; // this check, whose own tests name every layer
        }
        let from = layer_of_file(relative);
        let source = std::fs::read_to_string(&file).expect("a source file");
        for path in crate_paths(&code_of(&source)) {
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            let to = Layer::of_module(&segments);
            if !from.may_use(&to) {
                wrong.push(format!(
                    "{} ({from:?}) -> crate::{} ({to:?})",
                    relative.display(),
                    path.join("::")
                ));
            }
        }
        // A component reaching another through `super::super::…`.
        if matches!(from, Layer::Component(Some(_))) && source.contains("super::super::") {
            wrong.push(format!(
                "{}: super::super:: in a component",
                relative.display()
            ));
        }
    }
    wrong
}

#[test]
fn the_arrows_run_from_components_to_services_to_core() {
    let wrong = wrong_arrows();
    assert!(wrong.is_empty(), "wrong arrows:\n{}", wrong.join("\n"));
}

#[test]
fn the_check_sees_a_wrong_arrow() {
    let core = layer_of_file(Path::new("store.rs"));
    let services = layer_of_file(Path::new("services/presence/state.rs"));
    let chat = layer_of_file(Path::new("components/chat/writer.rs"));
    let kit = layer_of_file(Path::new("components/kit.rs"));
    let api = layer_of_file(Path::new("backend_api.rs"));
    assert_eq!(core, Layer::Core);
    assert_eq!(services, Layer::Services);
    assert_eq!(chat, Layer::Component(Some("chat".to_owned())));
    assert_eq!(kit, Layer::Component(None));
    let named = |code: &str| {
        let path = crate_paths(code).remove(0);
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        Layer::of_module(&segments)
    };
    assert!(!core.may_use(&named("use crate::services::Context;")));
    assert!(!services.may_use(&named("crate::components::chat::Chat")));
    assert!(!chat.may_use(&named("use crate::components::calls::Calls;")));
    assert!(!chat.may_use(&named("crate::backend_api::publish")));
    assert!(!api.may_use(&named("crate::components::presence::Presence")));
    assert!(!kit.may_use(&named("crate::components::chat::ChatConfig")));
    assert!(!core.may_use(&named("crate::{Hub, store::Store}")));
    assert!(chat.may_use(&named("use crate::components::kit::parse;")));
    assert!(chat.may_use(&named(
        "use crate::services::notifications::NewNotification;"
    )));
    assert!(services.may_use(&named("crate::store::Store")));
    assert_eq!(
        crate_paths("use crate::{a::b, c}; hub_crate::x"),
        [vec!["a".to_owned(), "b".to_owned()], vec!["c".to_owned()]]
    );
}
