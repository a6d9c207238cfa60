//! A sync job's results as files a person opens: RFC 4180 CSV (written by the `csv` crate, with
//! OWASP's guard against formula injection) or NDJSON, read from the ledger a page at a time, so
//! that a job of any size is exported in flat memory. The HTTP API streams them
//! (`GET /v1/sync-jobs/{id}/results` with `Accept: text/csv`) and the CLI writes them
//! (`--results-csv PATH`); this is their one home.

use std::sync::Arc;

use futures::Stream;

use crate::domain::error::DomainError;
use crate::domain::job::JobResult;
use crate::engine::{Engine, Status};

/// The CSV's columns, in order.
pub const CSV_HEADER: [&str; 6] = ["code", "upstream", "status", "vendor_id", "error_kind", "error_message"];

/// Result lines read from the ledger per page.
const PAGE: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    /// What comes before the first line: the CSV's header row.
    fn head(self) -> Vec<u8> {
        match self {
            Format::Csv => rows(std::iter::once(CSV_HEADER.map(str::to_owned))),
            Format::Ndjson => Vec::new(),
        }
    }

    fn lines(self, results: &[JobResult]) -> Vec<u8> {
        match self {
            Format::Csv => rows(results.iter().map(|r| {
                let error = r.error.as_ref();
                [
                    guarded(&r.code),
                    guarded(&r.upstream),
                    r.status.as_str().to_owned(),
                    guarded(r.vendor_id.as_deref().unwrap_or_default()),
                    error
                        .and_then(|e| serde_json::to_value(e.kind).ok())
                        .and_then(|k| k.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    guarded(error.map_or("", |e| e.message.as_str())),
                ]
            })),
            Format::Ndjson => {
                let mut out = Vec::new();
                for r in results {
                    serde_json::to_writer(&mut out, r).expect("a result serializes");
                    out.push(b'\n');
                }
                out
            }
        }
    }
}

/// CSV records (RFC 4180: quoted where a cell holds a comma, a quote or a line break, CRLF
/// line ends).
fn rows(records: impl Iterator<Item = [String; 6]>) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for record in records {
        writer.write_record(&record).expect("writing to memory");
    }
    writer.into_inner().expect("writing to memory")
}

/// A cell a spreadsheet would run as a formula (it begins with `=`, `+`, `-`, `@`, a tab or a
/// carriage return: OWASP's CSV injection) is prefixed with `'`, which makes it text.
pub fn guarded(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

/// Every result of job `id` (of `status` and `upstream` where given), in the job's order, as
/// chunks of `format`. The job must exist (the caller checked, once: the pages are read from the
/// ledger straight); a ledger that fails midway ends the stream with its error, so that a
/// reader never takes a cut file for a whole one.
pub fn stream(
    engine: Arc<Engine>,
    id: i64,
    status: Option<Status>,
    upstream: Option<String>,
    format: Format,
) -> impl Stream<Item = Result<Vec<u8>, DomainError>> + Send + 'static {
    let start = (Some((0_i64, String::new())), true);
    futures::stream::unfold(start, move |(after, first)| {
        let engine = engine.clone();
        let upstream = upstream.clone();
        async move {
            let after = after?;
            let mut chunk = if first { format.head() } else { Vec::new() };
            let page = engine.store.job_results(id, status, upstream, after, PAGE).await;
            match page.map_err(crate::engine::ledger_error) {
                Ok(page) => {
                    let next = (page.len() == PAGE)
                        .then(|| page.last().map(|r| (r.seq, r.upstream.clone())))
                        .flatten();
                    chunk.extend(format.lines(&page));
                    Some((Ok(chunk), (next, false)))
                }
                Err(e) => Some((Err(e), (None, false))),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_text() {
        for bad in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(guarded(bad), format!("'{bad}"));
        }
        for fine in ["SPRING-20", "", "a=b", "'quoted"] {
            assert_eq!(guarded(fine), fine);
        }
    }

    #[test]
    fn rows_are_rfc_4180() {
        let row = [
            "A,B".to_owned(),
            "say \"hi\"".to_owned(),
            "two\nlines".to_owned(),
            String::new(),
            String::new(),
            String::new(),
        ];
        let text = String::from_utf8(rows(std::iter::once(row))).unwrap();
        assert_eq!(text, "\"A,B\",\"say \"\"hi\"\"\",\"two\nlines\",,,\r\n");
        assert_eq!(
            String::from_utf8(Format::Csv.head()).unwrap(),
            "code,upstream,status,vendor_id,error_kind,error_message\r\n"
        );
    }
}
