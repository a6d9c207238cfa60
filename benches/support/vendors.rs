//! Each vendor's documented success answer to a create (status and body, as in
//! shared/vendor-docs/ and tests/common), and the create path it answers on. Shared by the fast
//! upstream (benches/support/upstream.rs) and the translation benchmarks
//! (adapters/benches/translation.rs, which includes this file by path).

use promo_adapters::VendorKind;

/// A documented success answer.
#[derive(Debug, Clone, Copy)]
pub struct Success {
    pub status: u16,
    pub body: &'static str,
}

/// spacebring-create-promocode.md, 201: the promocode created.
pub const SPACEBRING: Success = Success {
    status: 201,
    body: r#"{"promocode":{"id":"8d1c7f2e-4b6a-4f3e-9c1d-2a5b7e9f0c3d","code":"SPRING-20","couponRef":"3f6c2a9e-8b1d-4c5e-9a7f-2d4b6e8c0a1f","createDate":"2026-03-01T10:00:00Z","expiration":{"enabled":false},"limitByFirstPurchase":false,"limitedRedemption":{"enabled":false,"usage":0,"value":0},"networkRef":"9b2f4c1e-6a3d-4e8f-b7c5-1d2e3f4a5b6c"}}"#,
};

/// partnero-create-promotion-code.md, 200: the code in Partnero's success envelope.
pub const PARTNERO: Success = Success {
    status: 200,
    body: r#"{"data":{"code":"SPRING-20","first_time_order":true,"limit_to_specific_partner":false,"coupon_specific_partners":[],"limit_to_specific_customer":false,"coupon_specific_customers":[],"minimum_order_status":true,"minimum_order_value":22,"expiration_date_status":false,"expiration_date_value":null,"redemption_times_status":false,"redemption_times_value":null,"metadata":[],"additional_info":[],"times_redeemed":0},"status":1,"message":"Promotion code created in the app successfully."}"#,
};

/// moltin-create-promotion-codes.md, 201: the promotion the codes joined.
pub const MOLTIN: Success = Success {
    status: 201,
    body: r#"{"data":{"type":"promotion","id":"7005b249-300b-4cf6-964e-e663278af218","name":"Promo #1","description":"Initial Promotion","enabled":true,"promotion_type":"fixed_discount","schema":{"currencies":[{"currency":"USD","amount":900},{"currency":"GBP","amount":1100}]},"start":"2017-11-13T00:00:00Z","end":"2019-11-13T00:00:00Z","created_at":"2018-05-10T15:25:21.164Z","updated_at":"2018-05-10T15:26:18.203Z"}}"#,
};

/// limio-promo-codes-v2-v3.md, 200 `UpdateObjectsResponse` for a v2 promo code.
pub const LIMIO_V2: Success = Success {
    status: 200,
    body: r#"{"id":"promo_code_v2-SPRING-20","name":"SPRING-20","status":"active","record_type":"promo_code_v2","service":"limio","data":{}}"#,
};

/// limio-promo-codes-v2-v3.md, 200 `UpdateObjectsResponse` for a v3 promo code.
pub const LIMIO_V3: Success = Success {
    status: 200,
    body: r#"{"id":"promo_code_v3-SPRING-20","name":"SPRING-20","status":"active","record_type":"promo_code_v3","service":"limio","data":{}}"#,
};

/// loop-create-promo.md, 201: the promo object.
pub const LOOP: Success = Success {
    status: 201,
    body: r#"{"id":"promo_1","code":"SPRING-20","active":true,"percent_off":20,"amount_off":null,"currency":null,"expires_at":null,"max_redemptions":null,"times_redeemed":0,"created_at":"2026-03-01T10:00:00Z"}"#,
};

/// An OAuth2 token endpoint's answer (RFC 6749 §5.1): a bearer token good for an hour.
pub const TOKEN: Success = Success {
    status: 200,
    body: r#"{"access_token":"bench-oauth-token","token_type":"Bearer","expires_in":3600}"#,
};

/// The documented success answer of `kind`.
pub fn success(kind: VendorKind) -> Success {
    match kind {
        VendorKind::Spacebring => SPACEBRING,
        VendorKind::Partnero => PARTNERO,
        VendorKind::Moltin => MOLTIN,
        VendorKind::LimioV2 => LIMIO_V2,
        VendorKind::LimioV3 => LIMIO_V3,
        VendorKind::Loop => LOOP,
    }
}
