//! Connections: the pool every query uses and the one dedicated LISTEN connection (LISTEN
//! needs a connection of its own that nobody else borrows). TLS is rustls on ring: with
//! `sslmode=require` the server must present a certificate the configured CA (or the webpki
//! roots) vouches for.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{FleetError, FleetSettings};

/// The parsed connection settings (password applied) and the TLS connector.
#[derive(Clone)]
pub struct Connector {
    pub pg: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

impl Connector {
    /// From `[fleet]`: the URL must not carry a password (it would sit in a file and in logs);
    /// the password comes from the environment variable `password_env` names.
    pub fn new(s: &FleetSettings) -> Result<Connector, FleetError> {
        let mut pg: tokio_postgres::Config = s.database_url.parse().map_err(|e| FleetError::Url(format!("{e}")))?;
        if pg.get_password().is_some() {
            return Err(FleetError::Url(format!(
                "carries a password; remove it and set the environment variable {} instead",
                s.password_env
            )));
        }
        if let Ok(pw) = std::env::var(&s.password_env) {
            if !pw.is_empty() {
                pg.password(pw);
            }
        }
        pg.connect_timeout(Duration::from_millis(s.timeout_ms));
        pg.application_name("clawbutler");
        Ok(Connector { pg, tls: MakeRustlsConnect::new(tls_config(s)?) })
    }

    /// The pool; connections open lazily, each wait bounded by `timeout_ms`.
    pub fn pool(&self, s: &FleetSettings) -> Result<Pool, FleetError> {
        let mgr = Manager::from_config(
            self.pg.clone(),
            self.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let t = Some(Duration::from_millis(s.timeout_ms));
        Pool::builder(mgr)
            .max_size(s.pool_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts { wait: t, create: t, recycle: t })
            .build()
            .map_err(|e| FleetError::Pool(e.to_string()))
    }
}

fn tls_config(s: &FleetSettings) -> Result<rustls::ClientConfig, FleetError> {
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca_file {
        Some(path) => {
            let err = |msg: String| FleetError::CaFile { path: path.display().to_string(), msg };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
            for c in certs {
                roots.add(c.map_err(|e| err(e.to_string()))?).map_err(|e| err(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(err("holds no certificate".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| FleetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
