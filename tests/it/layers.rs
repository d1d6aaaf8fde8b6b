//! The layers point down only: what each module of `src/` may import of the others is the table in the README's
//! architecture section, and this test reads the source to hold the code to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module and the modules it may use; the wiring (`app`) and the command line (`cli`) sit on top and may use
/// what they wire.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "app",
        &["clock", "config", "crypto", "flow", "http", "metrics", "sms", "store"],
    ),
    ("cli", &["app", "clock", "config", "flow"]),
    ("http", &["flow", "metrics"]),
    ("flow", &["audit", "clock", "crypto", "metrics", "otp", "sms", "store"]),
    ("store", &["audit", "ids"]),
    ("audit", &["crypto", "ids"]),
    ("metrics", &["audit"]),
    ("sms", &[]),
    ("otp", &[]),
    ("crypto", &[]),
    ("config", &["sms"]),
    ("clock", &[]),
    ("ids", &[]),
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<&str> = ALLOWED.iter().map(|(module, _)| *module).collect();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        assert!(modules.contains(module.as_str()), "src/{module} is not in the table");
        let text = std::fs::read_to_string(&file).expect("read");
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(name.as_str()) && name != module {
                used.entry(module.clone()).or_default().insert(name);
            }
        }
    }
    let mut wrong = Vec::new();
    for (module, allowed) in ALLOWED {
        for name in used.get(*module).into_iter().flatten() {
            if !allowed.contains(&name.as_str()) {
                wrong.push(format!("{module} uses {name}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:?}");
}
