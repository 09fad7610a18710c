//! Download links: a token signed with HMAC-SHA256 under `report-link.key` (32 random bytes,
//! 0600 in the data dir) naming one file of one report, with an expiry; it works once (its
//! nonce is recorded in tree `report_links` atomically on use). The same signer as the
//! notification action links (`notifier::link`), with its own key and tree. The token itself
//! is never stored: only the used nonces are. Each file has its own id, so a link names the
//! format too.

use crate::model::{FileRef, Format, Status};
use crate::{Reports, ReportsError};

pub(crate) fn meta_key(file_id: &str) -> Vec<u8> {
    [b"m/".as_slice(), file_id.as_bytes()].concat()
}

/// A download link as issued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Link {
    /// The path to GET (no bearer token needed: the token is the credential).
    pub url: String,
    pub expires_at: String,
    pub format: Format,
}

/// A downloaded file.
pub struct Download {
    pub report: String,
    pub format: Format,
    pub bytes: Vec<u8>,
}

impl Reports {
    /// A link to one file of a done report, valid `ttl_s` (default and at most
    /// `[report_settings] link_ttl_s`).
    pub fn link(&self, id: &str, format: Format, ttl_s: Option<u64>) -> Result<Link, ReportsError> {
        let r = self.get(id)?.ok_or_else(|| ReportsError::NotFound(format!("no report {id}")))?;
        if r.status != Status::Done {
            return Err(ReportsError::Conflict(format!(
                "report {id} is {}: only a done report has files",
                r.status.as_str()
            )));
        }
        let max = self.settings.link_ttl_s;
        let ttl = match ttl_s {
            None => max,
            Some(t) if (1..=max).contains(&t) => t,
            Some(t) => {
                return Err(ReportsError::BadRequest(format!(
                    "ttl_s must be 1 to {max} ([report_settings] link_ttl_s), not {t}"
                )))
            }
        };
        let file = r
            .file(format)
            .ok_or_else(|| ReportsError::NotFound(format!("report {id} has no {} file", format.as_str())))?;
        let expires = self.now() + chrono::Duration::seconds(ttl as i64);
        let token = self
            .links
            .issue(&file.id, expires.timestamp())
            .ok_or_else(|| ReportsError::Render("could not make a link token".into()))?;
        Ok(Link {
            url: format!("/api/v1/reports/download/{token}"),
            expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            format,
        })
    }

    /// Use a link: exactly one caller ever gets the file for a token; an expired, used or
    /// forged one is refused.
    pub fn download(&self, token: &str) -> Result<Download, ReportsError> {
        let now = self.now().timestamp();
        self.links.prune(now);
        let claims = self.links.consume(token, now)?;
        let file_id = claims.approval_id;
        let meta: FileRef = match self.files.get(meta_key(&file_id))? {
            Some(v) => serde_json::from_slice(&v)?,
            None => return Err(ReportsError::NotFound("the report of this link was removed".into())),
        };
        let bytes = self
            .files
            .get(file_id.as_bytes())?
            .ok_or_else(|| ReportsError::NotFound("the report of this link was removed".into()))?;
        Ok(Download { report: meta.report, format: meta.format, bytes: bytes.to_vec() })
    }
}
