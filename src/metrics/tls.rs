//! The certificate `/metrics` is served with: PEM files named by
//! `--metrics-cert-file` and `--metrics-key-file`, or a self-signed one
//! made at start (as kube-controller-manager and controller-runtime do
//! without a certificate directory).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain (leaf first) and its key.
pub type Credentials = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The TLS configuration of the metrics server: from `files` (certificate
/// chain, key) when given, else self-signed for `names`.
pub fn server_config(files: Option<(&Path, &Path)>, names: &[String]) -> Result<Arc<ServerConfig>> {
    let (chain, key) = match files {
        Some((cert, key)) => from_files(cert, key)?,
        None => self_signed(names)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the metrics certificate and its key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The chain in `cert` and the first private key in `key` (PEM).
pub fn from_files(cert: &Path, key: &Path) -> Result<Credentials> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        bail!("{}: no PEM certificate in it", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| anyhow!("{}: {e}", key.display()))?;
    Ok((chain, key_der))
}

/// A self-signed ECDSA P-256 certificate for `names` (DNS names or
/// addresses) and `localhost`.
pub fn self_signed(names: &[String]) -> Result<Credentials> {
    let mut sans: Vec<String> = names.to_vec();
    sans.push("localhost".into());
    let mut params = rcgen::CertificateParams::new(sans).context("certificate names")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "prefix-operator metrics");
    let key = rcgen::KeyPair::generate().context("generating the metrics key")?;
    let cert = params
        .self_signed(&key)
        .context("self-signing the metrics certificate")?;
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_makes_a_usable_server_config() {
        let c = server_config(None, &["node-1".into()]).expect("self-signed");
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn reads_pem_files_and_names_the_bad_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["metrics.example".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, cert.pem()).expect("write");
        std::fs::write(&k, key.serialize_pem()).expect("write");
        let (chain, _) = from_files(&c, &k).expect("read");
        assert_eq!(chain, vec![cert.der().clone()]);
        server_config(Some((c.as_path(), k.as_path())), &[]).expect("a config from files");

        let e = from_files(&k, &k).expect_err("a key is no certificate");
        assert!(format!("{e:#}").contains("tls.key"), "{e:#}");
        let missing = dir.path().join("missing.crt");
        let e = from_files(&missing, &k).expect_err("missing");
        assert!(format!("{e:#}").contains("missing.crt"), "{e:#}");
        // A key that is not the certificate's: refused at start.
        let other = dir.path().join("other.key");
        std::fs::write(
            &other,
            rcgen::KeyPair::generate().expect("key").serialize_pem(),
        )
        .expect("write");
        assert!(server_config(Some((c.as_path(), other.as_path())), &[]).is_err());
    }
}
