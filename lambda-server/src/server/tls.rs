//! TLS for the API (`[tls] cert`, `key`: PEM files), with rustls. The files are read at start
//! (a bad file stops the start with what is wrong and where) and again when they change: a new
//! connection looks at their modification times at most once a second, so a renewed certificate
//! is served without a restart; a renewal that cannot be read is logged and the previous
//! certificate kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How often, at most, the files are looked at for a change.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The certificate chain and private key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM; the server's first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What the files looked like when last read: modification time and size of each.
type Stamp = [(Option<SystemTime>, u64); 2];

struct Current {
    acceptor: TlsAcceptor,
    stamp: Stamp,
    checked: Instant,
}

/// The server's TLS, reloaded when its files change.
pub struct Tls {
    files: TlsFiles,
    current: Mutex<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [one(&files.cert), one(&files.key)]
}

/// A rustls server configuration from the files (HTTP/1.1 only).
fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("[tls] cert {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "[tls] cert {}: no CERTIFICATE block in the file",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("[tls] key {}: {e}", files.key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "[tls] cert {} and key {} do not make a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Tls {
    /// Reads the files; an error says which file is wrong and how.
    /// The files are read now: an error says which one and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, String> {
        let stamp = stamp(&files);
        let cfg = server_config(&files)?;
        Ok(Arc::new(Self {
            current: Mutex::new(Current {
                acceptor: TlsAcceptor::from(Arc::new(cfg)),
                stamp,
                checked: Instant::now(),
            }),
            files,
        }))
    }

    /// The acceptor for a new connection: the files' current contents when they have changed
    /// (looked at no more than once a second).
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.checked.elapsed() >= CHECK_EVERY {
            cur.checked = Instant::now();
            let now = stamp(&self.files);
            if now != cur.stamp {
                cur.stamp = now;
                match server_config(&self.files) {
                    Ok(cfg) => {
                        cur.acceptor = TlsAcceptor::from(Arc::new(cfg));
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "the changed TLS files cannot be used; the previous certificate stays"
                    ),
                }
            }
        }
        cur.acceptor.clone()
    }
}
