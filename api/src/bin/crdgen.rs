//! Writes `crds/*.yaml` from the Rust types. Usage: `crdgen [DIR]` (default `crds`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds"));
    std::fs::create_dir_all(&dir)?;
    for (file, crd) in tollhouse_api::crds() {
        let path = dir.join(file);
        std::fs::write(&path, tollhouse_api::render_crd(&crd)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
