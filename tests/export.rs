//! A sync job's results exported whole: `GET /v1/sync-jobs/{id}/results` with `Accept: text/csv`
//! (RFC 4180, read back here with the `csv` crate; a cell a spreadsheet would run as a formula
//! made text) or `Accept: application/x-ndjson`, through the real router against wiremock Loop;
//! and the CLI's `--results-csv` in the sandbox.

mod common;

use std::time::Duration;

use common::jobs::{start_job, wait_done};
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

const HEADER: [&str; 6] = ["code", "upstream", "status", "vendor_id", "error_kind", "error_message"];

#[tokio::test]
async fn a_jobs_results_stream_as_csv_and_ndjson_every_line_not_one_page() {
    let lp = common::strict_server().await;
    // 1,205 codes: more than one of the export's pages (1,000). One is given an id a spreadsheet
    // would run as a formula, one is refused with commas, quotes and a line break.
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(body_partial_json(json!({ "code": "FORMULA" })))
        .respond_with(common::loop_created("=HYPERLINK(\"http://x\")", "FORMULA"))
        .mount(&lp)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .and(body_partial_json(json!({ "code": "QUOTED" })))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({ "error": "bad", "message": "no, \"never\"\nagain" })),
        )
        .mount(&lp)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/admin/promos"))
        .respond_with(|r: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let code = body["code"].as_str().unwrap();
            common::loop_created(&format!("promo_{code}"), code)
        })
        .mount(&lp)
        .await;
    let config = common::upstream("loop", "loop", &lp.uri(), "");
    let gw = common::start(&config, &[("spring", "[upstreams.loop]\n")], &[("LOOP_TOKEN", "t")]).await;
    let mut codes: Vec<Value> = (0..1203).map(|i| json!(format!("EXP-{i:04}"))).collect();
    codes.push(json!("FORMULA"));
    codes.push(json!("QUOTED"));
    let id = start_job(
        &gw,
        &json!({ "campaign": "spring", "template": { "discount": { "percent_off": 20 } }, "codes": codes }),
    )
    .await;
    wait_done(&gw, id, Duration::from_secs(60)).await;

    let get = |accept: &'static str, query: &'static str| {
        let url = format!("{}/v1/sync-jobs/{id}/results{query}", gw.base);
        let http = gw.http.clone();
        async move {
            let r = http.get(url).header("Accept", accept).send().await.unwrap();
            let status = r.status().as_u16();
            let ct = common::header_of(&r, "content-type").unwrap_or_default();
            (status, ct, r.text().await.unwrap())
        }
    };
    let (status, content_type, text) = get("text/csv", "").await;
    assert_eq!((status, content_type.as_str()), (200, "text/csv; charset=utf-8"));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), &csv::StringRecord::from(HEADER.to_vec()));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1205, "every result, not one page");
    assert_eq!(
        &rows[0],
        &csv::StringRecord::from(vec!["EXP-0000", "loop", "created", "promo_EXP-0000", "", ""])
    );
    let formula = rows.iter().find(|r| &r[0] == "FORMULA").unwrap();
    assert_eq!(&formula[3], "'=HYPERLINK(\"http://x\")", "a formula is made text");
    let quoted = rows.iter().find(|r| &r[0] == "QUOTED").unwrap();
    assert_eq!((&quoted[2], &quoted[4]), ("rejected", "vendor_rejected"));
    assert!(quoted[5].contains("no, \"never\"\nagain"), "{:?}", &quoted[5]);
    assert!(text.contains("\r\n"), "RFC 4180 lines end in CRLF");

    // A filter applies; NDJSON is the same lines as JSON objects.
    let (_, _, rejected) = get("text/csv", "?status=rejected").await;
    let mut filtered = csv::Reader::from_reader(rejected.as_bytes());
    assert_eq!(filtered.records().count(), 1, "{rejected}");
    let (status, content_type, ndjson) = get("application/x-ndjson", "").await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-ndjson"));
    let lines: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1205);
    assert_eq!(lines[0]["code"], "EXP-0000");
    // Paging makes no sense for an export; an unknown job is a 404 before any line.
    let (status, _, problem) = get("text/csv", "?limit=10").await;
    assert_eq!(status, 400, "{problem}");
    assert!(problem.contains("limit"), "{problem}");
    let r = gw
        .http
        .get(format!("{}/v1/sync-jobs/999999/results", gw.base))
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // JSON stays the default, and first in a list.
    let (_, content_type, _) = get("application/json, text/csv", "").await;
    assert!(content_type.starts_with("application/json"), "{content_type}");
}

#[test]
fn the_cli_writes_every_result_to_results_csv() {
    let dir = tempfile::tempdir().unwrap();
    let codes = dir.path().join("codes.csv");
    std::fs::write(&codes, "code,percent_off\nCLI-EXP-1,20\nCLI-EXP-2,20\n").unwrap();
    let out = dir.path().join("results.csv");
    let root = env!("CARGO_MANIFEST_DIR");
    let run = std::process::Command::new(common::binary::BIN)
        .args(["--config", &format!("{root}/config.toml"), "--sandbox", "sync"])
        .arg(&codes)
        .args(["--campaign", "example", "--targets", "loop,moltin", "--results-csv"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("4 result lines written to"), "{stdout}");
    let mut reader = csv::Reader::from_path(&out).unwrap();
    assert_eq!(reader.headers().unwrap(), &csv::StringRecord::from(HEADER.to_vec()));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| &r[2] == "created"), "{rows:?}");
}
