//! Spacebring: `POST /discounts/promocodes/v1` (shared/vendor-docs/spacebring-create-promocode.md).
//!
//! A promocode attaches to a coupon (`couponRef`, a uuid from the campaign mapping) that grants
//! the discount. The document makes `expiration`, `limitByFirstPurchase` and
//! `limitedRedemption` required, so they are always sent, disabled when the code has no such
//! limit. With bearer (OAuth2) auth the `spacebring-network-id` header is required; the engine
//! refuses to start an OAuth2 Spacebring upstream without one.
//!
//! Revoke: `PUT /discounts/promocodes/v1/{id}/archive` (shared/vendor-docs/lifecycle/spacebring.md
//! §3), keyed by the promocode uuid the create answer gave. Archiving is one-way and the only
//! revoke Spacebring documents; there is no delete (§5).

use serde::{Deserialize, Serialize};

use crate::adapter::{
    check_parent_grants, classify, mapped, Adapter, BuildContext, BuildError, Outcome, Translation, VendorKind,
    VendorRequest, VendorResponse, Warning,
};
use crate::dates::utc_rfc3339;
use crate::model::PromoCode;
use crate::operation::{classify_revoke, RevokeAction, RevokeCall, RevokeOutcome, RevokePlan, RevokeTarget};
use crate::policy::{Field, Support};
use crate::read::{
    classify_read, count, Cursor, ListPlan, Liveness, Page, ReadBack, ReadOutcome, ReadPlan, ReadTarget, Slot,
    VendorCode,
};
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

/// The archive answer, `{ "promocode": <promocode object> }`, as far as it tells success.
#[derive(Debug, Deserialize)]
struct Archived {
    promocode: ArchivedPromocode,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchivedPromocode {
    /// §"The promocode object": "present and non-null `archiveDate`" is archived.
    archive_date: Option<String>,
}

/// The fields a promocode object gives back (§"The promocode object"; the reconcile
/// checklist), where the create body put them: the same names, one level down.
const READ_BACK: &[ReadBack] = &[
    ReadBack {
        field: Field::ExpiresAt,
        sent: Slot::switched("/promocode/expiration/date", "/promocode/expiration/enabled"),
        read: Slot::switched("/expiration/date", "/expiration/enabled"),
    },
    ReadBack {
        field: Field::MaxRedemptions,
        sent: Slot::switched(
            "/promocode/limitedRedemption/value",
            "/promocode/limitedRedemption/enabled",
        ),
        read: Slot::switched("/limitedRedemption/value", "/limitedRedemption/enabled"),
    },
    ReadBack {
        field: Field::FirstTimeOnly,
        sent: Slot::at("/promocode/limitByFirstPurchase"),
        read: Slot::at("/limitByFirstPurchase"),
    },
];

/// A promocode object read back: the client rule of §"The promocode object" ("present and
/// non-null `archiveDate`" is archived, anything else is not).
fn promocode(object: &serde_json::Value) -> Option<VendorCode> {
    let code = object.get("code")?.as_str()?.to_owned();
    let archived = object
        .get("archiveDate")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|d| !d.is_empty());
    Some(VendorCode {
        code,
        vendor_id: object.get("id").and_then(serde_json::Value::as_str).map(str::to_owned),
        liveness: if archived { Liveness::Revoked } else { Liveness::Active },
        redemptions: count(object.pointer("/limitedRedemption/usage")),
        object: object.clone(),
        warnings: Vec::new(),
    })
}

fn network_header(ctx: &BuildContext<'_>) -> Vec<(String, String)> {
    ctx.network_id
        .map(|network| ("spacebring-network-id".to_owned(), network.to_owned()))
        .into_iter()
        .collect()
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
                body: Some(serde_json::to_value(body).expect("serializable")),
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

    /// Archives, whatever the mode: a delete asked for archives instead and says so, as §5's
    /// client rule allows ("archive instead and say so in the result"), since archiving already
    /// makes the code unusable for good. The request has no body and no `Content-Type`, as §3's
    /// reference example sends it; the §3 fallback to `{}` on a 400/415 is left to the caller,
    /// which would see the refusal first.
    fn plan_revoke(
        &self,
        target: &RevokeTarget<'_>,
        delete: bool,
        ctx: &BuildContext<'_>,
    ) -> Result<RevokePlan, BuildError> {
        if !is_uuid(target.vendor_id) {
            return Err(BuildError::Invalid {
                field: "vendor_id".into(),
                rule: format!(
                    "Spacebring identifies a promocode by the uuid its create answered, got `{}`",
                    target.vendor_id
                ),
            });
        }
        let headers = network_header(ctx);
        let warnings = if delete {
            vec![Warning {
                field: "delete".into(),
                message:
                    "cannot delete, archived: Spacebring documents no delete for promocodes, and an archive is one-way"
                        .into(),
            }]
        } else {
            Vec::new()
        };
        let request = VendorRequest {
            method: "PUT",
            path: format!("/discounts/promocodes/v1/{}/archive", target.vendor_id),
            headers,
            body: None,
        };
        Ok(RevokePlan::Call(RevokeCall::one(
            Translation { request, warnings },
            RevokeAction::Archived,
        )))
    }

    /// A `200` is success only with the code's `archiveDate` set (§3 client rules: without it,
    /// the state is to be read back, so it is no documented success). Errors are not documented
    /// for any of these calls; the shared reading classifies them by status, as the "Error
    /// bodies" client rule does.
    fn parse_revoke(&self, call: &RevokeCall, response: &VendorResponse<'_>) -> RevokeOutcome {
        classify_revoke(self.kind(), call, response, |json| {
            json.and_then(|v| serde_json::from_value::<Archived>(v.clone()).ok())
                .and_then(|a| a.promocode.archive_date)
                .is_some_and(|date| !date.is_empty())
        })
    }

    /// Get-one by the uuid the create answered (§1); a code the ledger holds no id for is
    /// looked for in its coupon's list (§2), the only other key Spacebring documents.
    fn plan_read(&self, target: &ReadTarget<'_>, ctx: &BuildContext<'_>) -> Result<ReadPlan, BuildError> {
        let Some(id) = target.vendor_id else {
            return Ok(ReadPlan::Scan);
        };
        if !is_uuid(id) {
            return Err(BuildError::Invalid {
                field: "vendor_id".into(),
                rule: format!("Spacebring identifies a promocode by the uuid its create answered, got `{id}`"),
            });
        }
        Ok(ReadPlan::Get(VendorRequest {
            method: "GET",
            path: format!("/discounts/promocodes/v1/{id}"),
            headers: network_header(ctx),
            body: None,
        }))
    }

    fn parse_read(&self, response: &VendorResponse<'_>) -> ReadOutcome<VendorCode> {
        classify_read(self.kind(), response, |json| promocode(json?.get("promocode")?))
    }

    /// The codes of the campaign's coupon (§2, `couponRef`). The first request carries no
    /// paging parameter; a `nextPageToken` in an answer is followed, as §2's client rule says,
    /// since the pages disagree on whether this list pages at all.
    fn plan_list(&self, after: Option<&Cursor>, ctx: &BuildContext<'_>) -> Result<ListPlan, BuildError> {
        let coupon_ref = mapped(ctx, self.kind(), "coupon_ref", |m| m.coupon_ref.as_ref())?;
        let mut path = format!("/discounts/promocodes/v1?couponRef={}", super::path_segment(coupon_ref));
        if let Some(token) = after {
            path.push_str("&nextPageToken=");
            path.push_str(&super::path_segment(&token.0));
        }
        Ok(ListPlan::Page(VendorRequest {
            method: "GET",
            path,
            headers: network_header(ctx),
            body: None,
        }))
    }

    /// `{promocodes, nextPageToken?}`. A token that comes back unchanged ends the walk with a
    /// warning (§2: "stop and raise an error if the same token comes back twice"); whether the
    /// list holds archived codes is not documented, so the page says that absence proves nothing.
    fn parse_list(&self, after: Option<&Cursor>, response: &VendorResponse<'_>) -> ReadOutcome<Page> {
        classify_read(self.kind(), response, |json| {
            let json = json?;
            let codes = json
                .get("promocodes")?
                .as_array()?
                .iter()
                .map(promocode)
                .collect::<Option<Vec<_>>>()?;
            let token = json
                .get("nextPageToken")
                .and_then(serde_json::Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| Cursor(t.to_owned()));
            let mut warnings = vec![Warning {
                field: "list".into(),
                message: "Spacebring documents neither paging for this list nor whether it holds archived codes: a code it does not list is to be confirmed by id".into(),
            }];
            let next = match token {
                Some(t) if Some(&t) == after => {
                    warnings.push(Warning {
                        field: "list".into(),
                        message: format!("Spacebring gave the page token `{t}` twice; the walk stopped there"),
                    });
                    None
                }
                other => other,
            };
            Some(Page { codes, next, warnings })
        })
    }

    fn read_back(&self) -> &'static [ReadBack] {
        READ_BACK
    }
}
