//! E-mail over SMTP with lettre on rustls: STARTTLS (required, never a plaintext fallback) or
//! TLS from the first byte, optional AUTH, the web PKI roots plus an optional extra CA
//! (`ca_file`, e.g. a company CA or a test's self-signed certificate). One plain-text message
//! per delivery, to every `to` address.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Mail, Tokio1Executor};

use super::SendError;
use crate::message::Message;
use crate::settings::{ChannelConfig, SmtpTls};

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// One attempt's bound, end to end: lettre's own timeout covers single reads, and a
    /// server that stops answering mid-session would otherwise hold the delivery for minutes.
    timeout: Duration,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn build(c: &ChannelConfig, password: Option<String>, timeout: Duration) -> Result<Email, String> {
        let host = c.host.clone().unwrap_or_default();
        let mode = c.tls.unwrap_or_default();
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &c.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file {path}: {e}"))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| format!("ca_file {path}: {e}"))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls.build_rustls().map_err(|e| format!("TLS setup: {e}"))?;
        let port = c.port.unwrap_or(match mode {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(timeout))
            .tls(match mode {
                SmtpTls::Starttls => Tls::Required(tls),
                SmtpTls::Tls => Tls::Wrapper(tls),
            });
        if let (Some(user), Some(pw)) = (&c.username, password) {
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        let from = c.from.as_deref().unwrap_or_default().parse::<Mailbox>().map_err(|e| format!("from: {e}"))?;
        let to =
            c.to.iter()
                .map(|t| t.parse::<Mailbox>().map_err(|e| format!("to {t}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
        Ok(Email { transport: b.build(), timeout, from, to })
    }

    pub async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let mut b = Mail::builder().from(self.from.clone()).subject(msg.title.clone());
        for t in &self.to {
            b = b.to(t.clone());
        }
        let mail = b.header(ContentType::TEXT_PLAIN).body(msg.text()).map_err(|e| SendError::Config(e.to_string()))?;
        let sent =
            tokio::time::timeout(self.timeout, self.transport.send(mail)).await.map_err(|_| SendError::Timeout)?;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Refused(e.to_string())),
            Err(e) if e.is_transient() => Err(SendError::Transient(e.to_string())),
            Err(e) => Err(SendError::Connect(format!("SMTP: {e}"))),
        }
    }
}
