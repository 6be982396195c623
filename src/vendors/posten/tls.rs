//! The HTTP client for Posten's API: TLS 1.2 or newer, the organisation certificate for client
//! authentication (PEM, or PKCS#12 read in pure Rust), Posten's server certificate checked
//! against the system roots or one configured CA.

use std::path::Path;

use base64::Engine;

use super::config::PostenConfig;

/// PEM text of one DER object.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

/// A PKCS#12 keystore's private key and certificate chain, as one PEM text.
pub fn pkcs12_to_pem(data: &[u8], password: &str) -> anyhow::Result<String> {
    let store = p12_keystore::KeyStore::from_pkcs12(
        data,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|e| anyhow::anyhow!("cannot open the PKCS#12 keystore: {e}"))?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| anyhow::anyhow!("the PKCS#12 keystore holds no private key"))?;
    let mut out = pem("PRIVATE KEY", chain.key().as_der());
    for c in chain.certs() {
        out.push_str(&pem("CERTIFICATE", c.as_der()));
    }
    Ok(out)
}

/// The organisation certificate and key as PEM, from whichever form the config names.
fn identity_pem(cfg: &PostenConfig) -> anyhow::Result<Vec<u8>> {
    match (&cfg.client_certificate_pem, &cfg.client_pkcs12) {
        (Some(cert), None) => {
            let mut pem = read(cert, "the organisation certificate")?;
            if let Some(key) = &cfg.client_key_pem {
                pem.push(b'\n');
                pem.extend(read(key, "the organisation certificate's key")?);
            }
            Ok(pem)
        }
        (None, Some(p12)) => {
            let password = match &cfg.client_pkcs12_password {
                Some(s) => s.resolve()?,
                None => String::new(),
            };
            Ok(pkcs12_to_pem(&read(p12, "the PKCS#12 keystore")?, &password)?.into_bytes())
        }
        _ => anyhow::bail!("posten: one organisation certificate (PEM or PKCS#12) is required"),
    }
}

/// The client every call to Posten goes through.
pub fn client(cfg: &PostenConfig) -> anyhow::Result<reqwest::Client> {
    let identity = reqwest::Identity::from_pem(&identity_pem(cfg)?)
        .map_err(|e| anyhow::anyhow!("the organisation certificate is not usable: {e}"))?;
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .identity(identity)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .https_only(true)
        .timeout(cfg.timeout())
        .connect_timeout(cfg.timeout().min(std::time::Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("signrelay/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &cfg.ca_certificate_pem {
        let cert = reqwest::Certificate::from_pem(&read(ca, "the CA certificate")?)
            .map_err(|e| anyhow::anyhow!("the CA certificate is not usable: {e}"))?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
    }
    Ok(b.build()?)
}
