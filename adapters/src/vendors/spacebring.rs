//! Spacebring: `POST /discounts/promocodes/v1` (shared/vendor-docs/spacebring-create-promocode.md).
//!
//! A promocode attaches to a coupon (`couponRef`, a uuid from the campaign mapping) that grants
//! the discount. The document makes `expiration`, `limitByFirstPurchase` and
//! `limitedRedemption` required, so they are always sent, disabled when the code has no such
//! limit. With bearer (OAuth2) auth the `spacebring-network-id` header is required; the engine
//! refuses to start an OAuth2 Spacebring upstream without one.

use serde::{Deserialize, Serialize};

use crate::adapter::{
    check_parent_grants, classify, mapped, Adapter, BuildContext, BuildError, Outcome, Translation, VendorKind,
    VendorRequest, VendorResponse,
};
use crate::dates::utc_rfc3339;
use crate::model::PromoCode;
use crate::policy::{Field, Support};
use crate::settings::{AuthScheme, SettingError, Vendor};

pub struct Spacebring;

/// `kind = "spacebring"`: the `network_id` setting (the `spacebring-network-id` header, a uuid,
/// required with a bearer token or OAuth2) and `timezone`.
pub const VENDOR: Vendor = Vendor {
    kind: "spacebring",
    name: "Spacebring",
    takes: &["network_id", "timezone"],
    configure: |s| match (s.network_id, s.auth) {
        (Some(id), _) if !is_uuid(id) => Err(SettingError {
            key: "network_id",
            message: format!("must be a uuid, got `{id}`"),
        }),
        (None, AuthScheme::Bearer | AuthScheme::Oauth2) => Err(SettingError {
            key: "network_id",
            message:
                "required when a Spacebring upstream uses a bearer token or OAuth2 (the spacebring-network-id header)"
                    .into(),
        }),
        _ => Ok(VendorKind::Spacebring),
    },
};

#[derive(Debug, Serialize)]
struct CreatePromocode<'a> {
    promocode: Promocode<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Promocode<'a> {
    code: &'a str,
    coupon_ref: &'a str,
    expiration: Expiration,
    limit_by_first_purchase: bool,
    limited_redemption: LimitedRedemption,
}

#[derive(Debug, Serialize)]
struct Expiration {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
}

#[derive(Debug, Serialize)]
struct LimitedRedemption {
    enabled: bool,
    /// Required even when disabled; 0 then, since it "must be positive when enabled".
    value: u32,
}

#[derive(Debug, Deserialize)]
struct Created {
    promocode: CreatedPromocode,
}

#[derive(Debug, Deserialize)]
struct CreatedPromocode {
    id: String,
}

/// Spacebring documents `couponRef` and the network id as uuids.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Adapter for Spacebring {
    fn kind(&self) -> VendorKind {
        VendorKind::Spacebring
    }

    fn support(&self, field: Field) -> Support {
        match field {
            Field::PercentOff | Field::AmountOff | Field::Duration => Support::Parent,
            Field::ExpiresAt | Field::MaxRedemptions | Field::FirstTimeOnly => Support::Carried,
            _ => Support::NotCarried,
        }
    }

    fn build(&self, code: &PromoCode, _skipped: &[Field], ctx: &BuildContext<'_>) -> Result<Translation, BuildError> {
        let coupon_ref = mapped(ctx, self.kind(), "coupon_ref", |m| m.coupon_ref.as_ref())?;
        if !is_uuid(coupon_ref) {
            return Err(BuildError::Mapping(format!(
                "the campaign mapping's [upstreams.{}].coupon_ref must be a uuid, got `{coupon_ref}`",
                ctx.upstream
            )));
        }
        check_parent_grants(code, ctx, self.kind())?;
        let body = CreatePromocode {
            promocode: Promocode {
                code: &code.code,
                coupon_ref,
                expiration: Expiration {
                    enabled: code.expires_at.is_some(),
                    date: code.expires_at.map(utc_rfc3339),
                },
                limit_by_first_purchase: code.first_time_only,
                limited_redemption: LimitedRedemption {
                    enabled: code.max_redemptions.is_some(),
                    value: code.max_redemptions.unwrap_or(0),
                },
            },
        };
        let mut headers = super::json_headers();
        if let Some(network) = ctx.network_id {
            headers.push(("spacebring-network-id".into(), network.into()));
        }
        Ok(Translation {
            request: VendorRequest {
                method: "POST",
                path: "/discounts/promocodes/v1".into(),
                headers,
                body: serde_json::to_value(body).expect("serializable"),
            },
            warnings: Vec::new(),
        })
    }

    fn passthrough_at(&self) -> &'static str {
        "/promocode"
    }

    fn reserved_keys(&self) -> &'static [&'static str] {
        &[
            "code",
            "couponRef",
            "expiration",
            "limitByFirstPurchase",
            "limitedRedemption",
        ]
    }

    fn parse(&self, _code: &PromoCode, response: &VendorResponse<'_>) -> Outcome {
        classify(self.kind(), response, |v| {
            serde_json::from_value::<Created>(v.clone())
                .ok()
                .map(|c| c.promocode.id)
        })
    }
}
