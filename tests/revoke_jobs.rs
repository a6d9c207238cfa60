//! Revoke sync jobs (`POST /v1/sync-jobs` with `{revoke: {...}}`) through the real router,
//! against wiremock upstreams that check each documented revoke call
//! (shared/vendor-docs/lifecycle/): Moltin's bulk delete (§6b, at most 50 codes a call, a refused
//! batch halved down to §6's single delete) and Partnero's delete (§5), one code a call. Each
//! upstream records the codes every call carried, so a code revoked twice shows in the record.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use common::jobs::{all_results, counts, job_action, post_json_job, start_job, wait_done};
use common::problems::problems;

const PROMOTION: &str = common::MOLTIN_PROMOTION;
const COUPON: &str = "coupon_spring";
const ENV: &[(&str, &str)] = &[("MOLTIN_TOKEN", "moltin-token"), ("PARTNERO_TOKEN", "partnero-token")];
const WITHIN: Duration = Duration::from_secs(60);

/// The codes each revoke call carried, in order of arrival.
type Calls = Arc<Mutex<Vec<Vec<String>>>>;

struct Vendors {
    moltin: MockServer,
    partnero: MockServer,
    /// Moltin's delete calls (bulk and single).
    moltin_deletes: Calls,
    /// Partnero's delete calls.
    partnero_deletes: Calls,
}

fn mapping() -> String {
    format!(
        "[upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {{ percent_off = 20 }}\n\n\
         [upstreams.partnero]\ncoupon_uuid = \"{COUPON}\"\ndiscount = {{ percent_off = 20 }}\n"
    )
}

/// Moltin and Partnero that create every code asked for and revoke as documented; Moltin's
/// bulk delete refuses (404, an unknown code: undocumented for a batch) any batch holding one of
/// `unknown`, whose single delete answers §6's 404. Partnero answers its deletes after
/// `partnero_delay`.
async fn setup(unknown: &'static [&'static str], partnero_delay: Duration) -> (Vendors, common::Gateway) {
    setup_with(unknown, partnero_delay, &[]).await
}

/// [`setup`], with Moltin's bulk delete answering 204 yet keeping the `stubborn` codes, which
/// its list (§2, `page[limit]=100`) shows until each is deleted in its own call (§6).
async fn setup_with(
    unknown: &'static [&'static str],
    partnero_delay: Duration,
    stubborn: &'static [&'static str],
) -> (Vendors, common::Gateway) {
    let still: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(stubborn.iter().map(|c| c.to_string()).collect()));
    let v = Vendors {
        moltin: common::strict_server().await,
        partnero: common::strict_server().await,
        moltin_deletes: Calls::default(),
        partnero_deletes: Calls::default(),
    };
    common::moltin_endpoint(PROMOTION)
        .respond_with(common::moltin_created(PROMOTION))
        .mount(&v.moltin)
        .await;
    common::partnero_endpoint()
        .respond_with(|r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            common::partnero_created(body["code"].as_str().unwrap())
        })
        .mount(&v.partnero)
        .await;
    // lifecycle/moltin.md §6b: DELETE /v2/promotions/:id/codes, JSON body
    // {data: {type: promotion_codes, codes: [{code}]}}, 204.
    let seen = v.moltin_deletes.clone();
    Mock::given(method("DELETE"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes")))
        .and(header("Authorization", "Bearer moltin-token"))
        .and(header("Content-Type", "application/json"))
        .respond_with(move |r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).expect("a bulk delete carries a JSON body");
            assert_eq!(body["data"]["type"], "promotion_codes", "{body}");
            assert_eq!(body["data"].as_object().unwrap().len(), 2, "{body}");
            let codes: Vec<String> = body["data"]["codes"]
                .as_array()
                .expect("data.codes")
                .iter()
                .map(|c| {
                    assert_eq!(c.as_object().unwrap().len(), 1, "{c}");
                    c["code"].as_str().unwrap().to_owned()
                })
                .collect();
            assert!((2..=50).contains(&codes.len()), "{} codes in one call", codes.len());
            let refused = codes.iter().any(|c| unknown.contains(&c.as_str()));
            seen.lock().unwrap().push(codes);
            if refused {
                unknown_code()
            } else {
                ResponseTemplate::new(204)
            }
        })
        .mount(&v.moltin)
        .await;
    // §2: the promotion's codes, read back after the bulk deletes.
    let listed = still.clone();
    Mock::given(method("GET"))
        .and(path(format!("/v2/promotions/{PROMOTION}/codes")))
        .and(wiremock::matchers::query_param("page[limit]", "100"))
        .and(wiremock::matchers::query_param("page[offset]", "0"))
        .and(header("Authorization", "Bearer moltin-token"))
        .respond_with(move |_: &Request| {
            let codes: Vec<Value> = listed
                .lock()
                .unwrap()
                .iter()
                .map(|c| json!({ "code": c, "uses": 1, "max_uses": 1 }))
                .collect();
            let total = codes.len();
            ResponseTemplate::new(200).set_body_json(json!({
                "data": [ { "data": { "codes": codes } } ],
                "meta": { "results": { "total": total } }
            }))
        })
        .mount(&v.moltin)
        .await;
    // §6: DELETE /v2/promotions/:id/codes/:code, no body.
    let seen = v.moltin_deletes.clone();
    let gone_now = still.clone();
    let single = format!("/v2/promotions/{PROMOTION}/codes/");
    Mock::given(method("DELETE"))
        .and(header("Authorization", "Bearer moltin-token"))
        .and(move |r: &Request| r.url.path().starts_with(&single) && r.body.is_empty())
        .respond_with(move |r: &Request| {
            let code = r.url.path().rsplit('/').next().unwrap().to_owned();
            let gone = unknown.contains(&code.as_str());
            gone_now.lock().unwrap().retain(|c| *c != code);
            seen.lock().unwrap().push(vec![code]);
            if gone {
                unknown_code()
            } else {
                ResponseTemplate::new(204)
            }
        })
        .mount(&v.moltin)
        .await;
    // lifecycle/partnero.md §5: DELETE /v1/promotion-codes with {code, coupon: {uuid_code}}.
    let seen = v.partnero_deletes.clone();
    Mock::given(method("DELETE"))
        .and(path("/v1/promotion-codes"))
        .and(header("Authorization", "Bearer partnero-token"))
        .and(header("Content-Type", "application/json"))
        .and(header("Accept", "application/json"))
        .respond_with(move |r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["coupon"], json!({ "uuid_code": COUPON }), "{body}");
            assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
            seen.lock()
                .unwrap()
                .push(vec![body["code"].as_str().unwrap().to_owned()]);
            ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "status": 1, "message": "deleted" } }))
                .set_delay(partnero_delay)
        })
        .mount(&v.partnero)
        .await;
    let config = format!(
        "{}\n{}",
        common::upstream("moltin", "moltin", &v.moltin.uri(), ""),
        common::upstream("partnero", "partnero", &v.partnero.uri(), ""),
    );
    let map = mapping();
    let gw = common::start(&config, &[("spring", map.as_str())], ENV).await;
    (v, gw)
}

/// A 404 for a code, not for its promotion (§6 documents only "promotion not found").
fn unknown_code() -> ResponseTemplate {
    ResponseTemplate::new(404)
        .set_body_json(json!({ "errors": [{ "status": 404, "title": "Not Found", "detail": "code not found" }] }))
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("LEAK-{i:04}")).collect()
}

/// Creates `codes` on both vendors with a create job.
async fn created(gw: &common::Gateway, codes: &[String]) {
    let id = start_job(
        gw,
        &json!({ "campaign": "spring", "template": { "discount": { "percent_off": 20 } }, "codes": codes }),
    )
    .await;
    let job = wait_done(gw, id, WITHIN).await;
    for target in ["moltin", "partnero"] {
        assert_eq!(counts(&job, target)["created"], codes.len(), "{job}");
    }
}

/// How many times each code was carried by a call.
fn per_code(calls: &Calls) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for call in calls.lock().unwrap().iter() {
        for code in call {
            *out.entry(code.clone()).or_default() += 1;
        }
    }
    out
}

#[tokio::test]
async fn a_thousand_code_revoke_job_deletes_on_moltin_in_twenty_calls() {
    let (v, gw) = setup(&[], Duration::ZERO).await;
    let codes = names(1000);
    created(&gw, &codes).await;

    let id = start_job(&gw, &json!({ "revoke": { "campaign": "spring", "delete": true } })).await;
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(job["operation"], "revoke", "{job}");
    assert_eq!(job["source"], "campaign", "{job}");
    assert_eq!(job["total"], 1000, "{job}");
    for target in ["moltin", "partnero"] {
        assert_eq!(counts(&job, target), &json!({ "revoked": 1000 }), "{job}");
    }
    let moltin_calls = v.moltin_deletes.lock().unwrap().len();
    assert!(moltin_calls <= 20, "Moltin revoked 1,000 codes in {moltin_calls} calls");
    let expected: BTreeMap<String, usize> = codes.iter().map(|c| (c.clone(), 1)).collect();
    assert_eq!(
        per_code(&v.moltin_deletes),
        expected,
        "each code deleted once on Moltin"
    );
    assert_eq!(
        per_code(&v.partnero_deletes),
        expected,
        "each code deleted once on Partnero"
    );

    let results = all_results(&gw, id, "").await;
    assert_eq!(results.len(), 2000);
    for line in &results {
        assert_eq!(line["status"], "revoked", "{line}");
        assert_eq!(line["action"], "deleted", "{line}");
    }
    let bulk = results.iter().find(|l| l["upstream"] == "moltin").unwrap();
    assert!(
        bulk["warnings"].to_string().contains("bulk call"),
        "a bulk delete's line says its answer was for the batch: {bulk}"
    );

    // Revoked stays revoked: a create of one of them is refused, a second revoke job sends
    // nothing and says who revoked them.
    let (status, body) = gw
        .create(&json!({ "code": "LEAK-0007", "campaign": "spring", "discount": { "percent_off": 20 } }))
        .await;
    assert_eq!(status, 409, "{body}");
    let again = start_job(
        &gw,
        &json!({ "revoke": { "campaign": "spring", "codes": ["LEAK-0001", "leak-0002"], "delete": true } }),
    )
    .await;
    let job = wait_done(&gw, again, WITHIN).await;
    assert_eq!(counts(&job, "moltin"), &json!({ "revoked": 2 }), "{job}");
    let lines = all_results(&gw, again, "").await;
    assert!(
        lines
            .iter()
            .all(|l| l["attempts"] == 0 && l["warnings"].to_string().contains(&format!("sync job {id}"))),
        "{lines:?}"
    );
    assert_eq!(
        v.moltin_deletes.lock().unwrap().len(),
        moltin_calls,
        "no call for a revoked code"
    );
    assert_eq!(v.partnero_deletes.lock().unwrap().len(), 1000);
}

#[tokio::test]
async fn a_refused_bulk_delete_is_halved_until_the_unknown_code_stands_alone() {
    let (v, gw) = setup(&["LEAK-0005"], Duration::ZERO).await;
    let codes = names(12);
    created(&gw, &codes).await;
    let id = start_job(
        &gw,
        &json!({ "revoke": { "campaign": "spring", "codes": codes, "targets": ["moltin"], "delete": true } }),
    )
    .await;
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(job["targets"], json!(["moltin"]), "{job}");
    assert_eq!(
        counts(&job, "moltin"),
        &json!({ "revoked": 11, "not_found": 1 }),
        "{job}"
    );
    let calls = v.moltin_deletes.lock().unwrap().clone();
    // 12 → 6 + 6 → the unknown code's half: 3 + 3 → 1 + 2 → its single delete: 9 calls.
    assert_eq!(calls.len(), 9, "{calls:?}");
    assert!(calls.iter().any(|c| c == &["LEAK-0005".to_owned()]), "{calls:?}");
    let per = per_code(&v.moltin_deletes);
    for code in &codes {
        // A code is carried once by each refused batch holding it, and once by the call that
        // revoked it; the refused calls deleted nothing.
        let revoked_by = calls
            .iter()
            .filter(|c| c.contains(code) && !c.contains(&"LEAK-0005".to_owned()))
            .count();
        assert!(code == "LEAK-0005" || revoked_by == 1, "{code}: {per:?} {calls:?}");
    }
    let results = all_results(&gw, id, "&status=not_found").await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["code"], "LEAK-0005");
    assert_eq!(results[0]["error"]["kind"], "not_found_at_vendor", "{}", results[0]);
    assert!(
        v.partnero_deletes.lock().unwrap().is_empty(),
        "partnero was not a target"
    );
}

#[tokio::test]
async fn a_soft_revoke_job_is_unsupported_where_only_a_delete_is_documented() {
    let (v, gw) = setup(&[], Duration::ZERO).await;
    created(&gw, &names(3)).await;
    let id = start_job(&gw, &json!({ "revoke": { "campaign": "spring" } })).await;
    let job = wait_done(&gw, id, WITHIN).await;
    for target in ["moltin", "partnero"] {
        assert_eq!(counts(&job, target), &json!({ "unsupported": 3 }), "{job}");
    }
    let lines = all_results(&gw, id, "&upstream=moltin").await;
    assert_eq!(lines[0]["error"]["kind"], "unsupported_operation", "{}", lines[0]);
    assert!(v.moltin_deletes.lock().unwrap().is_empty());
    assert!(v.partnero_deletes.lock().unwrap().is_empty());
    // The codes are revoked in the ledger all the same: nothing delivers them again.
    let (status, body) = gw
        .create(&json!({ "code": "LEAK-0000", "campaign": "spring", "discount": { "percent_off": 20 } }))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["conflict"]["kind"], "revoked", "{body}");
}

#[tokio::test]
async fn a_revoke_job_naming_an_unknown_code_is_refused_whole() {
    let (v, gw) = setup(&[], Duration::ZERO).await;
    created(&gw, &names(2)).await;
    let cases = [
        (
            json!({ "revoke": { "campaign": "spring", "codes": ["LEAK-0000", "NOPE", "LEAK-0000"] } }),
            vec!["revoke.codes[1]", "revoke.codes[2]"],
        ),
        (json!({ "revoke": { "campaign": "nowhere" } }), vec!["revoke.campaign"]),
        (
            json!({ "revoke": { "campaign": "spring", "codes": [] } }),
            vec!["revoke.codes"],
        ),
        (
            json!({ "revoke": { "campaign": "spring", "delete": "yes" } }),
            vec!["revoke.delete"],
        ),
        (
            json!({ "revoke": { "campaign": "spring", "targets": ["mars"] } }),
            vec!["revoke.targets[0]"],
        ),
        (
            json!({ "revoke": { "campaign": "spring", "colour": 1 } }),
            vec!["revoke.colour"],
        ),
        (
            json!({ "revoke": { "campaign": "spring" }, "codes": ["A"] }),
            vec!["codes"],
        ),
    ];
    for (job, fields) in cases {
        let (status, body) = post_json_job(&gw, &job).await;
        assert_eq!(status, 422, "{job}: {body}");
        let named: Vec<String> = problems(&body).into_iter().map(|(field, _)| field).collect();
        for field in fields {
            assert!(named.iter().any(|n| n == field), "{job}: {field} not in {named:?}");
        }
    }
    // Nothing changed: the codes are not revoked, no call was made.
    let (_, code) = gw.get("/v1/promo-codes/LEAK-0000?campaign=spring").await;
    assert!(code.get("revoked_at").is_none(), "{code}");
    assert!(v.moltin_deletes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_cancelled_revoke_job_is_retried_to_the_end() {
    // Partnero answers slowly enough for the cancel to land while its deletes go on.
    let (v, gw) = setup(&[], Duration::from_millis(300)).await;
    let codes = names(100);
    created(&gw, &codes).await;
    let id = start_job(&gw, &json!({ "revoke": { "campaign": "spring", "delete": true } })).await;
    let (status, job) = job_action(&gw, id, "cancel").await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "cancelled", "{job}");
    let cancelled = counts(&job, "partnero")["cancelled"].as_u64().unwrap_or(0);
    assert!(cancelled > 0, "the cancel left codes unrevoked: {job}");
    let (status, job) = job_action(&gw, id, "retry").await;
    assert_eq!(status, 202, "{job}");
    let job = wait_done(&gw, id, WITHIN).await;
    for target in ["moltin", "partnero"] {
        assert_eq!(counts(&job, target), &json!({ "revoked": 100 }), "{job}");
    }
    let expected: BTreeMap<String, usize> = codes.iter().map(|c| (c.clone(), 1)).collect();
    assert_eq!(
        per_code(&v.partnero_deletes),
        expected,
        "a cancel and a retry delete each code once"
    );
}

/// `promo-gateway revoke` through the real binary, on the configured ledger: the codes a `sync`
/// created are revoked in one job whose summary names what happened.
#[tokio::test]
async fn the_cli_revokes_a_campaigns_codes_with_a_summary() {
    let (v, _gw) = setup(&[], Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n{}",
        common::upstream("moltin", "moltin", &v.moltin.uri(), ""),
        common::upstream("partnero", "partnero", &v.partnero.uri(), ""),
    );
    let map = mapping();
    let config = common::write_files(dir.path(), &config, &[("spring", map.as_str())]);
    let codes = dir.path().join("codes.csv");
    std::fs::write(&codes, "code,percent_off\nCLI-1,20\nCLI-2,20\nCLI-3,20\n").unwrap();
    let run = |args: Vec<String>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_promo-gateway"));
        cmd.arg("--config").arg(&config).args(args).envs(ENV.iter().copied());
        // Off the runtime's threads: the vendors answer on them.
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap()
                .unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.code(), text(&out.stdout), text(&out.stderr))
        }
    };
    let (status, stdout, stderr) = run(vec![
        "sync".into(),
        codes.display().to_string(),
        "--campaign".into(),
        "spring".into(),
    ])
    .await;
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    let args = "revoke --campaign spring --codes CLI-1,cli-2 --delete";
    let (status, stdout, stderr) = run(args.split(' ').map(String::from).collect()).await;
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("revoke job 2 done: 2 codes, campaign spring\n"),
        "{stdout}"
    );
    for target in ["moltin", "partnero"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [target, "2"]),
            "{stdout}"
        );
    }
    assert_eq!(per_code(&v.partnero_deletes).len(), 2);
    // Two codes on Moltin: one bulk delete.
    assert_eq!(v.moltin_deletes.lock().unwrap().len(), 1);

    // A soft revoke where only a delete is documented: unsupported, exit 2, and the reason.
    let (status, stdout, stderr) = run("revoke --campaign spring --codes CLI-3"
        .split(' ')
        .map(String::from)
        .collect())
    .await;
    assert_eq!(status, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("\nunsupported: 2 revocations\n"), "{stdout}");
    assert!(stdout.contains("unsupported_operation: "), "{stdout}");
}

/// lifecycle/moltin.md §6b: "after a 204, list the promotion's codes and retry, one by one, any
/// code that is still there". Moltin's bulk delete answers 204 yet keeps two codes; the job reads
/// the promotion back, deletes those two in their own calls, and their lines say so.
#[tokio::test]
async fn codes_a_bulk_delete_left_behind_are_deleted_again_one_by_one() {
    let (v, gw) = setup_with(&[], Duration::ZERO, &["LEAK-0003", "LEAK-0008"]).await;
    let codes = names(12);
    created(&gw, &codes).await;
    let id = start_job(
        &gw,
        &json!({ "revoke": { "campaign": "spring", "targets": ["moltin"], "delete": true } }),
    )
    .await;
    let job = wait_done(&gw, id, WITHIN).await;
    assert_eq!(counts(&job, "moltin"), &json!({ "revoked": 12 }), "{job}");
    let calls = v.moltin_deletes.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "one bulk call, then one for each code left: {calls:?}");
    assert_eq!(calls[0].len(), 12);
    let mut singles: Vec<String> = calls[1..].iter().map(|c| c[0].clone()).collect();
    singles.sort();
    assert_eq!(singles, ["LEAK-0003", "LEAK-0008"]);
    let lines = all_results(&gw, id, "").await;
    for line in &lines {
        let warnings = line["warnings"].to_string();
        let again = ["LEAK-0003", "LEAK-0008"].contains(&line["code"].as_str().unwrap());
        assert_eq!(warnings.contains("still listed the code"), again, "{line}");
        assert_eq!(line["status"], "revoked", "{line}");
    }
}
