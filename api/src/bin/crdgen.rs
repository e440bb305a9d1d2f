//! Writes the CRD YAML from the Rust types. Usage: `crdgen [DIR...]`; by default into both
//! places that ship them, `crds/` and the Helm chart's `charts/tollhouse/crds/`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        dirs = vec![root.join("crds"), root.join("charts/tollhouse/crds")];
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir)?;
        for (file, crd) in tollhouse_api::crds() {
            let path = dir.join(file);
            std::fs::write(&path, tollhouse_api::render_crd(&crd)?)?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
