//! The gateway's own requests judged by the sandbox: beside the wiremock tests (which pin
//! exact bodies), the real router sends the golden code and a matrix of unified codes to the
//! simulated vendors (every field each vendor carries, each lossy conversion, Moltin batches of
//! 1, 50 and 120 codes through sync jobs, both Limio versions, Spacebring with Basic, with a
//! bearer token and with OAuth2, both with the network id), and every target must be `created`
//! with the sandbox refusing nothing. Then the binary: `--sandbox` on the shipped config.toml,
//! the README's curl create on all six targets, a repeat that calls no vendor, and docs/api.md's
//! live read and revoke examples.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::binary::{Binary, BIN};
use common::jobs::{count, start_job, wait_done};
use promo_sandbox::{Options, Sandbox};
use serde_json::{json, Value};

const NETWORK: &str = "9b2d1c4e-7a6f-4e3d-8c2b-1a0f9e8d7c6b";
const COUPON: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";

/// A sandbox on a loopback port, with no rate limit (the gateway's own limits are under test
/// elsewhere).
async fn sandbox() -> (Sandbox, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(Options {
        rate_limit: None,
        ..Options::default()
    });
    tokio::spawn(promo_sandbox::serve(listener, sandbox.clone(), std::future::pending()));
    (sandbox, base)
}

/// Every upstream of the matrix, pointed at the sandbox.
fn config(sb: &str) -> String {
    let oauth = |vendor: &str, id: &str, secret: &str| {
        common::oauth2_client_credentials(&format!("{sb}/{vendor}/oauth2/token"), id, secret, "")
    };
    [
        common::upstream(
            "spacebring",
            "spacebring",
            &format!("{sb}/spacebring"),
            r#"auth = { scheme = "basic", username_env = "SB_KEY", password_env = "SB_SECRET" }"#,
        ),
        common::upstream(
            "spacebring-bearer",
            "spacebring",
            &format!("{sb}/spacebring"),
            &format!("network_id = \"{NETWORK}\""),
        ),
        common::upstream(
            "spacebring-oauth",
            "spacebring",
            &format!("{sb}/spacebring"),
            &format!(
                "network_id = \"{NETWORK}\"\n{}",
                oauth("spacebring", "SB_CLIENT", "SB_CLIENT_SECRET")
            ),
        ),
        common::upstream("partnero", "partnero", &format!("{sb}/partnero"), "currency = \"USD\""),
        common::upstream("moltin", "moltin", &format!("{sb}/moltin"), ""),
        common::upstream(
            "limio-v2",
            "limio",
            &format!("{sb}/limio"),
            &format!("version = \"v2\"\n{}", oauth("limio", "LIMIO_ID", "LIMIO_SECRET")),
        ),
        common::upstream(
            "limio-v3",
            "limio",
            &format!("{sb}/limio"),
            &format!("version = \"v3\"\n{}", oauth("limio", "LIMIO_ID", "LIMIO_SECRET")),
        ),
        common::upstream("loop", "loop", &format!("{sb}/loop"), "currency = \"USD\""),
    ]
    .concat()
}

const ENV: &[(&str, &str)] = &[
    ("SB_KEY", "key"),
    ("SB_SECRET", "secret"),
    ("SPACEBRING_BEARER_TOKEN", "sb-token"),
    ("SB_CLIENT", "sb-client"),
    ("SB_CLIENT_SECRET", "sb-client-secret"),
    ("PARTNERO_TOKEN", "partnero-key"),
    ("MOLTIN_TOKEN", "moltin-token"),
    ("LIMIO_ID", "limio-client"),
    ("LIMIO_SECRET", "limio-secret"),
    ("LOOP_TOKEN", "loop-token"),
];

/// The repository's example campaign, with the two more Spacebring upstreams on its coupon.
fn example_mapping() -> String {
    let shipped = include_str!("../mappings/example.toml");
    let mut text = shipped.to_owned();
    for name in ["spacebring-bearer", "spacebring-oauth"] {
        text.push_str(&format!(
            "\n[upstreams.{name}]\ncoupon_ref = \"{COUPON}\"\ndiscount = {{ percent_off = 20 }}\n"
        ));
    }
    text
}

/// A campaign whose parents grant 19.99 USD off.
fn amount_mapping() -> String {
    let grant = "discount = { amount_off = 1999, currency = \"USD\" }";
    let mut text = String::new();
    for name in ["spacebring", "spacebring-bearer", "spacebring-oauth"] {
        text.push_str(&format!("[upstreams.{name}]\ncoupon_ref = \"{COUPON}\"\n{grant}\n\n"));
    }
    text.push_str(&format!(
        "[upstreams.partnero]\ncoupon_uuid = \"coupon_amount\"\n{grant}\n\n\
         [upstreams.moltin]\npromotion_id = \"promo-amount\"\n{grant}\n\n\
         [upstreams.limio-v2]\nproduct_path = \"/products/p\"\nrate_plan_path = \"/products/p/rate-plans/r\"\n\
         application_level = \"whole_basket\"\n\n\
         [upstreams.limio-v3]\nattached_discount = {{ id = \"d_amount\", path = \"/offers/discounts/amount\", name = \"19.99 off\" }}\n{grant}\n\n\
         [upstreams.loop]\n"
    ));
    text
}

/// The golden code of adapters/tests/fixtures (every unified field, `skip_field`).
fn golden() -> Value {
    json!({
        "code": "SPRING-20",
        "campaign": "example",
        "discount": { "percent_off": 20 },
        "active": false,
        "starts_at": "2026-03-01T09:00:00Z",
        "expires_at": "2026-04-01T12:00:00Z",
        "max_redemptions": 500,
        "first_time_only": true,
        "minimum_order": { "amount": 2550, "currency": "USD" },
        "customer": { "id": "cus_123", "name": "Ada Lovelace" },
        "partner": { "id": "p_9", "name": "Acme Affiliates" },
        "description": "Spring sale",
        "metadata": { "source": "crm" },
        "on_unsupported": "skip_field"
    })
}

/// The unified codes of the matrix, each with the targets it goes to (all of its campaign's
/// when none are named) and why it is there.
fn matrix() -> Vec<(&'static str, Value)> {
    let base = |code: &str| json!({ "code": code, "campaign": "example", "discount": { "percent_off": 20 } });
    let with = |code: &str, extra: Value| common::merged(base(code), extra);
    vec![
        ("the golden code", golden()),
        ("a plain code", base("PLAIN-1")),
        (
            "Partnero's whole alphabet at Loop's 50 characters",
            base("Az09-_Az09-_Az09-_Az09-_Az09-_Az09-_Az09-_Az09-_Az"),
        ),
        (
            "dates in another offset: date-only fields (Limio, Partnero) move inward",
            with(
                "DATES-1",
                json!({ "starts_at": "2026-03-01T23:59:59+02:00", "expires_at": "2026-04-01T12:30:00+02:00",
                        "on_unsupported": "skip_field" }),
            ),
        ),
        (
            "limits (Spacebring's limitedRedemption, Partnero's switches, Moltin's uses)",
            with(
                "LIMITS-1",
                json!({ "max_redemptions": 1, "first_time_only": true, "on_unsupported": "skip_field" }),
            ),
        ),
        (
            "an expiry only (Spacebring's enabled expiration with its date)",
            with(
                "EXPIRY-1",
                json!({ "expires_at": "2026-12-31T23:59:59Z", "targets": ["spacebring", "spacebring-bearer", "spacebring-oauth", "partnero", "limio-v2", "limio-v3", "loop"] }),
            ),
        ),
        (
            "a customer: Partnero's coupon_specific_customers, Moltin's user",
            with(
                "CUSTOMER-1",
                json!({ "customer": { "id": "cus_1", "name": "Ada" }, "targets": ["partnero", "moltin"] }),
            ),
        ),
        (
            "a partner: Partnero's coupon_specific_partners",
            with(
                "PARTNER-1",
                json!({ "partner": { "id": "p_1", "name": "Acme" }, "targets": ["partnero"] }),
            ),
        ),
        (
            "a minimum order in cents: Partnero's whole units, rounded up",
            with(
                "MINIMUM-1",
                json!({ "minimum_order": { "amount": 2201, "currency": "USD" }, "targets": ["partnero"] }),
            ),
        ),
        (
            "inactive, described: Limio's status and description",
            with(
                "INACTIVE-1",
                json!({ "active": false, "description": "paused", "targets": ["limio-v2", "limio-v3"] }),
            ),
        ),
        (
            "a duration: Limio v2's durationLength and durationType, v3's parent",
            with(
                "DURATION-1",
                json!({ "duration": { "length": 3, "unit": "months" }, "targets": ["limio-v2", "limio-v3"] }),
            ),
        ),
        (
            "a percentage with decimals, inline at Limio v2 and Loop",
            json!({ "code": "PCT-12-5", "campaign": "example", "discount": { "percent_off": 12.5 },
                    "targets": ["limio-v2", "loop"] }),
        ),
        (
            "an amount: Limio v2's decimal major units, Loop's minor units, parents granting it",
            json!({ "code": "AMOUNT-1", "campaign": "amount", "discount": { "amount_off": 1999, "currency": "USD" },
                    "max_redemptions": 10 }),
        ),
        (
            "a three-decimal currency at Limio v2 (the third decimal rounded down)",
            json!({ "code": "KWD-1", "campaign": "example", "discount": { "amount_off": 12345, "currency": "KWD" },
                    "targets": ["limio-v2"] }),
        ),
        (
            "a currency without decimals at Limio v2",
            json!({ "code": "JPY-1", "campaign": "example", "discount": { "amount_off": 500, "currency": "JPY" },
                    "targets": ["limio-v2"] }),
        ),
    ]
}

#[tokio::test]
async fn the_sandbox_accepts_every_request_the_gateway_sends() {
    let (sandbox, sb) = sandbox().await;
    let example = example_mapping();
    let amount = amount_mapping();
    let gw = common::start(
        &config(&sb),
        &[("example", example.as_str()), ("amount", amount.as_str())],
        ENV,
    )
    .await;

    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for (why, create) in matrix() {
        let (status, body) = gw.create(&create).await;
        let results = body["results"].as_array().unwrap_or_else(|| panic!("{why}: {body}"));
        assert!(results.len() >= 2 || create.get("targets").is_some(), "{why}: {body}");
        for r in results {
            assert_eq!(
                r["status"],
                "created",
                "{why}: {r}\nrefusals: {:#?}",
                sandbox.refusals()
            );
            *sent.entry(r["upstream"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        assert_eq!(status, 201, "{why}: {body}");
    }
    assert!(sandbox.refusals().is_empty(), "{:#?}", sandbox.refusals());
    // Every upstream was called, and each vendor holds what was sent to it.
    assert_eq!(sent.len(), 8, "{sent:?}");
    let at = |vendor: &str, names: &[&str]| {
        names.iter().map(|n| sent.get(*n).copied().unwrap_or(0)).sum::<usize>() == sandbox.codes(vendor).len()
    };
    assert!(at(
        "spacebring",
        &["spacebring", "spacebring-bearer", "spacebring-oauth"]
    ));
    assert!(at("partnero", &["partnero"]));
    assert!(at("moltin", &["moltin"]));
    assert!(at("limio", &["limio-v2", "limio-v3"]));
    assert!(at("loop", &["loop"]));
    // The three Spacebring upstreams are three accounts (Basic, a bearer, an OAuth2 client).
    let accounts: std::collections::BTreeSet<String> =
        sandbox.codes("spacebring").into_iter().map(|c| c.account).collect();
    assert_eq!(accounts.len(), 3, "{accounts:?}");
    // The lossy conversions arrived as converted: Limio's dates moved inward, amounts in major
    // units (KWD's third decimal dropped), Partnero's minimum order rounded up.
    let request = |vendor: &str, code: &str, collection: &str| {
        sandbox
            .codes(vendor)
            .into_iter()
            .find(|c| c.code == code && c.collection.contains(collection))
            .unwrap_or_else(|| panic!("{vendor} holds no {code}"))
            .request
    };
    let dates = request("limio", "DATES-1", "v2");
    assert_eq!(dates["data"]["promoStartDate"], "2026-03-02");
    assert_eq!(dates["data"]["promoExpiryDate"], "2026-03-31");
    assert_eq!(
        request("limio", "KWD-1", "v2")["data"]["discount"]["amountDiscount"],
        12.34
    );
    assert_eq!(
        request("limio", "AMOUNT-1", "v2")["data"]["discount"]["amountDiscount"],
        19.99
    );
    assert_eq!(request("loop", "AMOUNT-1", "")["amount_off"], 1999);
    assert_eq!(request("partnero", "MINIMUM-1", "")["minimum_order_value"], 23);
    assert_eq!(request("moltin", "CUSTOMER-1", "")["user"], "cus_1");
    assert_eq!(
        request("spacebring", "EXPIRY-1", "")["promocode"]["expiration"]["enabled"],
        true
    );

    // Moltin batches through sync jobs: 1, 50 and 120 codes, 50 a call.
    for n in [1usize, 50, 120] {
        let codes: Vec<String> = (0..n).map(|i| format!("BATCH{n}-{i:03}")).collect();
        let job = json!({
            "campaign": "example", "targets": ["moltin", "loop"],
            "template": { "discount": { "percent_off": 20 }, "max_redemptions": 1 },
            "codes": codes,
        });
        let id = start_job(&gw, &job).await;
        let done = wait_done(&gw, id, Duration::from_secs(60)).await;
        for target in ["moltin", "loop"] {
            assert_eq!(count(&done, target, "created") as usize, n, "{target}: {done}");
        }
        let mut calls: BTreeMap<u64, usize> = BTreeMap::new();
        for c in sandbox.codes("moltin") {
            if c.code.starts_with(&format!("BATCH{n}-")) {
                *calls.entry(c.call).or_default() += 1;
            }
        }
        let mut sizes: Vec<usize> = calls.into_values().collect();
        sizes.sort_unstable();
        let expected: Vec<usize> = match n {
            1 => vec![1],
            50 => vec![50],
            _ => vec![20, 50, 50],
        };
        assert_eq!(sizes, expected, "Moltin calls of the {n}-code job");
    }
    assert!(sandbox.refusals().is_empty(), "{:#?}", sandbox.refusals());
}

#[tokio::test]
async fn a_second_create_at_a_sandbox_that_holds_the_code_is_already_exists() {
    // The one duplicate signal the gateway reads: the sandbox's 409, through a fresh ledger.
    let (sandbox, sb) = sandbox().await;
    let loop_only = common::upstream("loop", "loop", &format!("{sb}/loop"), "");
    let create = json!({ "code": "TWICE", "discount": { "percent_off": 20 }, "targets": ["loop"] });
    let first = common::start(&loop_only, &[], &[("LOOP_TOKEN", "t")]).await;
    assert_eq!(
        common::result(&first.create(&create).await.1, "loop")["status"],
        "created"
    );
    let second = common::start(&loop_only, &[], &[("LOOP_TOKEN", "t")]).await;
    let (status, body) = second.create(&create).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "already_exists", "{body}");
    assert_eq!(sandbox.codes("loop").len(), 1);
}

/// The README's first command, as a test: the shipped config.toml and mappings, `--sandbox`,
/// no credential variable set.
fn sandboxed_binary() -> Binary {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--config",
        &format!("{root}/config.toml"),
        "--sandbox",
        "--listen",
        "127.0.0.1:0",
        "--sandbox-listen",
        "127.0.0.1:0",
    ]);
    for (var, _) in std::env::vars() {
        if var.ends_with("_TOKEN") || var.ends_with("_KEY") || var.ends_with("_SECRET") || var.ends_with("_ID") {
            cmd.env_remove(var);
        }
    }
    cmd.stderr(std::process::Stdio::piped());
    Binary::spawn(&mut cmd, true, Duration::from_secs(30)).unwrap_or_else(|b| panic!("no listening line: {}", b.log()))
}

/// The README's `POST /v1/promo-codes` example body, read from the README itself.
fn readme_create() -> Value {
    let readme = include_str!("../README.md");
    let start = readme
        .find("-H 'Idempotency-Key: spring-20-launch' -d '")
        .expect("the README's create example");
    let rest = &readme[start..];
    let body = &rest[rest.find("-d '").unwrap() + 4..];
    let body = &body[..body.find("}'").unwrap() + 1];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("the README's example body: {e}\n{body}"))
}

#[tokio::test]
async fn serve_sandbox_creates_the_readme_example_on_all_six_targets_and_a_repeat_calls_no_vendor() {
    let gw = sandboxed_binary();
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok", "{health}");
    let upstreams = health["upstreams"].as_object().unwrap();
    assert_eq!(upstreams.len(), 6);
    let mut sandbox_root = None;
    for (name, u) in upstreams {
        assert_eq!(u["configured"], true, "{name}: {u}");
        let url = u["sandbox"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is not sandboxed: {u}"));
        assert!(url.starts_with("http://127.0.0.1:"), "{name}: {url}");
        sandbox_root = Some(url[..url.rfind('/').unwrap()].to_owned());
    }
    let sandbox_root = sandbox_root.unwrap();
    let held = |vendor: &'static str| {
        let url = format!("{sandbox_root}/{vendor}/_sandbox/codes");
        async move {
            let list: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            list["count"].as_u64().unwrap()
        }
    };

    let create = readme_create();
    let idempotency_key = "spring-20-launch";
    let (status, _, body) = gw.create_with_key(idempotency_key, &create).await;
    assert_eq!(status, 201, "{body}\n{}", gw.log());
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 6, "{body}");
    for r in results {
        assert_eq!(r["status"], "created", "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
    let vendors = ["spacebring", "partnero", "moltin", "limio", "loop"];
    let mut before = Vec::new();
    for v in vendors {
        before.push(held(v).await);
    }
    assert_eq!(before, [1, 1, 1, 2, 1], "Limio holds v2's and v3's object");

    // The same create again, without the key: the ledger has it everywhere, nothing is sent.
    let (status, body) = gw.create(&create).await;
    assert_eq!(status, 201, "{body}");
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["status"], "created", "{r}");
        assert_eq!(r["attempts"], 0, "{r}");
    }
    // And with the key: the first answer replayed.
    let (status, replayed, _) = gw.create_with_key(idempotency_key, &create).await;
    assert_eq!(status, 201);
    assert_eq!(replayed.as_deref(), Some("true"));
    let mut after = Vec::new();
    for v in vendors {
        after.push(held(v).await);
    }
    assert_eq!(after, before, "a repeat called a vendor");

    // docs/api.md's live read: every vendor that documents a read holds the code active and as
    // sent; Limio v3 documents none.
    let (code, _, _) = api_revoke();
    let live_path = api_live();
    assert!(
        live_path.starts_with(&format!("/v1/promo-codes/{code}/live")),
        "{live_path}"
    );
    let (status, live) = gw.get(&live_path).await;
    assert_eq!(status, 200, "{live}");
    for r in live["results"].as_array().unwrap() {
        let expected = if r["upstream"] == "limio-v3" {
            "unreadable"
        } else {
            "active"
        };
        assert_eq!(r["state"], expected, "{r}");
        assert_eq!(r["differs"], json!([]), "{r}");
    }

    // docs/api.md's revoke example, as written: every documented revoke call, accepted by the
    // simulated vendors' schemas.
    let (code, key, revoke) = api_revoke();
    let r = gw
        .http
        .post(format!("{}/v1/promo-codes/{code}/revoke", gw.base))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(revoke.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    let body: Value = r.json().await.unwrap();
    for (target, status, action) in [
        ("spacebring", "revoked", Some("archived")),
        ("limio-v2", "revoked", Some("deleted")),
        ("moltin", "revoked", Some("deleted")),
        ("partnero", "revoked", Some("deleted")),
        ("limio-v3", "unsupported", None),
        ("loop", "unsupported", None),
    ] {
        let r = common::result(&body, target);
        assert_eq!(
            (r["status"].as_str(), r["action"].as_str()),
            (Some(status), action),
            "{r}"
        );
    }
    assert!(
        common::warning(common::result(&body, "spacebring"), "delete").contains("cannot delete, archived"),
        "{body}"
    );
    let mut revoked = Vec::new();
    for v in vendors {
        revoked.push(held(v).await);
    }
    assert_eq!(
        revoked,
        [1, 0, 0, 1, 1],
        "deleted at Partnero, Moltin and Limio v2; archived at Spacebring"
    );
    for v in vendors {
        let url = format!("{sandbox_root}/{v}/_sandbox/refusals");
        let list: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        assert_eq!(list["count"], 0, "{list}");
    }
    // Read back after the revoke: archived, deleted, and where no revoke exists (Loop) still
    // active, which the answer points out.
    let (status, live) = gw.get(&live_path).await;
    assert_eq!(status, 200, "{live}");
    for (target, state) in [
        ("spacebring", "revoked"),
        ("limio-v2", "absent"),
        ("moltin", "absent"),
        ("partnero", "absent"),
        ("limio-v3", "unreadable"),
        ("loop", "active"),
    ] {
        assert_eq!(common::result(&live, target)["state"], state, "{live}");
    }
    assert!(
        common::warning(common::result(&live, "loop"), "code").contains("can still be redeemed there"),
        "{live}"
    );
    // And the code is never created again.
    let (status, problem) = gw.create(&create).await;
    assert_eq!(status, 409, "{problem}");
}

/// docs/api.md's live read example: its path and query.
fn api_live() -> String {
    let api = include_str!("../docs/api.md");
    let start = api
        .find("curl -s 'localhost:8080/v1/promo-codes/")
        .expect("docs/api.md's live read example");
    let rest = &api[start + "curl -s 'localhost:8080".len()..];
    rest[..rest.find('\'').unwrap()].to_owned()
}

/// docs/api.md's revoke example: the code in its path, its key and its body.
fn api_revoke() -> (String, String, Value) {
    let api = include_str!("../docs/api.md");
    let start = api
        .find("curl -s -X POST localhost:8080/v1/promo-codes/")
        .expect("docs/api.md's revoke example");
    let rest = &api[start + "curl -s -X POST localhost:8080/v1/promo-codes/".len()..];
    let code = rest[..rest.find("/revoke").expect("a revoke path")].to_owned();
    let key = rest[rest.find("Idempotency-Key: ").unwrap() + 17..]
        .split('\'')
        .next()
        .unwrap()
        .to_owned();
    let body = &rest[rest.find("-d '").unwrap() + 4..];
    let body = &body[..body.find("}'").unwrap() + 1];
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("docs/api.md's revoke body: {e}\n{body}"));
    (code, key, body)
}

#[tokio::test]
async fn the_sandbox_command_serves_the_vendors_alone() {
    let mut cmd = Command::new(BIN);
    cmd.args(["sandbox", "--listen", "127.0.0.1:0", "--rate-limit", "loop=1"]);
    let sb = Binary::spawn(&mut cmd, true, Duration::from_secs(30)).unwrap_or_else(|b| panic!("{}", b.log()));
    let create = |code: &str| {
        sb.http
            .post(format!("{}/loop/v1/admin/promos", sb.base))
            .header("Authorization", "Bearer t")
            .json(&json!({ "code": code }))
            .send()
    };
    assert_eq!(create("ALONE").await.unwrap().status(), 201);
    // Loop's limit of one call a second.
    let throttled = create("ALONE-2").await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "1");
    let (status, list) = sb.get("/loop/_sandbox/codes").await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 1, "{list}");
    assert!(sb.log().contains("simulated vendor http://"), "{}", sb.log());

    let refused = Command::new(BIN)
        .args(["sandbox", "--listen", "127.0.0.1:0", "--rate-limit", "nobody=3"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rate-limit nobody=3"));
}

/// A revoke job through the sandbox: every code a create job put on the six targets is revoked
/// by the documented calls (Moltin's in bulk, 50 codes a call), each accepted by the simulated
/// vendors' schemas, and their state shows it.
#[tokio::test]
async fn serve_sandbox_revokes_a_campaigns_codes_in_one_job() {
    let gw = sandboxed_binary();
    let (_, health) = gw.get("/health").await;
    let url = health["upstreams"]["moltin"]["sandbox"].as_str().unwrap().to_owned();
    let sandbox_root = url[..url.rfind('/').unwrap()].to_owned();
    let held = |vendor: &str| {
        let url = format!("{sandbox_root}/{vendor}/_sandbox/codes");
        async move {
            let list: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            list["count"].as_u64().unwrap()
        }
    };
    let codes: Vec<String> = (0..60).map(|i| format!("BULK-{i:03}")).collect();
    let id = start_job(
        &gw,
        &json!({ "campaign": "example", "template": { "discount": { "percent_off": 20 } }, "codes": codes }),
    )
    .await;
    let job = wait_done(&gw, id, Duration::from_secs(60)).await;
    assert_eq!(count(&job, "moltin", "created"), 60, "{job}");

    let id = start_job(&gw, &json!({ "revoke": { "campaign": "example", "delete": true } })).await;
    let job = wait_done(&gw, id, Duration::from_secs(60)).await;
    for target in ["spacebring", "limio-v2", "moltin", "partnero"] {
        assert_eq!(count(&job, target, "revoked"), 60, "{target}: {job}");
    }
    for target in ["limio-v3", "loop"] {
        assert_eq!(count(&job, target, "unsupported"), 60, "{target}: {job}");
    }
    let mut left = Vec::new();
    for v in ["spacebring", "partnero", "moltin", "limio", "loop"] {
        left.push(held(v).await);
    }
    assert_eq!(
        left,
        [60, 0, 0, 60, 60],
        "deleted at Partnero, Moltin and Limio v2 (Limio keeps v3's); archived at Spacebring"
    );
    for v in ["spacebring", "partnero", "moltin", "limio", "loop"] {
        let url = format!("{sandbox_root}/{v}/_sandbox/refusals");
        let list: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        assert_eq!(list["count"], 0, "{v}: {list}");
    }
}
