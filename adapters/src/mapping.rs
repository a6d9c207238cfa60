//! Campaign mapping files: `mappings/<campaign>.toml`.
//!
//! Most vendors attach a code to a parent object that grants the discount (a Partnero coupon, a
//! Spacebring coupon, a Moltin promotion, a Limio catalog discount). The merchant creates those
//! parents once, per vendor; the mapping file records which parent a campaign uses on each
//! upstream and what discount that parent grants, so the gateway can refuse a code whose
//! discount contradicts its parent instead of creating a code that gives something else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Discount, DiscountDuration};

/// One campaign file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// For people reading the file.
    #[serde(default)]
    pub description: Option<String>,
    /// Keyed by upstream instance name (the `[upstreams.NAME]` of config.toml). The keys are the
    /// campaign's default targets.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamMapping>,
}

/// What a campaign maps to on one upstream. Each adapter reads only its own keys and names the
/// missing one when it needs it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamMapping {
    /// The discount the parent object grants (Spacebring, Partnero, Moltin, Limio v3). A code
    /// whose discount differs is refused for this upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Discount>,
    /// The duration the parent object grants, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DiscountDuration>,
    /// Partnero: the coupon the code attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_uuid: Option<String>,
    /// Spacebring: the coupon the code attaches to (a uuid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_ref: Option<String>,
    /// Moltin: the promotion the code attaches to. It is a segment of the URL path
    /// (`/v2/promotions/{promotion_id}/codes`), so it must pass
    /// [`crate::vendors::check_path_segment`]: read here, so that start-up and `check-config`
    /// refuse the file naming the key, instead of a call going to another path.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "path_segment_id"
    )]
    pub promotion_id: Option<String>,
    /// Limio v2: path of the Limio product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_path: Option<String>,
    /// Limio v2: path of the rate plan within that product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_plan_path: Option<String>,
    /// Limio v2: whole basket, or the selected items of one offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_level: Option<ApplicationLevel>,
    /// Limio v2: the `label__limio` of the offer, required with `selected_items`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referenced_offer_label: Option<String>,
    /// Limio v3: the catalog discount the code attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_discount: Option<AttachedDiscount>,
}

/// An id that becomes a URL path segment (see [`crate::vendors::check_path_segment`]).
fn path_segment_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let id = String::deserialize(d)?;
    match crate::vendors::check_path_segment(&id) {
        Ok(()) => Ok(Some(id)),
        Err(rule) => Err(serde::de::Error::custom(format!("{rule} (got `{id}`)"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationLevel {
    WholeBasket,
    SelectedItems,
}

/// Limio v3's reference to a discount catalog item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttachedDiscount {
    pub id: String,
    pub path: String,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_campaign_parses_and_maps_all_six_targets() {
        let text = include_str!("../../mappings/example.toml");
        let c: Campaign = toml::from_str(text).unwrap();
        let names: Vec<&str> = c.upstreams.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["limio-v2", "limio-v3", "loop", "moltin", "partnero", "spacebring"]
        );
    }

    #[test]
    fn a_promotion_id_that_is_no_path_segment_is_refused() {
        for id in ["", ".", ".."] {
            let text = format!("[upstreams.moltin]\npromotion_id = \"{id}\"\n");
            let err = toml::from_str::<Campaign>(&text).unwrap_err().to_string();
            assert!(err.contains("promotion_id") && err.contains("path segment"), "{err}");
        }
        let ok: Campaign = toml::from_str("[upstreams.moltin]\npromotion_id = \"...\"\n").unwrap();
        assert_eq!(ok.upstreams["moltin"].promotion_id.as_deref(), Some("..."));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Campaign>("[upstreams.partnero]\ncoupon_uid = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("coupon_uid"), "{err}");
    }
}
