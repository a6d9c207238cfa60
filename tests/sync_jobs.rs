//! Sync jobs (`POST /v1/sync-jobs` and the job's resources) through the real router, against
//! wiremock upstreams. Where a job sends many codes, each upstream is a recording responder that
//! checks every body against the vendor document, remembers the codes it created and answers
//! 409 to a code it has seen before, so a code sent twice shows up in the record.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use common::jobs::{accepted, all_results, counts, job_action, post_job, start_job, wait_done};
use common::problems::problems;

const LOOP_TOKEN: &str = "loop-sync-secret-5d1f";
const PARTNERO_TOKEN: &str = "partnero-sync-secret-a07c";
const MOLTIN_TOKEN: &str = "moltin-sync-secret-c93e";
const ENV: [(&str, &str); 3] = [
    ("LOOP_TOKEN", LOOP_TOKEN),
    ("PARTNERO_TOKEN", PARTNERO_TOKEN),
    ("MOLTIN_TOKEN", MOLTIN_TOKEN),
];

/// Partnero's coupon and Moltin's promotion the `spring` campaign attaches to.
/// How long a job may run before a test gives up on it.
const WITHIN: Duration = Duration::from_secs(30);

const COUPON: &str = "coupon_spring";
const PROMOTION: &str = common::MOLTIN_PROMOTION;

/// `spring`: 20% off on Loop (inline), Partnero (coupon) and Moltin (promotion).
fn spring() -> String {
    format!(
        "[upstreams.loop]\n\n\
         [upstreams.partnero]\ncoupon_uuid = \"{COUPON}\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {{ percent_off = 20 }}\n"
    )
}

/// `other`: Loop alone.
const OTHER: &str = "[upstreams.loop]\n";

/// The discount every code of a test job shares.
fn template() -> Value {
    json!({ "discount": { "percent_off": 20 } })
}

// ---------------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------------

use common::Vendor;

/// The token each vendor is configured with here.
fn token(v: Vendor) -> &'static str {
    match v {
        Vendor::Loop => LOOP_TOKEN,
        Vendor::Partnero => PARTNERO_TOKEN,
        Vendor::Moltin => MOLTIN_TOKEN,
    }
}

/// What a recording upstream saw.
#[derive(Default, Debug)]
struct Log {
    calls: usize,
    /// Per code, the status of every answer to a call carrying it, in order.
    answers: BTreeMap<String, Vec<u16>>,
    /// The codes of each call, in order of arrival.
    batches: Vec<Vec<String>>,
    /// Bodies that are not the documented one.
    wrong: Vec<String>,
}

/// A vendor that creates each code once: a call carrying a code it already created is answered
/// 409 and creates nothing. Optionally it answers 503 to its first calls, 400 to some codes, or
/// answers late.
#[derive(Clone)]
struct Recorder {
    vendor: Vendor,
    log: Arc<Mutex<Log>>,
    fail_first: usize,
    reject: Arc<HashSet<String>>,
    delay: Duration,
}

impl Recorder {
    fn new(vendor: Vendor) -> Self {
        Self {
            vendor,
            log: Arc::default(),
            fail_first: 0,
            reject: Arc::default(),
            delay: Duration::ZERO,
        }
    }

    /// Mounts it on a strict server: a call to another path or with other headers fails the test.
    async fn serve(self) -> (MockServer, Self) {
        let server = common::strict_server().await;
        self.vendor
            .endpoint(token(self.vendor))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        (server, self)
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    /// Asserts every body was the documented one and each of `codes` was created exactly once,
    /// by a call answered 201 and by no other call.
    fn assert_each_created_once(&self, codes: &BTreeSet<String>) {
        let log = self.log();
        let name = self.vendor.name();
        assert!(log.wrong.is_empty(), "{name} got undocumented bodies: {:?}", log.wrong);
        let seen: BTreeSet<&String> = log.answers.keys().collect();
        assert_eq!(
            seen,
            codes.iter().collect(),
            "{name} received other codes than the job's"
        );
        let not_once: Vec<_> = log.answers.iter().filter(|(_, a)| **a != [201]).collect();
        assert!(
            not_once.is_empty(),
            "{name}: codes not received exactly once with 201 (code, answers): {:?}",
            &not_once[..not_once.len().min(10)]
        );
    }
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut log = self.log.lock().unwrap();
        log.calls += 1;
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let codes = match self.vendor.codes_in(&body) {
            Some(codes) if !codes.is_empty() && body == self.vendor.body(COUPON, &codes) => codes,
            _ => {
                log.wrong.push(body.to_string());
                return ResponseTemplate::new(400)
                    .set_body_json(json!({ "error": "validation_error", "message": "not the documented body" }));
            }
        };
        log.batches.push(codes.clone());
        let status = if log.calls <= self.fail_first {
            503
        } else if codes.iter().any(|c| self.reject.contains(c)) {
            400
        } else if codes
            .iter()
            .any(|c| log.answers.get(c).is_some_and(|a| a.contains(&201)))
        {
            409
        } else {
            201
        };
        for c in &codes {
            log.answers.entry(c.clone()).or_default().push(status);
        }
        let answer = match status {
            201 => self.vendor.created(&codes),
            409 => self.vendor.conflict(),
            400 => ResponseTemplate::new(400)
                .set_body_json(json!({ "error": "validation_error", "message": "code is not allowed" })),
            _ => ResponseTemplate::new(503).set_body_json(json!({ "message": "Service Unavailable" })),
        };
        answer.set_delay(self.delay)
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway and its job API
// ---------------------------------------------------------------------------------------------

/// The gateway with each `(vendor, server, extra TOML)` as the upstream of the vendor's name.
async fn gateway(upstreams: &[(Vendor, &MockServer, &str)]) -> common::Gateway {
    let config: Vec<String> = upstreams
        .iter()
        .map(|(v, server, extra)| common::upstream(v.name(), v.name(), &server.uri(), extra))
        .collect();
    let spring = spring();
    common::start(&config.join("\n"), &[("spring", &spring), ("other", OTHER)], &ENV).await
}

/// Every code the ledger lists (GET /v1/promo-codes), following next_cursor.
async fn ledger_codes(gw: &common::Gateway, filter: &str) -> Vec<Value> {
    gw.all_items(&format!("/v1/promo-codes?limit=1000{filter}")).await
}

fn codes(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i:04}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_codes_reach_three_targets_each_exactly_once() {
    let (loop_srv, loop_rec) = Recorder::new(Vendor::Loop).serve().await;
    let (partnero_srv, partnero_rec) = Recorder::new(Vendor::Partnero).serve().await;
    let (moltin_srv, moltin_rec) = Recorder::new(Vendor::Moltin).serve().await;
    let gw = gateway(&[
        (Vendor::Loop, &loop_srv, ""),
        (Vendor::Partnero, &partnero_srv, ""),
        (Vendor::Moltin, &moltin_srv, ""),
    ])
    .await;
    let all = codes("K", 1000);
    let started = Instant::now();
    let id = start_job(
        &gw,
        &json!({
            "campaign": "spring",
            "targets": ["loop", "partnero", "moltin"],
            "template": template(),
            "codes": all
        }),
    )
    .await;
    let job = wait_done(&gw, id, WITHIN).await;
    println!("1,000 codes x 3 targets: done in {:?}", started.elapsed());

    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["source"], "json");
    assert_eq!(job["total"], 1000);
    assert!(job["finished_at"].is_string(), "{job}");
    for (target, rate) in [("loop", 1000), ("partnero", 1000), ("moltin", 50_000)] {
        let p = &job["targets_progress"][target];
        assert_eq!(p["total"], 1000, "{target}: {job}");
        assert_eq!(p["pending"], 0, "{target}: {job}");
        assert_eq!(p["counts"], json!({ "created": 1000 }), "{target}: {job}");
        // The upstream's rate limit (1000/s in the harness) times its batch size.
        assert_eq!(p["rate_per_second"], rate, "{target}: {job}");
        assert_eq!(p["eta_seconds"], 0, "{target}: {job}");
    }

    let results = all_results(&gw, id, "").await;
    assert_eq!(results.len(), 3000);
    for (i, r) in results.iter().enumerate() {
        let vendor = match r["upstream"].as_str().unwrap() {
            "loop" => Vendor::Loop,
            "partnero" => Vendor::Partnero,
            "moltin" => Vendor::Moltin,
            other => panic!("a result for {other}: {r}"),
        };
        let code = r["code"].as_str().unwrap();
        assert_eq!(r["seq"], i / 3 + 1, "results come in the job's order: {r}");
        assert_eq!(code, all[i / 3], "{r}");
        assert_eq!(r["status"], "created", "{r}");
        assert_eq!(r["vendor_id"], vendor.vendor_id(code), "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }

    let expected: BTreeSet<String> = all.iter().cloned().collect();
    loop_rec.assert_each_created_once(&expected);
    partnero_rec.assert_each_created_once(&expected);
    moltin_rec.assert_each_created_once(&expected);
    let batches = moltin_rec.log().batches.clone();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert!(
        sizes.iter().all(|n| *n <= 50),
        "a Moltin call carried more than 50 codes: {sizes:?}"
    );
    let union: BTreeSet<String> = batches.into_iter().flatten().collect();
    assert_eq!(union, expected, "the Moltin calls carried other codes than the job's");
    assert_eq!(
        sizes.len(),
        20,
        "1,000 codes to Moltin should take 20 calls of 50, but took {} (batch sizes {sizes:?}): \
         a short batch ends each page of the job's work, so the page size is not a multiple of 50",
        sizes.len()
    );
    assert_eq!(loop_rec.log().calls, 1000);
    assert_eq!(partnero_rec.log().calls, 1000);
}

/// Expects exactly one call with the vendor's documented headers and `body`, answered 201 for `code`.
async fn expect(server: &MockServer, vendor: Vendor, body: Value, code: &str) {
    vendor
        .create(token(vendor), body)
        .respond_with(vendor.created(&[code.to_owned()]))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_csv_upload_carries_each_column_to_the_vendors() {
    let loop_srv = common::strict_server().await;
    let partnero_srv = common::strict_server().await;
    // loop-create-promo.md: the discount inline, the limit and the expiry as given.
    expect(
        &loop_srv,
        Vendor::Loop,
        json!({ "code": "CSV-1", "percent_off": 20 }),
        "CSV-1",
    )
    .await;
    expect(
        &loop_srv,
        Vendor::Loop,
        json!({ "code": "CSV-2", "percent_off": 20, "max_redemptions": 5 }),
        "CSV-2",
    )
    .await;
    expect(
        &loop_srv,
        Vendor::Loop,
        json!({ "code": "CSV-3", "percent_off": 20, "valid_until": "2026-04-01T00:00:00Z" }),
        "CSV-3",
    )
    .await;
    // partnero-create-promotion-code.md: each limit with its *_status flag; the expiry as the
    // last whole day before expires_at.
    expect(
        &partnero_srv,
        Vendor::Partnero,
        common::partnero_body(COUPON, "CSV-1"),
        "CSV-1",
    )
    .await;
    expect(
        &partnero_srv,
        Vendor::Partnero,
        common::merged(
            common::partnero_body(COUPON, "CSV-2"),
            json!({ "redemption_times_status": true, "redemption_times_value": 5 }),
        ),
        "CSV-2",
    )
    .await;
    expect(
        &partnero_srv,
        Vendor::Partnero,
        common::merged(
            common::partnero_body(COUPON, "CSV-3"),
            json!({ "expiration_date_status": true, "expiration_date_value": "2026-03-31" }),
        ),
        "CSV-3",
    )
    .await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, ""), (Vendor::Partnero, &partnero_srv, "")]).await;

    let csv = "code,percent_off,max_redemptions,expires_at\n\
               CSV-1,20,,\n\
               CSV-2,20,5,\n\
               CSV-3,20,,2026-04-01T00:00:00Z\n";
    let (status, location, body) = post_job(
        &gw,
        "?campaign=spring&targets=loop,partnero",
        "text/csv",
        csv.as_bytes().to_vec(),
    )
    .await;
    let id = accepted(status, location, &body);
    assert_eq!(body["source"], "csv", "{body}");
    assert_eq!(body["total"], 3, "{body}");
    assert_eq!(body["targets"], json!(["loop", "partnero"]), "{body}");

    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(counts(&job, "loop"), &json!({ "created": 3 }), "{job}");
    assert_eq!(counts(&job, "partnero"), &json!({ "created": 3 }), "{job}");
    let results = all_results(&gw, id, "").await;
    let lines: Vec<(String, String, String)> = results
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_owned(),
                r["upstream"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = ["CSV-1", "CSV-2", "CSV-3"]
        .iter()
        .flat_map(|c| {
            ["loop", "partnero"]
                .iter()
                .map(move |t| (c.to_string(), t.to_string(), "created".to_string()))
        })
        .collect();
    assert_eq!(lines, expected);
    // The ledger holds each code's definition as read from its row.
    let (status, code) = gw.get("/v1/promo-codes/CSV-2").await;
    assert_eq!(status, 200, "{code}");
    assert_eq!(code["definition"]["max_redemptions"], 5, "{code}");
    assert_eq!(code["definition"]["discount"], json!({ "percent_off": 20 }), "{code}");
    assert_eq!(code["campaign"], "spring", "{code}");
}

#[tokio::test]
async fn an_ndjson_upload_goes_to_moltin_in_one_batch_and_to_loop_code_by_code() {
    let loop_srv = common::strict_server().await;
    let moltin_srv = common::strict_server().await;
    for (code, body) in [
        ("ND-1", json!({ "code": "ND-1", "percent_off": 20 })),
        (
            "ND-2",
            json!({ "code": "ND-2", "percent_off": 20, "max_redemptions": 5 }),
        ),
        ("ND-3", json!({ "code": "ND-3", "percent_off": 20 })),
    ] {
        Vendor::Loop
            .create(LOOP_TOKEN, body)
            .respond_with(Vendor::Loop.created(&[code.to_owned()]))
            .expect(1)
            .mount(&loop_srv)
            .await;
    }
    // moltin-create-promotion-codes.md: many codes in one call, `uses` for the limit, `user`
    // for a code bound to one customer.
    Vendor::Moltin
        .endpoint(token(Vendor::Moltin))
        .and(wiremock::matchers::body_json(json!({
            "data": {
                "type": "promotion_codes",
                "codes": [
                    { "code": "ND-1" },
                    { "code": "ND-2", "uses": 5 },
                    { "code": "ND-3", "user": "cus_42" }
                ]
            }
        })))
        .respond_with(common::moltin_created(PROMOTION))
        .expect(1)
        .mount(&moltin_srv)
        .await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, ""), (Vendor::Moltin, &moltin_srv, "")]).await;

    // ND-3 is bound to a customer, which Loop cannot carry: skip_field drops it with a warning.
    let ndjson = [
        json!({ "code": "ND-1", "discount": { "percent_off": 20 } }).to_string(),
        String::new(),
        json!({ "code": "ND-2", "discount": { "percent_off": 20 }, "max_redemptions": 5 }).to_string(),
        json!({ "code": "ND-3", "discount": { "percent_off": 20 }, "customer": { "id": "cus_42" } }).to_string(),
    ]
    .join("\n");
    let (status, location, body) = post_job(
        &gw,
        "?campaign=spring&targets=moltin,loop&on_unsupported=skip_field",
        "application/x-ndjson",
        ndjson.into_bytes(),
    )
    .await;
    let id = accepted(status, location, &body);
    assert_eq!(body["source"], "ndjson", "{body}");
    assert_eq!(body["total"], 3, "{body}");

    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(counts(&job, "loop"), &json!({ "created": 3 }), "{job}");
    assert_eq!(counts(&job, "moltin"), &json!({ "created": 3 }), "{job}");
    let results = all_results(&gw, id, "&upstream=loop").await;
    assert_eq!(results.len(), 3);
    let nd3 = &results[2];
    assert_eq!(nd3["code"], "ND-3", "{nd3}");
    assert_eq!(common::warning_fields(nd3), vec!["customer"], "{nd3}");
    for r in all_results(&gw, id, "&upstream=moltin").await {
        assert_eq!(r["status"], "created", "{r}");
        assert_eq!(r["vendor_id"], r["code"], "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generator_draws_distinct_codes_from_the_pattern_unique_against_the_ledger() {
    let (loop_srv, loop_rec) = Recorder::new(Vendor::Loop).serve().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    // A short random part (27^4 = 531,441 codes): two runs of 1,000 draw the same code at least
    // once in most runs, which the generator must draw again.
    let job = json!({
        "campaign": "spring",
        "targets": ["loop"],
        "template": template(),
        "generate": { "count": 1000, "pattern": "GEN-{random:4}-X" }
    });
    let mut all = BTreeSet::new();
    for run in 1..=2 {
        let id = start_job(&gw, &job).await;
        let status = wait_done(&gw, id, WITHIN).await;
        assert_eq!(status["state"], "done", "{status}");
        assert_eq!(status["source"], "generate", "{status}");
        assert_eq!(status["total"], 1000, "{status}");
        assert_eq!(counts(&status, "loop"), &json!({ "created": 1000 }), "{status}");
        let results = all_results(&gw, id, "").await;
        assert_eq!(results.len(), 1000);
        for r in &results {
            let code = r["code"].as_str().unwrap();
            let random = code
                .strip_prefix("GEN-")
                .and_then(|c| c.strip_suffix("-X"))
                .unwrap_or_else(|| panic!("`{code}` does not follow GEN-{{random:4}}-X"));
            assert_eq!(random.len(), 4, "{code}");
            assert!(
                random.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
                "{code}"
            );
            assert!(
                !random.chars().any(|c| "0O1IL5S2Z".contains(c)),
                "`{code}` uses a character people misread"
            );
            assert!(all.insert(code.to_owned()), "run {run} drew `{code}` again");
        }
    }
    assert_eq!(all.len(), 2000);
    loop_rec.assert_each_created_once(&all);
    let listed: BTreeSet<String> = ledger_codes(&gw, "&campaign=spring")
        .await
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, all, "the ledger holds exactly the generated codes");
}

#[tokio::test]
async fn a_mirror_delivers_a_campaign_to_the_new_target_only() {
    let loop_srv = common::strict_server().await;
    let partnero_srv = common::strict_server().await;
    let spring_codes = codes("M", 5);
    for c in &spring_codes {
        common::expect_loop_answer(&loop_srv, LOOP_TOKEN, c, Vendor::Loop.created(std::slice::from_ref(c))).await;
        // Only the mirror calls Partnero, once per code of the campaign.
        common::partnero_create(PARTNERO_TOKEN, common::partnero_body(COUPON, c))
            .respond_with(common::partnero_created(c))
            .expect(1)
            .mount(&partnero_srv)
            .await;
    }
    common::expect_loop_created(&loop_srv, LOOP_TOKEN, "OTHER-1", "promo_OTHER-1").await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, ""), (Vendor::Partnero, &partnero_srv, "")]).await;

    // The campaign's codes, on Loop only.
    let first = start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": spring_codes }),
    )
    .await;
    let job = wait_done(&gw, first, WITHIN).await;
    assert_eq!(counts(&job, "loop"), &json!({ "created": 5 }), "{job}");
    // A code of another campaign, which the mirror must leave alone.
    let (status, body) = gw
        .create(&json!({ "code": "OTHER-1", "campaign": "other", "discount": { "percent_off": 20 } }))
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, location, body) = post_job(
        &gw,
        "",
        "application/json",
        json!({ "mirror": { "campaign": "spring", "to": ["loop", "partnero"] } })
            .to_string()
            .into_bytes(),
    )
    .await;
    let mirror = accepted(status, location, &body);
    assert_eq!(body["source"], "mirror", "{body}");
    assert_eq!(body["campaign"], "spring", "{body}");
    assert_eq!(body["total"], 5, "{body}");
    let job = wait_done(&gw, mirror, WITHIN).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(counts(&job, "partnero"), &json!({ "created": 5 }), "{job}");
    assert_eq!(
        counts(&job, "loop"),
        &json!({ "created": 5 }),
        "Loop holds the codes from the first job: {job}"
    );
    for r in all_results(&gw, mirror, "").await {
        let code = r["code"].as_str().unwrap();
        assert!(spring_codes.iter().any(|c| c == code), "{r}");
        assert_eq!(r["status"], "created", "{r}");
        match r["upstream"].as_str().unwrap() {
            "loop" => assert_eq!(r["vendor_id"], Vendor::Loop.vendor_id(code), "{r}"),
            "partnero" => assert_eq!(r["vendor_id"], code, "{r}"),
            other => panic!("a result for {other}: {r}"),
        }
    }
    // Nothing was re-sent to Loop: its five job calls and the single create.
    assert_eq!(loop_srv.received_requests().await.unwrap().len(), 6);
    assert_eq!(partnero_srv.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn results_page_by_status_and_upstream() {
    let all = codes("R", 30);
    let rejected: Vec<String> = all.iter().step_by(4).skip(1).cloned().collect();
    assert_eq!(rejected.len(), 7);
    let mut loop_rec = Recorder::new(Vendor::Loop);
    loop_rec.reject = Arc::new(rejected.iter().cloned().collect());
    let (loop_srv, _loop_rec) = loop_rec.serve().await;
    let (partnero_srv, _partnero_rec) = Recorder::new(Vendor::Partnero).serve().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, ""), (Vendor::Partnero, &partnero_srv, "")]).await;
    let id = start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["loop", "partnero"], "template": template(), "codes": all }),
    )
    .await;
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(counts(&job, "loop"), &json!({ "created": 23, "rejected": 7 }), "{job}");
    assert_eq!(counts(&job, "partnero"), &json!({ "created": 30 }), "{job}");

    // Rejected, three a page: 3 + 3 + 1, the last page without a cursor.
    let pages = gw
        .pages(&format!("/v1/sync-jobs/{id}/results?status=rejected&limit=3"), 10)
        .await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    let items: Vec<Value> = pages.into_iter().flatten().collect();
    let got: Vec<&str> = items.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(got, rejected, "the rejected codes, in the job's order");
    for r in &items {
        assert_eq!(r["upstream"], "loop", "{r}");
        assert_eq!(r["status"], "rejected", "{r}");
        assert_eq!(r["error"]["http_status"], 400, "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("code is not allowed"),
            "the vendor's message is kept: {r}"
        );
        assert!(r.get("vendor_id").is_none(), "{r}");
    }

    // Created on Partnero, ten a page.
    let pages = gw
        .pages(
            &format!("/v1/sync-jobs/{id}/results?status=created&upstream=partnero&limit=10"),
            10,
        )
        .await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    let seen: Vec<String> = pages
        .iter()
        .flatten()
        .map(|r| {
            assert_eq!(r["upstream"], "partnero", "{r}");
            r["code"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(sizes, [10, 10, 10]);
    assert_eq!(seen, all);

    // Every line: 60, by code then upstream.
    assert_eq!(all_results(&gw, id, "").await.len(), 60);

    // A status no delivery has, an unknown status, a cursor the API never gave.
    let (status, page) = gw.get(&format!("/v1/sync-jobs/{id}/results?status=failed")).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([]), "{page}");
    assert!(page.get("next_cursor").is_none(), "{page}");
    let (status, body) = gw.get(&format!("/v1/sync-jobs/{id}/results?status=lost")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(problems(&body)[0].0, "status", "{body}");
    let (status, body) = gw.get(&format!("/v1/sync-jobs/{id}/results?cursor=bogus")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(problems(&body)[0].0, "cursor", "{body}");
    let (status, _) = gw.get("/v1/sync-jobs/999/results").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_resends_only_the_failed_deliveries() {
    let mut rec = Recorder::new(Vendor::Loop);
    rec.fail_first = 5;
    let (loop_srv, rec) = rec.serve().await;
    // One attempt per call, and a breaker that does not open on the five 503s.
    let gw = gateway(&[(
        Vendor::Loop,
        &loop_srv,
        "retry = { max_attempts = 1 }\nbreaker = { failures = 1000, cool_down_ms = 10 }",
    )])
    .await;
    let all = codes("T", 20);
    let id = start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": all }),
    )
    .await;
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(counts(&job, "loop"), &json!({ "created": 15, "failed": 5 }), "{job}");
    let failed = all_results(&gw, id, "&status=failed").await;
    assert_eq!(failed.len(), 5);
    for r in &failed {
        assert_eq!(r["error"]["http_status"], 503, "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
    let failed_codes: BTreeSet<String> = failed.iter().map(|r| r["code"].as_str().unwrap().to_owned()).collect();

    let (status, _) = job_action(&gw, id, "retry").await;
    assert_eq!(status, 202);
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(counts(&job, "loop"), &json!({ "created": 20 }), "{job}");
    assert_eq!(all_results(&gw, id, "&status=created").await.len(), 20);

    let log = rec.log();
    assert_eq!(log.calls, 25, "20 calls, then the 5 failed codes again");
    assert_eq!(log.answers.len(), 20);
    for (code, answers) in &log.answers {
        let expected: &[u16] = if failed_codes.contains(code) {
            &[503, 201]
        } else {
            &[201]
        };
        assert_eq!(answers, expected, "{code}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_stops_a_job_and_marks_the_rest_cancelled() {
    let mut rec = Recorder::new(Vendor::Loop);
    rec.delay = Duration::from_millis(200);
    let (loop_srv, rec) = rec.serve().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let id = start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": codes("C", 100) }),
    )
    .await;
    // Under way: some codes created, most not.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, job) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
        if counts(&job, "loop")["created"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(job["state"], "running", "{job}");
            break;
        }
        assert!(Instant::now() < deadline, "nothing created after 10 s: {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A running job cannot be retried.
    let (status, body) = job_action(&gw, id, "retry").await;
    assert_eq!(status, 409);
    assert_eq!(body["errors"][0]["field"], "state", "{body}");

    let (status, job) = job_action(&gw, id, "cancel").await;
    assert_eq!(status, 200);
    let calls_at_cancel = rec.log().calls;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    let p = &job["targets_progress"]["loop"];
    assert_eq!(p["pending"], 0, "{job}");
    let created = p["counts"]["created"].as_u64().unwrap_or(0);
    let cancelled = p["counts"]["cancelled"].as_u64().unwrap_or(0);
    assert_eq!(created + cancelled, 100, "only created and cancelled: {job}");
    assert!(cancelled > 0, "{job}");
    // Every call that went out was answered and recorded before cancel answered.
    assert_eq!(created as usize, calls_at_cancel, "{job}");
    assert_eq!(all_results(&gw, id, "&status=cancelled").await.len() as u64, cancelled);

    // No call after the cancel (this test is about time: a short wait for a late one).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rec.log().calls,
        calls_at_cancel,
        "calls were made after the job was cancelled"
    );
    let (_, job) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(counts(&job, "loop")["cancelled"], cancelled, "{job}");

    // Cancelling twice is refused.
    let (status, _) = job_action(&gw, id, "cancel").await;
    assert_eq!(status, 409);
}

/// A vendor slower than its quota: the ETA follows the pace the job achieves, not the rate
/// limit (which alone would promise the rest within a second). This test is about time: the
/// vendor answers after 200 ms, one call at a time, so about 5 codes a second.
#[tokio::test]
async fn the_eta_follows_the_observed_pace_of_a_slow_vendor() {
    let mut rec = Recorder::new(Vendor::Loop);
    rec.delay = Duration::from_millis(200);
    let (loop_srv, rec) = rec.serve().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "max_in_flight = 1")]).await;
    let id = start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": codes("E", 40) }),
    )
    .await;
    let started = Instant::now();
    // Before a second has passed there is no observed pace, and the ETA is the quota's.
    let (_, job) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
    if started.elapsed() < Duration::from_millis(900) {
        let p = &job["targets_progress"]["loop"];
        assert!(p.get("observed_per_second").is_none(), "{job}");
        assert_eq!(p["eta_seconds"], 1, "at most 40 pending at 1000/s: {job}");
    }

    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    let (_, job) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
    let p = &job["targets_progress"]["loop"];
    let pace = p["observed_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no observed pace: {job}"));
    assert!((2.0..=6.0).contains(&pace), "about 5 codes a second: {job}");
    let pending = p["pending"].as_u64().unwrap();
    assert!(pending >= 25, "{job}");
    assert_eq!(p["rate_per_second"], 1000, "{job}");
    assert_eq!(p["eta_seconds"], (pending as f64 / pace).ceil() as u64, "{job}");
    assert!(p["eta_seconds"].as_u64().unwrap() >= 4, "{job}");

    let (status, job) = job_action(&gw, id, "cancel").await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(
        counts(&job, "loop")["created"].as_u64().unwrap() as usize,
        rec.log().calls
    );
}

/// A Moltin batch refused with 401 is refused for its credentials, not its codes: it is not
/// split in halves (which would repeat the refusal 98 more times), and every code of it is
/// reported rejected with the vendor's status.
#[tokio::test]
async fn a_batch_refused_for_its_credentials_is_not_split() {
    let server = common::strict_server().await;
    Vendor::Moltin
        .endpoint(token(Vendor::Moltin))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({ "errors": [{ "status": 401, "title": "Unauthorized" }] })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(&[(Vendor::Moltin, &server, "")]).await;
    let id = start_job(
        &gw,
        &json!({ "campaign": "spring", "targets": ["moltin"], "template": template(), "codes": codes("A", 50) }),
    )
    .await;
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(counts(&job, "moltin"), &json!({ "rejected": 50 }), "{job}");
    let results = all_results(&gw, id, "").await;
    assert_eq!(results.len(), 50);
    for r in &results {
        assert_eq!(r["error"]["http_status"], 401, "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
}

#[tokio::test]
async fn a_bad_line_refuses_the_whole_job_and_changes_nothing() {
    // No call may reach either upstream.
    let loop_srv = common::strict_server().await;
    let moltin_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, ""), (Vendor::Moltin, &moltin_srv, "")]).await;

    // NDJSON: line 4 breaks a rule, line 6 is not JSON (line 2 is blank).
    let ndjson = [
        json!({ "code": "BAD-1", "discount": { "percent_off": 20 } }).to_string(),
        String::new(),
        json!({ "code": "BAD-2", "discount": { "percent_off": 20 } }).to_string(),
        json!({ "code": "BAD-3", "discount": { "percent_off": 150 } }).to_string(),
        json!({ "code": "BAD-4", "discount": { "percent_off": 20 } }).to_string(),
        "{\"code\": \"BAD-5\",".to_owned(),
    ]
    .join("\n");
    let (status, location, body) = post_job(
        &gw,
        "?campaign=spring&targets=loop,moltin",
        "application/x-ndjson",
        ndjson.into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(location, None);
    let p = problems(&body);
    assert_eq!(p.len(), 2, "{body}");
    assert_eq!(p[0].0, "line 4", "{body}");
    assert!(
        p[0].1.starts_with("discount.percent_off: must be"),
        "the first problem names line 4 and the field: {body}"
    );
    assert_eq!(p[1].0, "line 6", "{body}");
    assert!(p[1].1.starts_with("is not JSON"), "{body}");

    // CSV: line 3 (the second row) has a percent_off that is not a number.
    let csv = "code,percent_off\nBAD-1,20\nBAD-2,twenty\nBAD-3,20\n";
    let (status, _, body) = post_job(
        &gw,
        "?campaign=spring&targets=loop",
        "text/csv",
        csv.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let p = problems(&body);
    assert_eq!(p.len(), 1, "{body}");
    assert_eq!(p[0].0, "line 3", "{body}");
    assert!(p[0].1.starts_with("percent_off: must be a number"), "{body}");

    // JSON: codes[1] has an unknown field; codes[3] repeats codes[0].
    let (status, _, body) = post_job(
        &gw,
        "",
        "application/json",
        json!({
            "campaign": "spring",
            "targets": ["loop"],
            "template": template(),
            "codes": ["BAD-1", { "code": "BAD-2", "colour": "red" }, "BAD-3", "BAD-1"]
        })
        .to_string()
        .into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let p = problems(&body);
    assert_eq!(p.len(), 2, "{body}");
    assert_eq!(p[0].0, "codes[1]", "{body}");
    assert!(p[0].1.starts_with("colour"), "{body}");
    assert_eq!(p[1].0, "codes[3]", "{body}");
    assert!(p[1].1.contains("`BAD-1` appears earlier in this job"), "{body}");

    // The ledger holds nothing, and no job was kept.
    let (status, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["items"],
        json!([]),
        "a refused job left codes in the ledger: {page}"
    );
    for id in 1..=3 {
        let (status, _) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
        assert_eq!(status, 404, "a refused job {id} is visible");
    }
}

/// A line whose code clashes with another (repeated in the file, or the same code in another
/// case) is refused like any bad line: by its line number.
#[tokio::test]
async fn a_repeated_code_in_an_upload_is_named_by_its_line() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let line = |code: &str| json!({ "code": code, "discount": { "percent_off": 20 } }).to_string();
    let ndjson = [line("REP-1"), String::new(), line("REP-2"), line("rep-1")].join("\n");
    let (status, _, body) = post_job(
        &gw,
        "?campaign=spring&targets=loop",
        "application/x-ndjson",
        ndjson.into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let p = problems(&body);
    assert_eq!(p.len(), 1, "{body}");
    assert!(p[0].1.contains("`REP-1`"), "the clash names the code held: {body}");
    assert!(
        p[0].0 == "line 4" || p[0].1.starts_with("line 4"),
        "the clash on line 4 of the file is named only as {:?}: {body}",
        p[0].0
    );
    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "{page}");
}

#[tokio::test]
async fn bad_job_bodies_are_refused_naming_the_field() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let job = |extra: Value| {
        common::merged(
            json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": ["A-1"] }),
            extra,
        )
    };
    let cases = [
        (
            job(json!({ "colour": "red" })),
            "colour",
            "is not a field of a sync job",
        ),
        (
            job(json!({ "generate": { "count": 5, "pattern": "A-{random:8}" } })),
            "codes",
            "give exactly one of codes, generate, mirror or revoke (got codes, generate)",
        ),
        (
            job(json!({ "targets": ["loop", "shopify"] })),
            "targets[1]",
            "`shopify` is not a configured upstream",
        ),
        (
            job(json!({ "campaign": "winter" })),
            "campaign",
            "`winter` has no mapping file",
        ),
        (
            json!({ "campaign": "spring", "targets": ["loop"], "generate": { "count": 5, "pattern": "SPRING" } }),
            "generate.pattern",
            "{random:N}",
        ),
        (
            json!({ "mirror": { "campaign": "spring" }, "codes": ["A-1"] }),
            "codes",
            "is not taken with mirror",
        ),
    ];
    for (body, field, rule) in cases {
        let (status, location, answer) = post_job(&gw, "", "application/json", body.to_string().into_bytes()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(location, None);
        assert_eq!(answer["status"], 422, "{answer}");
        assert!(
            problems(&answer).iter().any(|(f, r)| f == field && r.contains(rule)),
            "{body}: expected {field}: {rule} in {answer}"
        );
    }
    // Not a media type a job reads; an upload without its campaign.
    let (status, _, answer) = post_job(&gw, "", "text/plain", b"A-1".to_vec()).await;
    assert_eq!(status, 415, "{answer}");
    let (status, _, answer) = post_job(&gw, "?targets=loop", "text/csv", b"code\nA-1\n".to_vec()).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(problems(&answer)[0].0, "campaign", "{answer}");

    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "{page}");
}

/// A JSON job (or an NDJSON line) that repeats a key, at any depth, is refused naming the key's
/// path: serde_json would keep the last value silently, so `"percent_off": 20, ...,
/// "percent_off": 90` would deliver 90% while the client's own tooling read 20%.
#[tokio::test]
async fn a_repeated_json_key_in_a_job_is_refused_naming_its_path() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let cases = [
        (
            r#"{"campaign": "spring", "targets": ["loop"], "template": {"discount": {"percent_off": 20}}, "codes": ["A-1"], "targets": ["loop"]}"#,
            "targets",
        ),
        (
            r#"{"campaign": "spring", "targets": ["loop"], "template": {"discount": {"percent_off": 20, "percent_off": 90}}, "codes": ["A-1"]}"#,
            "template.discount.percent_off",
        ),
        (
            r#"{"campaign": "spring", "targets": ["loop"], "template": {"discount": {"percent_off": 20}}, "codes": ["A-1", {"code": "A-2", "code": "A-3"}]}"#,
            "codes[1].code",
        ),
    ];
    for (body, path) in cases {
        let (status, location, answer) = post_job(&gw, "", "application/json", body.as_bytes().to_vec()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(location, None);
        assert!(
            problems(&answer)
                .iter()
                .any(|(f, r)| f == path && r.contains("is given more than once")),
            "{body}: expected {path} in {answer}"
        );
    }
    let ndjson = "{\"code\": \"A-1\", \"discount\": {\"percent_off\": 20}}\n{\"code\": \"A-2\", \"discount\": {\"percent_off\": 20}, \"code\": \"A-3\"}\n";
    let (status, _, answer) = post_job(
        &gw,
        "?campaign=spring&targets=loop",
        "application/x-ndjson",
        ndjson.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    let p = problems(&answer);
    assert_eq!(p.len(), 1, "{answer}");
    assert_eq!(p[0].0, "line 2", "{answer}");
    assert!(p[0].1.starts_with("code: is given more than once"), "{answer}");

    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "a refused job left codes: {page}");
}

/// A large upload's intake takes the ledger in short slices, so a create made while it runs
/// answers in its usual time instead of waiting for the whole file (the audit saw 15 to 23 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_during_a_large_intake_answers_before_the_intake_ends() {
    // Creates go to loop (answered 500: recorded as failed, which is all this test needs);
    // the job goes to moltin, one call a second, long after its intake.
    let loop_srv = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&loop_srv)
        .await;
    let moltin_srv = MockServer::start().await;
    let gw = gateway(&[
        (Vendor::Loop, &loop_srv, ""),
        (
            Vendor::Moltin,
            &moltin_srv,
            "rate_limit = { per_second = 1, burst = 1 }",
        ),
    ])
    .await;
    let n = 150_000;
    let ndjson: String = (0..n)
        .map(|i| format!("{{\"code\":\"BIG-{i:07}\",\"discount\":{{\"percent_off\":20}}}}\n"))
        .collect();
    let started = Instant::now();
    let job = tokio::spawn({
        let (base, http) = (gw.base.clone(), gw.http.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/sync-jobs?campaign=spring&targets=moltin"))
                .header("Content-Type", "application/x-ndjson")
                .body(ndjson)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap(), Instant::now())
        }
    });
    // One create every 100 ms for as long as the job's POST is in flight.
    let mut latencies = Vec::new();
    let mut i = 0;
    while !job.is_finished() {
        i += 1;
        let sent = Instant::now();
        let (status, body) = gw.create(&common::percent20(&format!("SIDE-{i}"), &["loop"])).await;
        assert_eq!(common::result(&body, "loop")["status"], "failed", "{status} {body}");
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body, answered) = job.await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["total"], n, "{body}");
    let intake = answered - started;
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        worst * 3 < intake,
        "a create made during the intake waited {worst:?} (the intake took {intake:?}): {latencies:?}"
    );
    assert!(
        latencies.len() >= 5,
        "the job's intake ({intake:?}) was too short to test anything: {latencies:?}"
    );
}

/// A generator asked for more codes than its pattern can make (or most of them) is refused at
/// once, naming the pattern's capacity, instead of drawing for as long as it holds the ledger.
#[tokio::test]
async fn a_generator_beyond_its_patterns_capacity_is_refused_at_once() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    // {random:4}: 27^4 = 531441 codes.
    for count in [600_000, 300_000] {
        let job = json!({
            "campaign": "spring", "targets": ["loop"], "template": template(),
            "generate": { "count": count, "pattern": "T-{random:4}" }
        });
        let sent = Instant::now();
        let (status, _, body) = post_job(&gw, "", "application/json", job.to_string().into_bytes()).await;
        assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}", sent.elapsed());
        assert_eq!(status, 422, "{count}: {body}");
        let p = problems(&body);
        assert!(
            p.iter()
                .any(|(f, r)| f == "generate.count" && r.contains("531441") && r.contains("T-{random:4}")),
            "{count}: {body}"
        );
    }
    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "{page}");
}

/// A job item is a code: an upload's line or row, or an inline item, over the create limit
/// (`server.max_body_bytes`, 16384 in these tests) refuses the job naming it, and nothing is
/// written. The lines after an oversized NDJSON line are still read and checked.
#[tokio::test]
async fn an_item_over_the_create_limit_refuses_the_job_naming_it() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let big = "x".repeat(1_000_000);
    let line = |code: &str, description: &str| {
        json!({ "code": code, "discount": { "percent_off": 20 }, "description": description }).to_string()
    };
    let ndjson = [
        line("OK-1", "fine"),
        line("BIG-1", &big),
        line("OK-2", "fine"),
        "{oops".into(),
    ]
    .join("\n");
    let (status, _, body) = post_job(
        &gw,
        "?campaign=spring&targets=loop",
        "application/x-ndjson",
        ndjson.into_bytes(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let p = problems(&body);
    assert_eq!(p.len(), 2, "{body}");
    assert_eq!(p[0].0, "line 2", "{body}");
    assert!(p[0].1.contains("server.max_body_bytes (16384 bytes)"), "{body}");
    assert_eq!(p[1].0, "line 4", "{body}");
    assert!(p[1].1.starts_with("is not JSON"), "{body}");

    let csv = format!("code,percent_off,description\nOK-1,20,fine\nBIG-1,20,{big}\nOK-2,20,fine\n");
    let (status, _, body) = post_job(&gw, "?campaign=spring&targets=loop", "text/csv", csv.into_bytes()).await;
    assert_eq!(status, 422, "{body}");
    let p = problems(&body);
    assert_eq!(p.len(), 1, "{body}");
    assert_eq!(p[0].0, "line 3", "{body}");
    assert!(p[0].1.contains("server.max_body_bytes (16384 bytes)"), "{body}");

    let job = json!({
        "campaign": "spring", "targets": ["loop"], "template": template(),
        "codes": ["OK-1", { "code": "BIG-1", "description": "y".repeat(20_000) }]
    });
    let (status, _, body) = post_job(&gw, "", "application/json", job.to_string().into_bytes()).await;
    assert_eq!(status, 422, "{body}");
    let p = problems(&body);
    assert_eq!(p[0].0, "codes[1]", "{body}");
    assert!(p[0].1.contains("server.max_body_bytes (16384 bytes)"), "{body}");

    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "{page}");
}

/// A CSV header naming a column twice (`percent_off,percent_off` made the second win: a 90%
/// code) or a column no job reads, and an upload with no codes at all, refuse the job naming
/// them, even when no row fills the column.
#[tokio::test]
async fn a_csv_header_with_a_repeated_or_unknown_column_and_an_empty_upload_are_refused() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "text/csv",
            "code,percent_off,percent_off\nX,20,90\n",
            "line 1",
            "column `percent_off` appears twice",
        ),
        (
            "text/csv",
            "code,percent_off,colour\nX,20,\n",
            "line 1",
            "column `colour` is not a field a job reads",
        ),
        (
            "text/csv",
            "code,percent_off\n",
            "codes",
            "a job needs at least one code",
        ),
        ("text/csv", "", "codes", "a job needs at least one code"),
        ("application/x-ndjson", "", "codes", "a job needs at least one code"),
        (
            "application/x-ndjson",
            "\n  \n",
            "codes",
            "a job needs at least one code",
        ),
    ];
    for (content_type, upload, field, rule) in cases {
        let (status, location, body) = post_job(
            &gw,
            "?campaign=spring&targets=loop",
            content_type,
            upload.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(status, 422, "{upload:?}: {body}");
        assert_eq!(location, None);
        assert!(
            problems(&body).iter().any(|(f, r)| f == field && r.contains(rule)),
            "{upload:?}: expected {field}: {rule} in {body}"
        );
    }
    let job = json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": [] });
    let (status, _, body) = post_job(&gw, "", "application/json", job.to_string().into_bytes()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(problems(&body)[0].0, "codes", "{body}");
    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "{page}");
}

/// Every object of every job shape refuses a key it does not know, at every depth, naming its
/// path, and starts nothing: an ignored key (`mirror.from`) is a setting the client believes in
/// and the job would not honour.
#[tokio::test]
async fn an_unknown_key_at_any_depth_of_any_job_shape_is_refused_naming_its_path() {
    let loop_srv = common::strict_server().await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let codes = |extra: Value| {
        common::merged(
            json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "codes": ["A-1"] }),
            extra,
        )
    };
    let generate = json!({ "count": 2, "pattern": "G-{random:8}" });
    let generated = |extra: Value| {
        common::merged(
            json!({ "campaign": "spring", "targets": ["loop"], "template": template(), "generate": generate }),
            extra,
        )
    };
    let mirror = json!({ "mirror": { "campaign": "spring", "to": ["loop"] } });
    let cases: Vec<(Value, &str, &str)> = vec![
        (codes(json!({ "colour": 1 })), "colour", "is not a field of a sync job"),
        (
            codes(json!({ "template": { "discount": { "percent_off": 20 }, "colour": 1 } })),
            "codes[0]",
            "colour: is not a field of a promo code",
        ),
        (
            codes(json!({ "codes": [{ "code": "A-1", "discount": { "percent_off": 20, "colour": 1 } }] })),
            "codes[0]",
            "discount.colour: is not a field of discount",
        ),
        (
            codes(json!({ "codes": [{ "code": "A-1", "colour": 1 }] })),
            "codes[0]",
            "colour: is not a field of a promo code",
        ),
        (
            generated(json!({ "colour": 1 })),
            "colour",
            "is not a field of a sync job",
        ),
        (
            generated(json!({ "generate": { "count": 2, "pattern": "G-{random:8}", "colour": 1 } })),
            "generate.colour",
            "is not a field of a generator (known: count, pattern)",
        ),
        (
            generated(json!({ "template": { "discount": { "percent_off": 20 }, "colour": 1 } })),
            "template.colour",
            "is not a field of a promo code",
        ),
        (
            generated(json!({ "template": { "discount": { "percent_off": 20, "colour": 1 } } })),
            "template.discount.colour",
            "is not a field of discount",
        ),
        (
            common::merged(mirror.clone(), json!({ "colour": 1 })),
            "colour",
            "is not a field of a sync job",
        ),
        (
            json!({ "mirror": { "campaign": "spring", "to": ["loop"], "from": "partnero" } }),
            "mirror.from",
            "is not a field of a mirror (known: campaign, to)",
        ),
        (json!({ "mirror": "spring" }), "mirror", "must be an object"),
    ];
    for (body, field, rule) in cases {
        let (status, location, answer) = post_job(&gw, "", "application/json", body.to_string().into_bytes()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(location, None, "{body}");
        assert!(
            problems(&answer).iter().any(|(f, r)| f == field && r.contains(rule)),
            "{body}: expected {field}: {rule} in {answer}"
        );
    }
    // An NDJSON line is a code's object, read as strictly at every depth.
    for (line, rule) in [
        (
            r#"{"code":"A-1","discount":{"percent_off":20},"colour":1}"#,
            "colour: is not a field of a promo code",
        ),
        (
            r#"{"code":"A-1","discount":{"percent_off":20,"colour":1}}"#,
            "discount.colour: is not a field of discount",
        ),
    ] {
        let (status, _, answer) = post_job(
            &gw,
            "?campaign=spring&targets=loop",
            "application/x-ndjson",
            format!("{line}\n").into_bytes(),
        )
        .await;
        assert_eq!(status, 422, "{line} -> {answer}");
        assert!(
            problems(&answer).iter().any(|(f, r)| f == "line 1" && r.contains(rule)),
            "{line}: expected line 1: {rule} in {answer}"
        );
    }
    let (_, page) = gw.get("/v1/promo-codes").await;
    assert_eq!(page["items"], json!([]), "no job took a code in: {page}");
    assert!(loop_srv.received_requests().await.unwrap().is_empty());
}

/// A mirror with nothing to deliver is done when it is answered, with no delivery: a campaign
/// with no code yet, and one whose every code is on every target already.
#[tokio::test]
async fn an_empty_mirror_is_a_job_done_at_once_with_no_delivery() {
    let loop_srv = common::strict_server().await;
    common::expect_loop_created(&loop_srv, LOOP_TOKEN, "HELD-1", "promo_HELD-1").await;
    let gw = gateway(&[(Vendor::Loop, &loop_srv, "")]).await;
    let mirror = || {
        json!({ "mirror": { "campaign": "spring", "to": ["loop"] } })
            .to_string()
            .into_bytes()
    };

    let (status, location, body) = post_job(&gw, "", "application/json", mirror()).await;
    accepted(status, location, &body);
    assert_eq!(body["state"], "done", "{body}");
    assert_eq!(body["total"], 0, "{body}");
    assert_eq!(counts(&body, "loop"), &json!({}), "{body}");

    let (status, body) = gw
        .create(
            &json!({ "code": "HELD-1", "campaign": "spring", "targets": ["loop"], "discount": { "percent_off": 20 } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, location, body) = post_job(&gw, "", "application/json", mirror()).await;
    let id = accepted(status, location, &body);
    assert_eq!(body["state"], "done", "{body}");
    assert_eq!(body["total"], 0, "HELD-1 is on Loop already: {body}");
    assert!(all_results(&gw, id, "").await.is_empty());
    // The create's one call, and none from either mirror.
    assert_eq!(loop_srv.received_requests().await.unwrap().len(), 1);
}
