//! `tollhouse-devcerts`: writes a CA, a controller server certificate and a dataplane client
//! certificate for trying snapshot delivery over mutual TLS, without openssl.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use tollhouse_e2e::certs::{self, Authority};

/// Throwaway mTLS certificates for the controller and a dataplane.
#[derive(Parser, Debug)]
struct Args {
    /// Directory to write ca.pem, controller.pem, controller.key, dataplane.pem, dataplane.key.
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
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
        let path = certs::write(&args.out, name, &text)
            .with_context(|| format!("writing {}/{name}", args.out.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
