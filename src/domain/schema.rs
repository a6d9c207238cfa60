//! OpenAPI schemas of the adapters' types that domain types carry (`VendorKind`, `Warning`):
//! the adapters crate stays free of utoipa, so their schemas are written here, beside the
//! types that use them. (utoipa in the domain is still on `tests/layers.rs`'s list.)

use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// The vendor API an upstream speaks: a string enum of every adapter kind, taken from the
/// adapters (`VendorKind::ALL`, as they serialize it), so that a new vendor needs no line here.
pub struct VendorKindDoc;

impl VendorKindDoc {
    /// The kinds' names as the adapters serialize them.
    fn names() -> Vec<String> {
        promo_adapters::VendorKind::ALL
            .iter()
            .map(|kind| match serde_json::to_value(kind) {
                Ok(serde_json::Value::String(name)) => name,
                other => unreachable!("a vendor kind serializes as a string, not {other:?}"),
            })
            .collect()
    }
}

impl utoipa::PartialSchema for VendorKindDoc {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("The vendor API an upstream speaks."))
            .enum_values(Some(Self::names()))
            .into()
    }
}

impl ToSchema for VendorKindDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "VendorKind".into()
    }
}

/// A lossy conversion or a dropped field.
#[derive(Serialize, ToSchema)]
#[schema(as = Warning)]
pub struct WarningDoc {
    pub field: String,
    pub message: String,
}
