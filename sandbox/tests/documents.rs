//! The sandbox judged on the documents themselves, over real HTTP: each document's own request
//! examples (or, where a document has none, a request built from its schema) are accepted with
//! its success answer, and a table of broken requests per vendor (each required field missing,
//! wrong types and formats, undocumented fields, broken conditionals, missing or wrong auth) is
//! refused, each answer naming the violation (its JSON pointer and rule).

use std::time::Duration;

use base64::Engine as _;
use promo_sandbox::{Options, Sandbox};
use serde_json::{json, Value};

struct Running {
    base: String,
    sandbox: Sandbox,
    http: reqwest::Client,
}

async fn start(options: Options) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(options);
    tokio::spawn(promo_sandbox::serve(listener, sandbox.clone(), std::future::pending()));
    Running {
        base,
        sandbox,
        http: reqwest::Client::new(),
    }
}

fn unlimited() -> Options {
    Options {
        rate_limit: None,
        ..Options::default()
    }
}

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    BearerNetwork(String, String),
    Basic(String, String),
    Raw(String),
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Running {
    async fn call(&self, method: &str, path: &str, auth: &Auth, content_type: Option<&str>, body: &Value) -> Answer {
        let mut request = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        request = match auth {
            Auth::None => request,
            Auth::Bearer(t) => request.header("Authorization", format!("Bearer {t}")),
            Auth::BearerNetwork(t, n) => request
                .header("Authorization", format!("Bearer {t}"))
                .header("spacebring-network-id", n),
            Auth::Basic(u, p) => request.header("Authorization", basic(u, p)),
            Auth::Raw(v) => request.header("Authorization", v),
        };
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        // `Value::Null` stands for no body at all.
        if !body.is_null() {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            retry_after,
            body,
        }
    }

    async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.call("GET", path, auth, None, &Value::Null).await
    }

    async fn post(&self, path: &str, auth: &Auth, body: &Value) -> Answer {
        self.call("POST", path, auth, Some("application/json"), body).await
    }

    /// A token from the vendor's OAuth2 endpoint (client credentials, client in HTTP Basic).
    async fn token(&self, vendor: &str, client: &str) -> String {
        let response = self
            .http
            .post(format!("{}/{vendor}/oauth2/token", self.base))
            .header("Authorization", basic(client, "secret"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        body["access_token"].as_str().unwrap().to_owned()
    }
}

const COUPON: &str = "3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f";
const NETWORK: &str = "9b2d1c4e-7a6f-4e3d-8c2b-1a0f9e8d7c6b";
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";

fn spacebring_body(code: &str) -> Value {
    json!({ "promocode": {
        "code": code, "couponRef": COUPON,
        "expiration": { "enabled": false },
        "limitByFirstPurchase": false,
        "limitedRedemption": { "enabled": false, "value": 0 }
    } })
}

fn limio_v2_body(code: &str) -> Value {
    json!({ "name": code, "id": format!("promo_code_v2-{code}"), "data": {
        "applicationLevel": "wholeBasket", "promoCode": code, "status": true,
        "productDetails": { "product": { "path": "/products/p" }, "ratePlan": { "path": "/products/p/rate-plans/r" } },
        "discount": { "discountType": "DiscountPercentage", "percentageDiscount": 20 }
    } })
}

fn limio_v3_body(code: &str) -> Value {
    json!({ "name": code, "id": format!("promo_code_v3-{code}"), "data": {
        "promoCode": code, "status": true,
        "attachedDiscount": { "id": "d_8f2e", "path": "/offers/discounts/spring-20", "name": "Spring 20%" }
    } })
}

/// `body` with the value at `pointer` replaced (`None`: removed).
fn with(body: &Value, pointer: &str, value: Option<Value>) -> Value {
    let mut body = body.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = body.pointer_mut(parent).unwrap_or_else(|| panic!("{pointer}"));
    match (parent, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(key.to_owned(), v);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(v)) => items[key.parse::<usize>().unwrap()] = v,
        _ => panic!("{pointer}"),
    }
    body
}

/// One broken request and what its refusal must name.
struct Broken {
    what: &'static str,
    method: &'static str,
    path: String,
    auth: Auth,
    content_type: Option<&'static str>,
    body: Value,
    status: u16,
    pointer: &'static str,
    rule: &'static str,
    /// Text the violation's message must hold (the missing property's name, say).
    names: &'static str,
}

fn broken(
    what: &'static str,
    path: &str,
    auth: &Auth,
    body: Value,
    status: u16,
    pointer: &'static str,
    rule: &'static str,
) -> Broken {
    Broken {
        what,
        method: "POST",
        path: path.to_owned(),
        auth: auth.clone(),
        content_type: Some("application/json"),
        body,
        status,
        pointer,
        rule,
        names: "",
    }
}

impl Broken {
    fn naming(mut self, names: &'static str) -> Self {
        self.names = names;
        self
    }
    fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }
    fn content_type(mut self, ct: Option<&'static str>) -> Self {
        self.content_type = ct;
        self
    }
}

/// Sends every broken request and checks each refusal: the status, a violation at the pointer
/// with the rule (and naming what it should), and the refusal recorded; and that nothing
/// refused was held.
async fn refuse_all(sb: &Running, vendor: &str, table: Vec<Broken>) {
    assert!(table.len() >= 10, "{vendor}: at least 10 broken requests");
    refuse_each(sb, vendor, table).await;
    // Nothing refused was held.
    let vendor = vendor.trim_end_matches("-v3");
    assert!(sb.sandbox.codes(vendor).is_empty(), "{vendor} holds a refused code");
}

/// [`refuse_all`]'s checks of each refusal, for calls after create (which hold nothing new).
async fn refuse_each(sb: &Running, vendor: &str, table: Vec<Broken>) {
    for case in table {
        let before = sb.sandbox.refusals().len();
        let answer = sb
            .call(case.method, &case.path, &case.auth, case.content_type, &case.body)
            .await;
        let what = format!("{vendor}: {}: {}", case.what, answer.body);
        assert_eq!(answer.status, case.status, "{what}");
        let violations = answer.body["violations"].as_array().unwrap_or_else(|| panic!("{what}"));
        assert!(
            violations.iter().any(|v| v["pointer"] == case.pointer
                && v["rule"] == case.rule
                && v["message"].as_str().unwrap().contains(case.names)),
            "{what}: no violation at {:?} of rule {:?} naming {:?}",
            case.pointer,
            case.rule,
            case.names
        );
        let message = answer.body["message"].as_str().unwrap_or_else(|| panic!("{what}"));
        assert!(message.contains(case.rule), "{what}: the message lists the rule");
        match vendor {
            "spacebring" => assert!(answer.body["type"].is_string(), "{what}: Spacebring's responseError"),
            "loop" => assert!(answer.body["error"].is_string(), "{what}: Loop's {{error, message}}"),
            _ => {}
        }
        let refusals = sb.sandbox.refusals();
        assert_eq!(refusals.len(), before + 1, "{what}: recorded");
        assert_eq!(
            refusals.last().unwrap().vendor,
            if vendor.starts_with("limio") { "limio" } else { vendor }
        );
    }
}

#[tokio::test]
async fn the_documents_examples_are_accepted_with_their_success_answers() {
    let sb = start(unlimited()).await;

    // Partnero: the document's cURL example, as given.
    let partnero = json!({
        "coupon_uuid": "coupon_123", "code": "PROMO123", "first_time_order": true,
        "minimum_order_status": true, "minimum_order_value": 22
    });
    let a = sb
        .post(
            "/partnero/v1/promotion-codes",
            &Auth::Bearer("YOUR_API_KEY".into()),
            &partnero,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], 1);
    assert_eq!(a.body["message"], "Promotion code created in the app successfully.");
    assert_eq!(a.body["data"]["code"], "PROMO123");
    assert_eq!(a.body["data"]["minimum_order_value"], 22);
    assert_eq!(a.body["data"]["first_time_order"], true);
    assert_eq!(a.body["data"]["expiration_date_value"], Value::Null);
    // "auto-generated if not provided"
    let a = sb
        .post(
            "/partnero/v1/promotion-codes",
            &Auth::Bearer("YOUR_API_KEY".into()),
            &json!({ "coupon_uuid": "coupon_123" }),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body["data"]["code"].as_str().unwrap().len() > 4);

    // Moltin: the document's cURL example, at the example promotion.
    let moltin = json!({ "data": { "type": "promotion_codes", "codes": [ {"code":"ZXY_CBA"}, {"code":"ABC_XYZ"} ] } });
    let a = sb
        .post(
            &format!("/moltin/v2/promotions/{PROMOTION}/codes"),
            &Auth::Bearer("XXXX".into()),
            &moltin,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["data"]["type"], "promotion");
    assert_eq!(a.body["data"]["id"], PROMOTION);
    assert_eq!(sb.sandbox.codes("moltin").len(), 2);

    // Loop: the document's example elides the body ("{ ... }"): every property of its schema.
    let loop_ = json!({ "code": "SPRING-20", "percent_off": 20, "valid_until": "2026-04-01T00:00:00Z", "max_redemptions": 500 });
    let a = sb
        .post("/loop/v1/admin/promos", &Auth::Bearer("ACCESS_TOKEN".into()), &loop_)
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    for key in [
        "id",
        "code",
        "active",
        "percent_off",
        "amount_off",
        "currency",
        "expires_at",
        "max_redemptions",
        "times_redeemed",
        "created_at",
    ] {
        assert!(a.body.get(key).is_some(), "Loop's 201 requires {key}: {}", a.body);
    }
    assert_eq!(a.body["expires_at"], "2026-04-01T00:00:00Z");
    assert_eq!(a.body["amount_off"], Value::Null);
    let a = sb
        .post(
            "/loop/v1/admin/promos",
            &Auth::Bearer("ACCESS_TOKEN".into()),
            &json!({ "code": "TEN-OFF", "amount_off": 1000 }),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);

    // Spacebring: no example in the document; its required fields, with Basic and with an
    // OAuth2 bearer and the network id, every conditional enabled.
    let a = sb
        .post(
            "/spacebring/discounts/promocodes/v1",
            &Auth::Basic("key".into(), "secret".into()),
            &spacebring_body("SB-BASIC"),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["promocode"]["code"], "SB-BASIC");
    assert_eq!(a.body["promocode"]["couponRef"], COUPON);
    assert!(uuid_like(a.body["promocode"]["id"].as_str().unwrap()));
    let token = sb.token("spacebring", "sb-client").await;
    let full = json!({ "promocode": {
        "code": "SB-BEARER", "couponRef": COUPON,
        "expiration": { "enabled": true, "date": "2026-04-01T00:00:00Z" },
        "limitByFirstPurchase": true,
        "limitedRedemption": { "enabled": true, "value": 500 }
    } });
    let a = sb
        .post(
            "/spacebring/discounts/promocodes/v1",
            &Auth::BearerNetwork(token, NETWORK.into()),
            &full,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["promocode"]["networkRef"], NETWORK);
    assert_eq!(a.body["promocode"]["expiration"]["date"], "2026-04-01T00:00:00Z");
    assert_eq!(a.body["promocode"]["limitedRedemption"]["value"], 500);

    // Limio: no example either; v2 both application levels and discount types, v3.
    let token = sb.token("limio", "limio-client").await;
    let auth = Auth::Bearer(token);
    let a = sb
        .post("/limio/objects/limio/promo_codes_v2", &auth, &limio_v2_body("SPRING"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], "promo_code_v2-SPRING");
    assert_eq!(a.body["record_type"], "promo_code_v2");
    assert_eq!(a.body["data"]["promoCode"], "SPRING");
    let selected = json!({ "name": "TENNER", "id": "promo_code_v2-TENNER", "data": {
        "applicationLevel": "selectedItems", "referencedOfferLabel": "spring-offer",
        "promoCode": "TENNER", "status": false, "description": "ten off",
        "promoStartDate": "2026-03-01", "promoExpiryDate": "2026-03-31",
        "productDetails": { "product": { "path": "/p" }, "ratePlan": { "path": "/p/r" } },
        "usage": { "availableQuantity": 100 },
        "discount": { "discountType": "DiscountFixedAmount", "amountDiscount": 10.5, "currency": "GBP",
                      "durationLength": 3, "durationType": "Months" }
    } });
    let a = sb.post("/limio/objects/limio/promo_codes_v2", &auth, &selected).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // The same name is a different object in v3.
    let a = sb
        .post("/limio/objects/limio/promo_codes_v3", &auth, &limio_v3_body("SPRING"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["record_type"], "promo_code_v3");

    assert!(sb.sandbox.refusals().is_empty(), "{:#?}", sb.sandbox.refusals());
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
}

#[tokio::test]
async fn spacebring_refuses_each_broken_request_naming_the_violation() {
    let sb = start(unlimited()).await;
    let p = "/spacebring/discounts/promocodes/v1";
    let ok = Auth::Basic("key".into(), "secret".into());
    let b = spacebring_body("SB-1");
    #[rustfmt::skip]
    let table = vec![
        broken("no code", p, &ok, with(&b, "/promocode/code", None), 400, "/promocode", "required").naming("code"),
        broken("no couponRef", p, &ok, with(&b, "/promocode/couponRef", None), 400, "/promocode", "required")
            .naming("couponRef"),
        broken("no expiration", p, &ok, with(&b, "/promocode/expiration", None), 400, "/promocode", "required")
            .naming("expiration"),
        broken("no limitByFirstPurchase", p, &ok, with(&b, "/promocode/limitByFirstPurchase", None), 400, "/promocode", "required")
            .naming("limitByFirstPurchase"),
        broken("no limitedRedemption", p, &ok, with(&b, "/promocode/limitedRedemption", None), 400, "/promocode", "required")
            .naming("limitedRedemption"),
        broken("limitedRedemption without value", p, &ok, with(&b, "/promocode/limitedRedemption/value", None), 400, "/promocode/limitedRedemption", "required")
            .naming("value"),
        broken("expiration without enabled", p, &ok, with(&b, "/promocode/expiration/enabled", None), 400, "/promocode/expiration", "required")
            .naming("enabled"),
        broken("no promocode", p, &ok, json!({}), 400, "", "required").naming("promocode"),
        broken("couponRef not a uuid", p, &ok, with(&b, "/promocode/couponRef", Some(json!("coupon_123"))), 400, "/promocode/couponRef", "format"),
        broken("expiration date not a date-time", p, &ok,
            with(&b, "/promocode/expiration", Some(json!({ "enabled": true, "date": "2026-04-01" }))), 400, "/promocode/expiration/date", "format"),
        broken("enabled expiration without a date", p, &ok,
            with(&b, "/promocode/expiration", Some(json!({ "enabled": true }))), 400, "/promocode/expiration", "required").naming("date"),
        broken("enabled limitedRedemption of 0", p, &ok,
            with(&b, "/promocode/limitedRedemption", Some(json!({ "enabled": true, "value": 0 }))), 400, "/promocode/limitedRedemption/value", "exclusiveMinimum"),
        broken("limitByFirstPurchase a string", p, &ok, with(&b, "/promocode/limitByFirstPurchase", Some(json!("no"))), 400, "/promocode/limitByFirstPurchase", "type"),
        broken("limitedRedemption value a float", p, &ok, with(&b, "/promocode/limitedRedemption/value", Some(json!(1.5))), 400, "/promocode/limitedRedemption/value", "type"),
        broken("empty code", p, &ok, with(&b, "/promocode/code", Some(json!(""))), 400, "/promocode/code", "minLength"),
        broken("undocumented promocode.description", p, &ok, with(&b, "/promocode/description", Some(json!("x"))), 400, "/promocode", "additionalProperties")
            .naming("description"),
        broken("undocumented top-level field", p, &ok, with(&b, "/dryRun", Some(json!(true))), 400, "", "additionalProperties"),
        broken("no Authorization", p, &Auth::None, b.clone(), 401, "header:Authorization", "required"),
        broken("bearer without spacebring-network-id", p, &Auth::Bearer("t".into()), b.clone(), 401, "header:spacebring-network-id", "required"),
        broken("network id not a uuid", p, &Auth::BearerNetwork("t".into(), "network-1".into()), b.clone(), 401, "header:spacebring-network-id", "format"),
        broken("Basic not base64 of key:secret", p, &Auth::Raw("Basic bm9jb2xvbg==".into()), b.clone(), 401, "header:Authorization", "shape"),
        broken("another scheme", p, &Auth::Raw("Token abc".into()), b.clone(), 401, "header:Authorization", "scheme"),
        broken("text/plain", p, &ok, b.clone(), 400, "header:Content-Type", "content-type").content_type(Some("text/plain")),
        broken("PATCH", p, &ok, b.clone(), 405, "method", "method").method("PATCH"),
        broken("unknown path", "/spacebring/discounts/promocodes/v2", &ok, b.clone(), 404, "path", "path"),
    ];
    refuse_all(&sb, "spacebring", table).await;
}

#[tokio::test]
async fn partnero_refuses_each_broken_request_naming_the_violation() {
    let sb = start(unlimited()).await;
    let p = "/partnero/v1/promotion-codes";
    let ok = Auth::Bearer("key".into());
    let b = json!({ "coupon_uuid": "coupon_123", "code": "PROMO123" });
    let on = |flag: &str| with(&b, &format!("/{flag}"), Some(json!(true)));
    #[rustfmt::skip]
    let table = vec![
        broken("no coupon_uuid", p, &ok, with(&b, "/coupon_uuid", None), 422, "", "required").naming("coupon_uuid"),
        broken("coupon_uuid a number", p, &ok, with(&b, "/coupon_uuid", Some(json!(123))), 422, "/coupon_uuid", "type"),
        broken("code with a space", p, &ok, with(&b, "/code", Some(json!("PROMO 1"))), 422, "/code", "pattern"),
        broken("code with a dot", p, &ok, with(&b, "/code", Some(json!("PROMO.1"))), 422, "/code", "pattern"),
        broken("code of 101 characters", p, &ok, with(&b, "/code", Some(json!("A".repeat(101)))), 422, "/code", "maxLength"),
        broken("first_time_order a string", p, &ok, with(&b, "/first_time_order", Some(json!("true"))), 422, "/first_time_order", "type"),
        broken("minimum_order_status without its value", p, &ok, on("minimum_order_status"), 422, "", "required").naming("minimum_order_value"),
        broken("expiration_date_status without its value", p, &ok, on("expiration_date_status"), 422, "", "required").naming("expiration_date_value"),
        broken("redemption_times_status without its value", p, &ok, on("redemption_times_status"), 422, "", "required").naming("redemption_times_value"),
        broken("limit_to_specific_partner without partners", p, &ok, on("limit_to_specific_partner"), 422, "", "required").naming("coupon_specific_partners"),
        broken("limit_to_specific_customer without customers", p, &ok, on("limit_to_specific_customer"), 422, "", "required").naming("coupon_specific_customers"),
        broken("limit_to_specific_subscriber without subscribers", p, &ok, on("limit_to_specific_subscriber"), 422, "", "required").naming("coupon_specific_subscribers"),
        broken("expiration_date_value a date-time", p, &ok,
            with(&with(&b, "/expiration_date_status", Some(json!(true))), "/expiration_date_value", Some(json!("2026-04-01T00:00:00Z"))), 422, "/expiration_date_value", "format"),
        broken("minimum_order_value not an integer", p, &ok, with(&b, "/minimum_order_value", Some(json!(22.5))), 422, "/minimum_order_value", "type"),
        broken("redemption_times_value a string", p, &ok, with(&b, "/redemption_times_value", Some(json!("5"))), 422, "/redemption_times_value", "type"),
        broken("customer without customer_full_name", p, &ok,
            with(&b, "/coupon_specific_customers", Some(json!({ "id": "c1" }))), 422, "/coupon_specific_customers", "required").naming("customer_full_name"),
        broken("partner with an undocumented member", p, &ok,
            with(&b, "/coupon_specific_partners", Some(json!({ "id": "p1", "full_name": "P", "email": "p@x" }))), 422, "/coupon_specific_partners", "additionalProperties"),
        broken("metadata a list", p, &ok, with(&b, "/metadata", Some(json!(["crm"]))), 422, "/metadata", "type"),
        broken("undocumented discount", p, &ok, with(&b, "/discount", Some(json!(20))), 422, "", "additionalProperties").naming("discount"),
        broken("no Authorization", p, &Auth::None, b.clone(), 401, "header:Authorization", "required"),
        broken("Basic instead of Bearer", p, &Auth::Basic("k".into(), "s".into()), b.clone(), 401, "header:Authorization", "scheme"),
        broken("Bearer without a token", p, &Auth::Raw("Bearer ".into()), b.clone(), 401, "header:Authorization", "shape"),
        broken("no Content-Type", p, &ok, b.clone(), 422, "header:Content-Type", "content-type").content_type(None),
        broken("a JSON string, not an object", p, &ok, json!("{"), 422, "", "type"),
    ];
    refuse_all(&sb, "partnero", table).await;
}

#[tokio::test]
async fn moltin_refuses_each_broken_request_naming_the_violation() {
    let sb = start(unlimited()).await;
    let p = format!("/moltin/v2/promotions/{PROMOTION}/codes");
    let ok = Auth::Bearer("token".into());
    let b = json!({ "data": { "type": "promotion_codes", "codes": [ { "code": "ZXY_CBA" } ] } });
    #[rustfmt::skip]
    let table = vec![
        broken("no data", &p, &ok, json!({}), 422, "", "required").naming("data"),
        broken("the table's fields without the example's data wrapper", &p, &ok,
            json!({ "type": "promotion_codes", "codes": [ { "code": "A" } ] }), 422, "", "additionalProperties"),
        broken("no type", &p, &ok, with(&b, "/data/type", None), 422, "/data", "required").naming("type"),
        broken("type promotion", &p, &ok, with(&b, "/data/type", Some(json!("promotion"))), 422, "/data/type", "const"),
        broken("no codes", &p, &ok, with(&b, "/data/codes", None), 422, "/data", "required").naming("codes"),
        broken("codes empty", &p, &ok, with(&b, "/data/codes", Some(json!([]))), 422, "/data/codes", "minItems"),
        broken("codes an object", &p, &ok, with(&b, "/data/codes", Some(json!({ "code": "A" }))), 422, "/data/codes", "type"),
        broken("a code without code", &p, &ok, with(&b, "/data/codes/0", Some(json!({ "uses": 1 }))), 422, "/data/codes/0", "required").naming("code"),
        broken("code a number", &p, &ok, with(&b, "/data/codes/0/code", Some(json!(42))), 422, "/data/codes/0/code", "type"),
        broken("uses a string", &p, &ok, with(&b, "/data/codes/0/uses", Some(json!("5"))), 422, "/data/codes/0/uses", "type"),
        broken("user a number", &p, &ok, with(&b, "/data/codes/0/user", Some(json!(42))), 422, "/data/codes/0/user", "type"),
        broken("undocumented expires on a code", &p, &ok, with(&b, "/data/codes/0/expires", Some(json!("2026-04-01"))), 422, "/data/codes/0", "additionalProperties"),
        broken("no Authorization", &p, &Auth::None, b.clone(), 401, "header:Authorization", "required"),
        broken("Basic", &p, &Auth::Basic("k".into(), "s".into()), b.clone(), 401, "header:Authorization", "scheme"),
        broken("no promotion id", "/moltin/v2/promotions//codes", &ok, b.clone(), 404, "path", "path"),
        broken("form body", &p, &ok, b.clone(), 422, "header:Content-Type", "content-type").content_type(Some("application/x-www-form-urlencoded")),
    ];
    refuse_all(&sb, "moltin", table).await;
}

#[tokio::test]
async fn limio_refuses_each_broken_request_naming_the_violation() {
    let sb = start(unlimited()).await;
    let p = "/limio/objects/limio/promo_codes_v2";
    let ok = Auth::Bearer(sb.token("limio", "client").await);
    let b = limio_v2_body("SPRING");
    let selected = with(&b, "/data/applicationLevel", Some(json!("selectedItems")));
    let fixed = with(
        &b,
        "/data/discount",
        Some(json!({ "discountType": "DiscountFixedAmount", "amountDiscount": 10, "currency": "GBP" })),
    );
    let spacebring_token = sb.token("spacebring", "client").await;
    #[rustfmt::skip]
    let table = vec![
        broken("no name", p, &ok, with(&b, "/name", None), 400, "", "required").naming("name"),
        broken("no id", p, &ok, with(&b, "/id", None), 400, "", "required").naming("id"),
        broken("no data", p, &ok, with(&b, "/data", None), 400, "", "required").naming("data"),
        broken("id without the record type", p, &ok, with(&b, "/id", Some(json!("SPRING"))), 400, "/id", "pattern"),
        broken("id of another name", p, &ok, with(&b, "/id", Some(json!("promo_code_v2-AUTUMN"))), 400, "/id", "record_type-name"),
        broken("no promoCode", p, &ok, with(&b, "/data/promoCode", None), 400, "/data", "required").naming("promoCode"),
        broken("no status", p, &ok, with(&b, "/data/status", None), 400, "/data", "required").naming("status"),
        broken("no productDetails", p, &ok, with(&b, "/data/productDetails", None), 400, "/data", "required").naming("productDetails"),
        broken("no discount", p, &ok, with(&b, "/data/discount", None), 400, "/data", "required").naming("discount"),
        broken("no applicationLevel", p, &ok, with(&b, "/data/applicationLevel", None), 400, "/data", "required").naming("applicationLevel"),
        broken("productDetails without ratePlan", p, &ok, with(&b, "/data/productDetails/ratePlan", None), 400, "/data/productDetails", "required").naming("ratePlan"),
        broken("status a string", p, &ok, with(&b, "/data/status", Some(json!("true"))), 400, "/data/status", "type"),
        broken("applicationLevel not documented", p, &ok, with(&b, "/data/applicationLevel", Some(json!("basket"))), 400, "/data/applicationLevel", "enum"),
        broken("selectedItems without referencedOfferLabel", p, &ok, selected, 400, "/data", "required").naming("referencedOfferLabel"),
        broken("wholeBasket with referencedOfferLabel", p, &ok, with(&b, "/data/referencedOfferLabel", Some(json!("x"))), 400, "/data/referencedOfferLabel", "falseSchema"),
        broken("promoStartDate not a date", p, &ok, with(&b, "/data/promoStartDate", Some(json!("2026/04/01"))), 400, "/data/promoStartDate", "format"),
        broken("promoExpiryDate a date-time", p, &ok, with(&b, "/data/promoExpiryDate", Some(json!("2026-04-01T00:00:00Z"))), 400, "/data/promoExpiryDate", "format"),
        broken("three decimals", p, &ok, with(&b, "/data/discount/percentageDiscount", Some(json!(12.345))), 400, "/data/discount/percentageDiscount", "multipleOf"),
        broken("no discountType", p, &ok, with(&b, "/data/discount/discountType", None), 400, "/data/discount", "required").naming("discountType"),
        broken("a percentage with a currency", p, &ok, with(&b, "/data/discount/currency", Some(json!("GBP"))), 400, "/data/discount/currency", "falseSchema"),
        broken("a fixed amount with a percentage", p, &ok, with(&fixed, "/data/discount/percentageDiscount", Some(json!(5))), 400, "/data/discount/percentageDiscount", "falseSchema"),
        broken("durationType not documented", p, &ok, with(&b, "/data/discount/durationType", Some(json!("Fortnights"))), 400, "/data/discount/durationType", "enum"),
        broken("availableQuantity a string", p, &ok, with(&b, "/data/usage", Some(json!({ "availableQuantity": "10" }))), 400, "/data/usage/availableQuantity", "type"),
        broken("undocumented data.attachedDiscount in v2", p, &ok, with(&b, "/data/attachedDiscount", Some(json!({}))), 400, "/data", "additionalProperties"),
        broken("no Authorization", p, &Auth::None, b.clone(), 401, "header:Authorization", "required"),
        broken("a bearer that is no JWT", p, &Auth::Bearer("opaque".into()), b.clone(), 401, "header:Authorization", "shape"),
        broken("a JWT the sandbox never issued", p, &Auth::Bearer("eyJh.eyJz.c2ln".into()), b.clone(), 401, "header:Authorization", "auth"),
        broken("a token issued for Spacebring", p, &Auth::Bearer(spacebring_token.clone()), b.clone(), 401, "header:Authorization", "auth"),
        broken("Basic", p, &Auth::Basic("k".into(), "s".into()), b.clone(), 401, "header:Authorization", "scheme"),
    ];
    refuse_all(&sb, "limio", table).await;

    let p = "/limio/objects/limio/promo_codes_v3";
    let b = limio_v3_body("SPRING");
    #[rustfmt::skip]
    let table = vec![
        broken("no name", p, &ok, with(&b, "/name", None), 400, "", "required").naming("name"),
        broken("the v2 record type", p, &ok, with(&b, "/id", Some(json!("promo_code_v2-SPRING"))), 400, "/id", "pattern"),
        broken("no promoCode", p, &ok, with(&b, "/data/promoCode", None), 400, "/data", "required").naming("promoCode"),
        broken("no status", p, &ok, with(&b, "/data/status", None), 400, "/data", "required").naming("status"),
        broken("attachedDiscount without path", p, &ok, with(&b, "/data/attachedDiscount/path", None), 400, "/data/attachedDiscount", "required").naming("path"),
        broken("availableQuantity not an integer", p, &ok, with(&b, "/data/usage", Some(json!({ "availableQuantity": 1.5 }))), 400, "/data/usage/availableQuantity", "type"),
        broken("promoExpiryDate a date-time", p, &ok, with(&b, "/data/promoExpiryDate", Some(json!("2026-04-01T00:00:00Z"))), 400, "/data/promoExpiryDate", "format"),
        broken("the v2 inline discount", p, &ok, with(&b, "/data/discount", Some(json!({ "discountType": "DiscountPercentage" }))), 400, "/data", "additionalProperties").naming("discount"),
        broken("name a number", p, &ok, with(&b, "/name", Some(json!(5))), 400, "/name", "type"),
        broken("a token issued for Spacebring", p, &Auth::Bearer(spacebring_token), b.clone(), 401, "header:Authorization", "auth"),
        broken("text/plain", p, &ok, b.clone(), 400, "header:Content-Type", "content-type").content_type(Some("text/plain")),
    ];
    refuse_all(&sb, "limio-v3", table).await;
}

#[tokio::test]
async fn loop_refuses_each_broken_request_naming_the_violation() {
    let sb = start(unlimited()).await;
    let p = "/loop/v1/admin/promos";
    let ok = Auth::Bearer("token".into());
    let b = json!({ "code": "SPRING-20", "percent_off": 20 });
    #[rustfmt::skip]
    let table = vec![
        broken("no code", p, &ok, with(&b, "/code", None), 400, "", "required").naming("code"),
        broken("empty code", p, &ok, with(&b, "/code", Some(json!(""))), 400, "/code", "minLength"),
        broken("code of 51 characters", p, &ok, with(&b, "/code", Some(json!("A".repeat(51)))), 400, "/code", "maxLength"),
        broken("percent_off 0.5", p, &ok, with(&b, "/percent_off", Some(json!(0.5))), 400, "/percent_off", "minimum"),
        broken("percent_off 101", p, &ok, with(&b, "/percent_off", Some(json!(101))), 400, "/percent_off", "maximum"),
        broken("percent_off a string", p, &ok, with(&b, "/percent_off", Some(json!("20"))), 400, "/percent_off", "type"),
        broken("amount_off 0", p, &ok, with(&b, "/amount_off", Some(json!(0))), 400, "/amount_off", "exclusiveMinimum"),
        broken("amount_off in major units", p, &ok, with(&b, "/amount_off", Some(json!(9.99))), 400, "/amount_off", "type"),
        broken("valid_until a date", p, &ok, with(&b, "/valid_until", Some(json!("2026-04-01"))), 400, "/valid_until", "format"),
        broken("max_redemptions 0", p, &ok, with(&b, "/max_redemptions", Some(json!(0))), 400, "/max_redemptions", "exclusiveMinimum"),
        broken("undocumented currency", p, &ok, with(&b, "/currency", Some(json!("USD"))), 400, "", "additionalProperties").naming("currency"),
        broken("no Authorization", p, &Auth::None, b.clone(), 401, "header:Authorization", "required"),
        broken("Basic", p, &Auth::Basic("k".into(), "s".into()), b.clone(), 401, "header:Authorization", "scheme"),
        broken("PUT", p, &ok, b.clone(), 405, "method", "method").method("PUT"),
    ];
    refuse_all(&sb, "loop", table).await;
}

#[tokio::test]
async fn codes_are_held_per_account_and_a_second_one_of_a_name_is_409() {
    let sb = start(unlimited()).await;
    let p = "/loop/v1/admin/promos";
    let body = json!({ "code": "ONCE" });
    let first = sb.post(p, &Auth::Bearer("account-a".into()), &body).await;
    assert_eq!(first.status, 201);
    let again = sb.post(p, &Auth::Bearer("account-a".into()), &body).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["error"], "conflict");
    assert!(again.body["message"].as_str().unwrap().contains("ONCE"));
    // Another account (credential) has a namespace of its own.
    let other = sb.post(p, &Auth::Bearer("account-b".into()), &body).await;
    assert_eq!(other.status, 201);
    // A Moltin batch is all or nothing: one taken code refuses the call, and holds none of it.
    let m = format!("/moltin/v2/promotions/{PROMOTION}/codes");
    let batch = |codes: &[&str]| json!({ "data": { "type": "promotion_codes", "codes": codes.iter().map(|c| json!({ "code": c })).collect::<Vec<_>>() } });
    let auth = Auth::Bearer("m".into());
    assert_eq!(sb.post(&m, &auth, &batch(&["A", "B"])).await.status, 201);
    assert_eq!(sb.post(&m, &auth, &batch(&["C", "B"])).await.status, 409);
    assert_eq!(sb.post(&m, &auth, &batch(&["D", "D"])).await.status, 409);

    let list = reqwest::get(format!("{}/loop/_sandbox/codes", sb.base)).await.unwrap();
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["codes"][0]["code"], "ONCE");
    assert_eq!(list["codes"][0]["request"], body);
    assert_ne!(list["codes"][0]["account"], list["codes"][1]["account"]);
    let list: Value = reqwest::get(format!("{}/moltin/_sandbox/codes", sb.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 2, "{list}");

    let cleared = sb
        .http
        .delete(format!("{}/loop/_sandbox/codes", sb.base))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert!(sb.sandbox.codes("loop").is_empty());
    assert_eq!(sb.sandbox.codes("moltin").len(), 2, "only Loop's were cleared");
    assert_eq!(sb.post(p, &Auth::Bearer("account-a".into()), &body).await.status, 201);
    assert!(sb.sandbox.refusals().is_empty());
}

#[tokio::test]
async fn the_fault_header_makes_an_answer_that_fault() {
    let sb = start(Options {
        rate_limit: None,
        hang: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let url = format!("{}/loop/v1/admin/promos", sb.base);
    let send = |fault: Option<&'static str>, code: &'static str| {
        let mut r = sb
            .http
            .post(&url)
            .header("Authorization", "Bearer t")
            .json(&json!({ "code": code }));
        if let Some(f) = fault {
            r = r.header("x-sandbox-fault", f);
        }
        r.send()
    };
    let r = send(Some("429;retry-after=2"), "F1").await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let r = send(Some("503"), "F1").await.unwrap();
    assert_eq!(r.status(), 503);
    let started = std::time::Instant::now();
    let r = send(Some("timeout"), "F1").await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let e = send(Some("reset"), "F1").await.unwrap_err();
    assert!(!e.is_status(), "{e}");
    let r = send(Some("teapot"), "F1").await.unwrap();
    assert_eq!(r.status(), 400);
    // None of those held the code.
    assert!(sb.sandbox.codes("loop").is_empty());

    // Queued for the next call, for a caller that cannot add the header.
    let queued = sb
        .http
        .post(format!("{}/loop/_sandbox/faults", sb.base))
        .header("x-sandbox-fault", "503;retry-after=7")
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 204);
    let r = send(None, "F1").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    let r = send(None, "F1").await.unwrap();
    assert_eq!(r.status(), 201, "only the next answer");
}

#[tokio::test]
async fn each_vendor_enforces_its_rate_limit_with_429_and_retry_after() {
    let mut options = unlimited();
    options.rate_limit_arg("partnero=2").unwrap();
    assert!(options.rate_limit_arg("nobody=2").is_err());
    assert!(options.rate_limit_arg("0").is_err());
    let sb = start(options).await;
    let p = "/partnero/v1/promotion-codes";
    let auth = Auth::Bearer("t".into());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..3 {
        let a = sb
            .post(p, &auth, &json!({ "coupon_uuid": "c", "code": format!("RL{i}") }))
            .await;
        statuses.push(a.status);
        retry_after = retry_after.or(a.retry_after);
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Other vendors have no limit here.
    for i in 0..5 {
        let a = sb
            .post("/loop/v1/admin/promos", &auth, &json!({ "code": format!("RL{i}") }))
            .await;
        assert_eq!(a.status, 201);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = sb.post(p, &auth, &json!({ "coupon_uuid": "c", "code": "RL9" })).await;
    assert_eq!(a.status, 200, "a new second");
}

#[tokio::test]
async fn the_token_endpoints_follow_rfc_6749() {
    let sb = start(unlimited()).await;
    let url = format!("{}/limio/oauth2/token", sb.base);
    let form = |body: &'static str| {
        sb.http
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    // The client in the form instead of Basic.
    let r = form("grant_type=client_credentials&client_id=a&client_secret=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = form("grant_type=client_credentials").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let r = form("grant_type=password&client_id=a&client_secret=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let r = form("grant_type=refresh_token&refresh_token=rt&client_id=a&client_secret=b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["refresh_token"], "rt");
    // The fixed sandbox token needs no token call.
    let a = sb
        .post(
            "/limio/objects/limio/promo_codes_v3",
            &Auth::Bearer(promo_sandbox::credentials::TOKEN.into()),
            &limio_v3_body("FIXED"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

// Calls after create: shared/vendor-docs/lifecycle/. Each revoke call is judged as a create is
// (method, path, auth, content type, body schema), and changes what the vendor holds.

impl Running {
    async fn codes_listing(&self, vendor: &str) -> Value {
        reqwest::get(format!("{}/{vendor}/_sandbox/codes", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// `broken`, with another method.
#[allow(clippy::too_many_arguments)] // `broken`'s table row, and its method
fn broken_call(
    what: &'static str,
    method: &'static str,
    path: &str,
    auth: &Auth,
    body: Value,
    status: u16,
    pointer: &'static str,
    rule: &'static str,
) -> Broken {
    broken(what, path, auth, body, status, pointer, rule).method(method)
}

/// Every broken request refused, and the code they aimed at still held and live.
async fn refuse_revokes(sb: &Running, vendor: &str, table: Vec<Broken>) {
    assert!(table.len() >= 5, "{vendor}: at least 5 broken requests per call");
    let before = sb.sandbox.codes(vendor);
    assert!(!before.is_empty(), "{vendor}: create the target first");
    refuse_each(sb, vendor, table).await;
    let after = sb.sandbox.codes(vendor);
    assert_eq!(after.len(), before.len(), "{vendor}: a refused call deleted a code");
    assert!(
        after.iter().all(|c| c.revoked.is_none()),
        "{vendor}: a refused call revoked a code"
    );
    assert!(sb.sandbox.deleted(vendor).is_empty());
}

#[tokio::test]
async fn spacebring_archive_is_judged_and_marks_the_code_archived() {
    let sb = start(unlimited()).await;
    let ok = Auth::Basic("key".into(), "secret".into());
    let created = sb
        .post("/spacebring/discounts/promocodes/v1", &ok, &spacebring_body("SB-ARCH"))
        .await;
    let id = created.body["promocode"]["id"].as_str().unwrap().to_owned();
    let p = format!("/spacebring/discounts/promocodes/v1/{id}/archive");
    #[rustfmt::skip]
    let table = vec![
        broken_call("POST", "POST", &p, &ok, Value::Null, 405, "method", "method"),
        broken_call("no Authorization", "PUT", &p, &Auth::None, Value::Null, 401, "header:Authorization", "required"),
        broken_call("bearer without spacebring-network-id", "PUT", &p, &Auth::Bearer("t".into()), Value::Null, 401, "header:spacebring-network-id", "required"),
        broken_call("a field in the body", "PUT", &p, &ok, json!({ "reason": "leaked" }), 400, "", "maxProperties").naming("reason"),
        broken_call("{} as text/plain", "PUT", &p, &ok, json!({}), 400, "header:Content-Type", "content-type").content_type(Some("text/plain")),
        broken_call("a body that is no JSON", "PUT", &p, &ok, json!("{"), 400, "", "type"),
        broken_call("an id that is no segment", "PUT", "/spacebring/discounts/promocodes/v1//archive", &ok, Value::Null, 404, "path", "path"),
    ];
    refuse_revokes(&sb, "spacebring", table).await;

    // §3: no body and no content type, as the reference sends it.
    let a = sb.call("PUT", &p, &ok, None, &Value::Null).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["promocode"]["id"], id.as_str());
    assert_eq!(a.body["promocode"]["code"], "SB-ARCH");
    let archived_at = a.body["promocode"]["archiveDate"].as_str().unwrap().to_owned();
    let listing = sb.codes_listing("spacebring").await;
    assert_eq!(listing["codes"][0]["revoked"]["state"], "archived", "{listing}");
    assert_eq!(listing["codes"][0]["revoked"]["at"], archived_at.as_str());
    // A second archive (undocumented) answers the same object, the first date kept; so does
    // §3's fallback form, `{}` as JSON.
    let again = sb.call("PUT", &p, &ok, Some("application/json"), &json!({})).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["promocode"]["archiveDate"], archived_at.as_str());
    // A code never created, or another account's, is not found.
    let unknown = "/spacebring/discounts/promocodes/v1/5b0e7d42-91c3-4f6a-a1d8-0c2f3e9b7a11/archive";
    let a = sb.call("PUT", unknown, &ok, None, &Value::Null).await;
    assert_eq!(
        (a.status, a.body["type"].as_str()),
        (404, Some("not_found")),
        "{}",
        a.body
    );
    let other = Auth::Basic("other".into(), "secret".into());
    assert_eq!(sb.call("PUT", &p, &other, None, &Value::Null).await.status, 404);
    assert_eq!(
        sb.sandbox.codes("spacebring").len(),
        1,
        "an archived code is still held"
    );
}

#[tokio::test]
async fn partnero_delete_is_judged_and_removes_the_code() {
    let sb = start(unlimited()).await;
    let ok = Auth::Bearer("key".into());
    let create = json!({ "coupon_uuid": "CPN8H2KQ", "code": "RIVERSIDE-15" });
    assert_eq!(sb.post("/partnero/v1/promotion-codes", &ok, &create).await.status, 200);
    let p = "/partnero/v1/promotion-codes";
    // §5's example request body.
    let b = json!({ "code": "RIVERSIDE-15", "coupon": { "uuid_code": "CPN8H2KQ" } });
    #[rustfmt::skip]
    let table = vec![
        broken_call("no code", "DELETE", p, &ok, with(&b, "/code", None), 422, "", "required").naming("code"),
        broken_call("no coupon", "DELETE", p, &ok, with(&b, "/coupon", None), 422, "", "required").naming("coupon"),
        broken_call("uuid_code a number", "DELETE", p, &ok, with(&b, "/coupon/uuid_code", Some(json!(7))), 422, "/coupon/uuid_code", "type"),
        broken_call("create's coupon_uuid instead of coupon", "DELETE", p, &ok,
            json!({ "code": "RIVERSIDE-15", "coupon_uuid": "CPN8H2KQ" }), 422, "", "additionalProperties").naming("coupon_uuid"),
        broken_call("update's redeem", "DELETE", p, &ok, with(&b, "/redeem", Some(json!(true))), 422, "", "additionalProperties").naming("redeem"),
        broken_call("code with a space", "DELETE", p, &ok, with(&b, "/code", Some(json!("RIVER SIDE"))), 422, "/code", "pattern"),
        broken_call("Basic", "DELETE", p, &Auth::Basic("k".into(), "s".into()), b.clone(), 401, "header:Authorization", "scheme"),
        broken_call("no Content-Type", "DELETE", p, &ok, b.clone(), 422, "header:Content-Type", "content-type").content_type(None),
        broken_call("no body", "DELETE", p, &ok, Value::Null, 422, "", "json"),
        broken_call("PATCH", "PATCH", p, &ok, b.clone(), 405, "method", "method"),
    ];
    refuse_revokes(&sb, "partnero", table).await;

    // Another coupon's code of that name is not this one (the pair names it).
    let elsewhere = with(&b, "/coupon/uuid_code", Some(json!("OTHER")));
    let a = sb.call("DELETE", p, &ok, Some("application/json"), &elsewhere).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let a = sb.call("DELETE", p, &ok, Some("application/json"), &b).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({ "data": { "status": 1, "message": "deleted" } }));
    assert!(sb.sandbox.codes("partnero").is_empty());
    let listing = sb.codes_listing("partnero").await;
    assert_eq!(listing["count"], 0);
    assert_eq!(listing["deleted"][0]["code"], "RIVERSIDE-15", "{listing}");
    assert_eq!(listing["deleted"][0]["revoked"]["state"], "deleted");
    // Gone: a second delete is not found, and the name is free again.
    let a = sb.call("DELETE", p, &ok, Some("application/json"), &b).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(sb.post(p, &ok, &create).await.status, 200);
}

#[tokio::test]
async fn moltin_deletes_are_judged_and_remove_the_codes() {
    let sb = start(unlimited()).await;
    let ok = Auth::Bearer("token".into());
    let codes = format!("/moltin/v2/promotions/{PROMOTION}/codes");
    let create = json!({ "data": { "type": "promotion_codes", "codes": [
        { "code": "HARBOUR10" }, { "code": "HARBOUR11" }, { "code": "HARBOUR12" }, { "code": "HARBOUR 13" }
    ] } });
    assert_eq!(sb.post(&codes, &ok, &create).await.status, 201);
    let one = format!("{codes}/HARBOUR10");
    #[rustfmt::skip]
    let table = vec![
        broken_call("a body", "DELETE", &one, &ok, json!({ "code": "HARBOUR10" }), 422, "", "body"),
        broken_call("no Authorization", "DELETE", &one, &Auth::None, Value::Null, 401, "header:Authorization", "required"),
        broken_call("Basic", "DELETE", &one, &Auth::Basic("k".into(), "s".into()), Value::Null, 401, "header:Authorization", "scheme"),
        broken_call("POST", "POST", &one, &ok, Value::Null, 405, "method", "method"),
        broken_call("GET (no get-one is documented)", "GET", &one, &ok, Value::Null, 405, "method", "method"),
        broken_call("no code", "DELETE", &format!("{codes}/"), &ok, Value::Null, 404, "path", "path"),
    ];
    refuse_revokes(&sb, "moltin", table).await;
    // §6b's example body.
    let b =
        json!({ "data": { "type": "promotion_codes", "codes": [ { "code": "HARBOUR11" }, { "code": "HARBOUR12" } ] } });
    #[rustfmt::skip]
    let table = vec![
        broken_call("no body", "DELETE", &codes, &ok, Value::Null, 422, "", "json"),
        broken_call("codes empty", "DELETE", &codes, &ok, with(&b, "/data/codes", Some(json!([]))), 422, "/data/codes", "minItems"),
        broken_call("type promotion", "DELETE", &codes, &ok, with(&b, "/data/type", Some(json!("promotion"))), 422, "/data/type", "const"),
        broken_call("create's uses on a code", "DELETE", &codes, &ok, with(&b, "/data/codes/0/uses", Some(json!(1))), 422, "/data/codes/0", "additionalProperties"),
        broken_call("code a number", "DELETE", &codes, &ok, with(&b, "/data/codes/0/code", Some(json!(11))), 422, "/data/codes/0/code", "type"),
        broken_call("no data wrapper", "DELETE", &codes, &ok, json!({ "type": "promotion_codes", "codes": [] }), 422, "", "required").naming("data"),
        broken_call("no Authorization", "DELETE", &codes, &Auth::None, b.clone(), 401, "header:Authorization", "required"),
        broken_call("text/plain", "DELETE", &codes, &ok, b.clone(), 422, "header:Content-Type", "content-type").content_type(Some("text/plain")),
    ];
    refuse_revokes(&sb, "moltin", table).await;

    // §6: 204, no body.
    let a = sb.call("DELETE", &one, &ok, None, &Value::Null).await;
    assert_eq!((a.status, a.body.clone()), (204, json!("")));
    let a = sb.call("DELETE", &one, &ok, None, &Value::Null).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.body["errors"][0]["title"], "Not Found");
    assert!(a.body["errors"][0]["detail"].as_str().unwrap().contains("HARBOUR10"));
    // A code percent-encoded in the path is its string.
    let a = sb
        .call("DELETE", &format!("{codes}/HARBOUR%2013"), &ok, None, &Value::Null)
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    // A bulk delete naming a missing code deletes none of them.
    let missing = with(&b, "/data/codes/1/code", Some(json!("HARBOUR10")));
    let a = sb.call("DELETE", &codes, &ok, Some("application/json"), &missing).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(sb.sandbox.codes("moltin").len(), 2);
    let a = sb.call("DELETE", &codes, &ok, Some("application/json"), &b).await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert!(sb.sandbox.codes("moltin").is_empty());
    let deleted: Vec<String> = sb.sandbox.deleted("moltin").into_iter().map(|c| c.code).collect();
    assert_eq!(deleted, ["HARBOUR10", "HARBOUR 13", "HARBOUR11", "HARBOUR12"]);
    // A promotion the account never created codes on is §6's `promotion not found`.
    let a = sb
        .call(
            "DELETE",
            "/moltin/v2/promotions/2d9c4b1e-7a3f-4e55-9b0c-61f2d8e4a907/codes/X",
            &ok,
            None,
            &Value::Null,
        )
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["errors"][0]["detail"], "promotion not found");
}

#[tokio::test]
async fn limio_v2_update_and_delete_are_judged_and_change_the_code() {
    let sb = start(unlimited()).await;
    let ok = Auth::Bearer(sb.token("limio", "client").await);
    let created = limio_v2_body("WINTER20");
    assert_eq!(
        sb.post("/limio/objects/limio/promo_codes_v2", &ok, &created)
            .await
            .status,
        200
    );
    let p = "/limio/objects/limio/promo_codes_v2/promo_code_v2-WINTER20";
    let mut data = created["data"].clone();
    data["status"] = json!(false);
    let b = json!({ "data": data });
    let spacebring_token = sb.token("spacebring", "client").await;
    #[rustfmt::skip]
    let table = vec![
        broken_call("no data", "PUT", p, &ok, json!({}), 400, "", "required").naming("data"),
        broken_call("status a string", "PUT", p, &ok, with(&b, "/data/status", Some(json!("false"))), 400, "/data/status", "type"),
        broken_call("a partial data", "PUT", p, &ok, json!({ "data": { "status": false } }), 400, "/data", "required").naming("promoCode"),
        broken_call("product without its path", "PUT", p, &ok, with(&b, "/data/productDetails/product", Some(json!({}))), 400, "/data/productDetails/product", "required").naming("path"),
        broken_call("the create body as is", "PUT", p, &ok, created.clone(), 400, "", "additionalProperties").naming("id"),
        broken_call("a token issued for Spacebring", "PUT", p, &Auth::Bearer(spacebring_token.clone()), b.clone(), 401, "header:Authorization", "auth"),
        broken_call("PATCH", "PATCH", p, &ok, b.clone(), 405, "method", "method"),
        broken_call("v3 documents no update", "PUT", "/limio/objects/limio/promo_codes_v3/promo_code_v3-WINTER20", &ok, b.clone(), 404, "path", "path"),
    ];
    refuse_revokes(&sb, "limio", table).await;
    #[rustfmt::skip]
    let table = vec![
        broken_call("a body", "DELETE", p, &ok, json!({}), 400, "", "body"),
        broken_call("no Authorization", "DELETE", p, &Auth::None, Value::Null, 401, "header:Authorization", "required"),
        broken_call("Basic", "DELETE", p, &Auth::Basic("k".into(), "s".into()), Value::Null, 401, "header:Authorization", "scheme"),
        broken_call("a bearer that is no JWT", "DELETE", p, &Auth::Bearer("opaque".into()), Value::Null, 401, "header:Authorization", "shape"),
        broken_call("v3 documents no delete", "DELETE", "/limio/objects/limio/promo_codes_v3/promo_code_v3-WINTER20", &ok, Value::Null, 404, "path", "path"),
        broken_call("POST on an object", "POST", p, &ok, Value::Null, 405, "method", "method"),
    ];
    refuse_revokes(&sb, "limio", table).await;

    // §4: the soft revoke.
    let a = sb.call("PUT", p, &ok, Some("application/json"), &b).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], "promo_code_v2-WINTER20");
    assert_eq!(a.body["sort_key"], "object/promo_code_v2");
    assert_eq!(a.body["data"], b["data"]);
    let held = &sb.sandbox.codes("limio")[0];
    let first = held.revoked.clone().expect("deactivated");
    assert_eq!(first.state, "deactivated");
    assert_eq!(held.request["data"]["status"], false);
    let listing = sb.codes_listing("limio").await;
    assert_eq!(listing["codes"][0]["revoked"]["state"], "deactivated", "{listing}");
    // Again: nothing changes. Switched back on: live again.
    assert_eq!(sb.call("PUT", p, &ok, Some("application/json"), &b).await.status, 200);
    assert_eq!(sb.sandbox.codes("limio")[0].revoked, Some(first));
    let on = with(&b, "/data/status", Some(json!(true)));
    assert_eq!(sb.call("PUT", p, &ok, Some("application/json"), &on).await.status, 200);
    assert_eq!(sb.sandbox.codes("limio")[0].revoked, None);
    // Never created: not found.
    let unknown = "/limio/objects/limio/promo_codes_v2/promo_code_v2-SUMMER";
    assert_eq!(
        sb.call("PUT", unknown, &ok, Some("application/json"), &b).await.status,
        404
    );
    assert_eq!(sb.call("DELETE", unknown, &ok, None, &Value::Null).await.status, 404);

    // §5: the hard revoke.
    let a = sb.call("DELETE", p, &ok, None, &Value::Null).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["httpStatusCode"], 200);
    assert_eq!(a.body["attempts"], 1);
    assert!(a.body["requestId"].is_string());
    assert!(sb.sandbox.codes("limio").is_empty());
    assert_eq!(
        sb.sandbox.deleted("limio")[0].revoked.as_ref().unwrap().state,
        "deleted"
    );
    assert_eq!(sb.call("DELETE", p, &ok, None, &Value::Null).await.status, 404);
    assert_eq!(sb.call("PUT", p, &ok, Some("application/json"), &b).await.status, 404);
}

#[tokio::test]
async fn limio_v3_and_loop_document_no_revoke_call() {
    let sb = start(unlimited()).await;
    let limio = Auth::Bearer(promo_sandbox::credentials::TOKEN.into());
    assert_eq!(
        sb.post("/limio/objects/limio/promo_codes_v3", &limio, &limio_v3_body("V3"))
            .await
            .status,
        200
    );
    let loop_ = Auth::Bearer("t".into());
    let created = sb
        .post("/loop/v1/admin/promos", &loop_, &json!({ "code": "LOOP" }))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    for (method, path, auth) in [
        (
            "PUT",
            "/limio/objects/limio/promo_codes_v3/promo_code_v3-V3".to_owned(),
            &limio,
        ),
        (
            "DELETE",
            "/limio/objects/limio/promo_codes_v3/promo_code_v3-V3".to_owned(),
            &limio,
        ),
        ("DELETE", format!("/loop/v1/admin/promos/{id}"), &loop_),
        ("PATCH", format!("/loop/v1/admin/promos/{id}"), &loop_),
    ] {
        let a = sb.call(method, &path, auth, None, &Value::Null).await;
        assert_eq!(a.status, 404, "{method} {path}: {}", a.body);
    }
    // The collection's own path takes only its create.
    let a = sb
        .call("DELETE", "/loop/v1/admin/promos", &loop_, None, &Value::Null)
        .await;
    assert_eq!(a.status, 405);
    assert_eq!(sb.sandbox.codes("limio").len(), 1);
    assert_eq!(sb.sandbox.codes("loop").len(), 1);
}

/// The read calls of the lifecycle documents answer from what is held, in each document's
/// shape and paging, change nothing, and find nothing of another account's or deleted.
#[tokio::test]
async fn the_read_calls_answer_from_what_is_held_with_the_documents_paging() {
    let sb = start(unlimited()).await;

    // Spacebring §1 and §2.
    let sp = Auth::Basic("key".into(), "secret".into());
    let mut ids = Vec::new();
    for code in ["SB-R1", "SB-R2"] {
        let a = sb
            .post("/spacebring/discounts/promocodes/v1", &sp, &spacebring_body(code))
            .await;
        ids.push(a.body["promocode"]["id"].as_str().unwrap().to_owned());
    }
    let one = format!("/spacebring/discounts/promocodes/v1/{}", ids[0]);
    let a = sb.get(&one, &sp).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["promocode"]["code"], "SB-R1");
    assert_eq!(a.body["promocode"]["archiveDate"], Value::Null);
    sb.call("PUT", &format!("{one}/archive"), &sp, None, &Value::Null).await;
    assert!(sb.get(&one, &sp).await.body["promocode"]["archiveDate"].is_string());
    let list = sb
        .get(&format!("/spacebring/discounts/promocodes/v1?couponRef={COUPON}"), &sp)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["promocodes"].as_array().unwrap().len(), 2, "{}", list.body);
    let other_coupon = sb
        .get(
            "/spacebring/discounts/promocodes/v1?couponRef=5b0e7d42-91c3-4f6a-a1d8-0c2f3e9b7a11",
            &sp,
        )
        .await;
    assert_eq!(other_coupon.body["promocodes"], json!([]));
    let unscoped = sb.get("/spacebring/discounts/promocodes/v1", &sp).await;
    assert_eq!(unscoped.status, 400, "{}", unscoped.body);
    assert_eq!(
        sb.get(&one, &Auth::Basic("other".into(), "secret".into())).await.status,
        404
    );

    // Partnero §1 and §2: page numbers until links.next is null.
    let pa = Auth::Bearer("key".into());
    for i in 0..12 {
        let create = json!({ "coupon_uuid": "CPN8H2KQ", "code": format!("PN-{i:02}"), "redemption_times_status": true, "redemption_times_value": 5 });
        assert_eq!(sb.post("/partnero/v1/promotion-codes", &pa, &create).await.status, 200);
    }
    let a = sb.get("/partnero/v1/promotion-codes/PN-03", &pa).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        (a.body["status"].clone(), a.body["data"]["code"].clone()),
        (json!(1), json!("PN-03"))
    );
    assert_eq!(a.body["data"]["coupon"]["uuid_code"], "CPN8H2KQ");
    assert_eq!(a.body["data"]["redemption_times_value"], 5);
    assert_eq!(a.body["data"]["coupon_specific_partners"], json!([]));
    let first = sb.get("/partnero/v1/promotion-codes?limit=10&page=1", &pa).await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 10, "{}", first.body);
    assert!(first.body["links"]["next"].is_string());
    let last = sb.get("/partnero/v1/promotion-codes?limit=10&page=2", &pa).await;
    assert_eq!(last.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(last.body["links"]["next"], Value::Null);
    assert_eq!(
        sb.get("/partnero/v1/promotion-codes?limit=10&page=3", &pa).await.body["data"],
        json!([])
    );
    assert_eq!(sb.get("/partnero/v1/promotion-codes?limit=500", &pa).await.status, 422);
    assert_eq!(sb.get("/partnero/v1/promotion-codes/NOPE", &pa).await.status, 404);

    // Moltin §2: page[limit] and page[offset], codes nested, totals in meta.
    let mo = Auth::Bearer("token".into());
    let codes = format!("/moltin/v2/promotions/{PROMOTION}/codes");
    let create = json!({ "data": { "type": "promotion_codes", "codes": [
        { "code": "HB1", "uses": 5 }, { "code": "HB2" }, { "code": "HB3", "user": "cus_1" }
    ] } });
    assert_eq!(sb.post(&codes, &mo, &create).await.status, 201);
    let page = sb.get(&format!("{codes}?page[limit]=2&page[offset]=0"), &mo).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let listed = page.body["data"][0]["data"]["codes"].as_array().unwrap().clone();
    assert_eq!(
        (listed.len(), page.body["meta"]["results"]["total"].clone()),
        (2, json!(3))
    );
    assert_eq!(
        (listed[0]["uses"].clone(), listed[0]["max_uses"].clone()),
        (json!(5), json!(5))
    );
    let rest = sb.get(&format!("{codes}?page[limit]=2&page[offset]=2"), &mo).await;
    assert_eq!(rest.body["data"][0]["data"]["codes"][0]["user"], "cus_1");
    let unknown = sb
        .get("/moltin/v2/promotions/2d9c4b1e-7a3f-4e55-9b0c-61f2d8e4a907/codes", &mo)
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["errors"][0]["detail"], "promotion not found");

    // Limio v2 §1: the object, with its latest data.
    let li = Auth::Bearer(sb.token("limio", "client").await);
    let created = limio_v2_body("READ20");
    sb.post("/limio/objects/limio/promo_codes_v2", &li, &created).await;
    let p = "/limio/objects/limio/promo_codes_v2/promo_code_v2-READ20";
    let a = sb.get(p, &li).await;
    assert_eq!(
        (a.status, a.body["data"]["status"].clone()),
        (200, json!(true)),
        "{}",
        a.body
    );
    let mut data = created["data"].clone();
    data["status"] = json!(false);
    sb.call("PUT", p, &li, Some("application/json"), &json!({ "data": data }))
        .await;
    assert_eq!(sb.get(p, &li).await.body["data"]["status"], false);
    assert_eq!(
        sb.get("/limio/objects/limio/promo_codes_v3/promo_code_v3-X", &li)
            .await
            .status,
        404
    );

    // Loop §2: the active codes, no paging.
    let lo = Auth::Bearer("t".into());
    for code in ["LP1", "LP2"] {
        sb.post(
            "/loop/v1/admin/promos",
            &lo,
            &json!({ "code": code, "percent_off": 10 }),
        )
        .await;
    }
    let a = sb.get("/loop/v1/admin/promos", &lo).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let promos = a.body["promos"].as_array().unwrap();
    assert_eq!(promos.len(), 2);
    assert!(promos.iter().all(|p| p["active"] == true && p["id"].is_string()));

    // Reads changed nothing.
    assert_eq!(sb.sandbox.codes("partnero").len(), 12);
    assert_eq!(sb.sandbox.codes("moltin").len(), 3);
}
