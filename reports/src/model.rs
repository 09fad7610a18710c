//! What a report is, as stored (tree `reports`) and answered by the API.

use serde::{Deserialize, Serialize};

/// Where a report is in its life. `queued -> running -> done | failed`; a failed one goes back
/// to `queued` when retried. A report found `running` at start was cut by a restart: it is
/// marked `failed` (retry makes it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }
}

/// A file format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Pdf,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Pdf => "pdf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
}

/// One generated file. `id` is what a download link names (a UUID), never the bytes' place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub format: Format,
    pub id: String,
    pub bytes: u64,
}

/// A report: the period it covers, who or what asked for it, and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// UUID v7 (key order is creation order).
    pub id: String,
    /// RFC 3339 UTC, whole hours (the cost aggregates' resolution): `[since, until)`.
    pub since: String,
    pub until: String,
    /// The IANA zone its days begin in (`UTC` for a report made before zones existed).
    #[serde(default = "utc")]
    pub timezone: String,
    pub status: Status,
    /// The token name that asked, or `schedule:<name>`.
    pub requested_by: String,
    /// The schedule that made it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Generations tried (a retry adds one).
    pub attempts: u32,
    /// Why the last generation failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The files, once done.
    #[serde(default)]
    pub files: Vec<FileMeta>,
}

fn utc() -> String {
    "UTC".into()
}

impl Report {
    pub fn file(&self, format: Format) -> Option<&FileMeta> {
        self.files.iter().find(|f| f.format == format)
    }
}

/// What a file id points at (stored beside the bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub report: String,
    pub format: Format,
}
