//! `tollhouse-devcerts`: writes a CA, a controller server certificate and a dataplane client
//! certificate for trying snapshot delivery over mutual TLS, without openssl.
//!
//! The output directory is made (or tightened to) 0700 and the keys are 0600 from their
//! creation: `scripts/run-example` keeps them under `.tollhouse/`.

use anyhow::Context;
use clap::Parser;
use std::path::{Path, PathBuf};
use tollhouse_e2e::certs::{self, Authority};

/// Throwaway mTLS certificates for the controller and a dataplane.
#[derive(Parser, Debug)]
struct Args {
    /// Directory to write ca.pem, controller.pem, controller.key, dataplane.pem, dataplane.key
    /// (made private to this user).
    #[arg(long, default_value = "certs")]
    out: PathBuf,
    /// Names in the controller's certificate (DNS names or IPs); repeat the flag for more.
    #[arg(long = "name", default_values = ["localhost", "127.0.0.1"])]
    names: Vec<String>,
    /// Subject CN of the dataplane's client certificate.
    #[arg(long, default_value = "dataplane")]
    dataplane: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    private_dir(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let ca = Authority::new("tollhouse delivery CA")?;
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    let controller = ca.server(&names)?;
    let dataplane = ca.client(&args.dataplane)?;
    for (name, text) in [
        ("ca.pem", ca.cert_pem()),
        ("controller.pem", controller.cert_pem),
        ("controller.key", controller.key_pem),
        ("dataplane.pem", dataplane.cert_pem),
        ("dataplane.key", dataplane.key_pem),
    ] {
        // `certs::write` sets 0600 on a key file it creates; an old one would keep its mode.
        match std::fs::remove_file(args.out.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("replacing {}/{name}", args.out.display()))
            }
            _ => {}
        }
        let path = certs::write(&args.out, name, &text)
            .with_context(|| format!("writing {}/{name}", args.out.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Creates `dir` as 0700 or tightens it to 0700; a shared directory (sticky bit, as `/tmp`)
/// is refused rather than changed.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        anyhow::ensure!(
            mode & 0o1000 == 0,
            "{} is a shared directory (sticky bit): give the certificates a directory of their own",
            dir.display()
        );
        if mode & 0o777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}
