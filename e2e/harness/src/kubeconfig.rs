//! Kubeconfigs for the loopback control plane: who a client acts as, the
//! kubeconfig text with the CA and credentials embedded, and clients from it.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::certs::Pki;

/// Who a client acts as.
#[derive(Clone, Debug)]
pub enum Identity {
    /// The cluster admin (client certificate in `system:masters`).
    Admin,
    /// Any user and groups, by impersonation from the admin credential.
    User { name: String, groups: Vec<String> },
    /// A ServiceAccount, by impersonation (`system:serviceaccount:NS:NAME`).
    ServiceAccount { namespace: String, name: String },
    /// A bearer token, for example one from the TokenRequest API.
    Token(String),
    /// No credentials at all (a proxy in front of the API server that
    /// forwards each client's own token through it).
    Anonymous,
}

/// A kubeconfig for `who` against `server`, with the CA and credentials embedded.
pub(crate) fn render(server: String, pki: &Pki, who: &Identity) -> Result<String> {
    use serde_yaml::{Mapping, Value};
    let b64 = |s: &str| base64_encode(s.as_bytes());
    let mut user = Mapping::new();
    match who {
        Identity::Token(t) => {
            user.insert("token".into(), Value::String(t.clone()));
        }
        Identity::Anonymous => {}
        other => {
            user.insert(
                "client-certificate-data".into(),
                b64(&pki.admin_cert_pem).into(),
            );
            user.insert("client-key-data".into(), b64(&pki.admin_key_pem).into());
            match other {
                Identity::User { name, groups } => {
                    user.insert("as".into(), name.clone().into());
                    let g: Vec<Value> = groups.iter().map(|g| g.clone().into()).collect();
                    user.insert("as-groups".into(), Value::Sequence(g));
                }
                Identity::ServiceAccount { namespace, name } => {
                    user.insert(
                        "as".into(),
                        format!("system:serviceaccount:{namespace}:{name}").into(),
                    );
                    user.insert(
                        "as-groups".into(),
                        Value::Sequence(vec![
                            "system:serviceaccounts".into(),
                            format!("system:serviceaccounts:{namespace}").into(),
                            "system:authenticated".into(),
                        ]),
                    );
                }
                _ => {}
            }
        }
    }
    let doc = serde_yaml::to_value(serde_yaml::Mapping::from_iter([
        ("apiVersion".into(), "v1".into()),
        ("kind".into(), "Config".into()),
        (
            "clusters".into(),
            Value::Sequence(vec![Value::Mapping(Mapping::from_iter([
                ("name".into(), "prefix-operator-test".into()),
                (
                    "cluster".into(),
                    Value::Mapping(Mapping::from_iter([
                        ("server".into(), server.into()),
                        ("certificate-authority-data".into(), b64(&pki.ca_pem).into()),
                    ])),
                ),
            ]))]),
        ),
        (
            "users".into(),
            Value::Sequence(vec![Value::Mapping(Mapping::from_iter([
                ("name".into(), "user".into()),
                ("user".into(), Value::Mapping(user)),
            ]))]),
        ),
        (
            "contexts".into(),
            Value::Sequence(vec![Value::Mapping(Mapping::from_iter([
                ("name".into(), "prefix-operator-test".into()),
                (
                    "context".into(),
                    Value::Mapping(Mapping::from_iter([
                        ("cluster".into(), "prefix-operator-test".into()),
                        ("user".into(), "user".into()),
                    ])),
                ),
            ]))]),
        ),
        ("current-context".into(), "prefix-operator-test".into()),
    ]))?;
    Ok(serde_yaml::to_string(&doc)?)
}

/// Writes `yaml` to `path` (mode 0600), through a temporary file.
pub(crate) fn write_private(yaml: &str, path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(yaml.as_bytes())?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A kube client from kubeconfig text.
pub async fn client_from_yaml(yaml: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml)?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    cfg.read_timeout = Some(Duration::from_secs(60));
    Ok(kube::Client::try_from(cfg)?)
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
