//! Money, currencies and percentages: the unified model's numeric types.
//!
//! Amounts travel in integer minor units (cents, yen, fils) so that no float ever decides how
//! much a code gives. Conversions to the decimal major units some vendors take live here, in one
//! place, and always say whether they were exact so the caller can warn.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency that has minor units (so `XAU` and friends are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    inner: iso_currency::Currency,
    exponent: u32,
}

impl Currency {
    /// Parses an upper-case ISO 4217 code. The rule text is what the caller reports.
    pub fn parse(code: &str) -> Result<Self, &'static str> {
        let inner = iso_currency::Currency::from_code(code)
            .ok_or("must be an ISO 4217 currency code such as USD, EUR or JPY")?;
        let exponent = inner
            .exponent()
            .ok_or("must be a currency with minor units (not a metal or fund code)")?;
        Ok(Self {
            inner,
            exponent: u32::from(exponent),
        })
    }

    pub fn code(&self) -> &'static str {
        self.inner.code()
    }

    /// Digits after the decimal point: 0 for JPY, 2 for USD, 3 for KWD.
    pub fn exponent(&self) -> u32 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(|rule| serde::de::Error::custom(format!("`{code}` {rule}")))
    }
}

/// The largest amount, in minor units, a code may carry: 15 digits. Vendors written in
/// JavaScript read every JSON number as a double, exact for integers only up to 2^53 - 1 (16
/// digits), and a vendor that takes decimal major units (Limio's `amountDiscount`) is exact
/// only for decimals of at most 15 significant digits, the precision a double always keeps. So
/// the smallest of those limits bounds every amount, whatever the target: 9,999,999,999,999.99
/// USD is more than any promotion gives.
pub const MAX_AMOUNT: u64 = 999_999_999_999_999;

/// A positive amount in the currency's minor units, at most [`MAX_AMOUNT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Money {
    pub amount: u64,
    pub currency: Currency,
}

impl Money {
    /// Renders the amount in major units (`25.00 USD`) for people reading messages.
    pub fn display_major(&self) -> String {
        let (n, _) = to_major(
            self.amount,
            self.currency.exponent(),
            self.currency.exponent(),
            Round::Down,
        );
        format!("{} {}", format_number(&n, self.currency.exponent()), self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_major())
    }
}

/// Which way a conversion that cannot be exact goes. Callers pick the direction that makes the
/// code give less (a discount rounds down) or ask more (a minimum order rounds up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Down,
    Up,
}

/// Converts `minor` units of a currency with `exponent` decimals to a JSON number in major
/// units with at most `max_decimals` decimals. Returns the number and whether it was exact.
pub fn to_major(minor: u64, exponent: u32, max_decimals: u32, round: Round) -> (serde_json::Number, bool) {
    let drop = exponent.saturating_sub(max_decimals);
    let step = 10u64.pow(drop);
    let kept = match round {
        Round::Down => minor / step,
        Round::Up => minor.div_ceil(step),
    };
    let exact = kept * step == minor;
    let decimals = exponent - drop;
    let scale = 10u64.pow(decimals);
    let (whole, frac) = (kept / scale, kept % scale);
    let number = if frac == 0 {
        serde_json::Number::from(whole)
    } else {
        let text = format!("{whole}.{frac:0width$}", width = decimals as usize);
        // A decimal string with at most a few fraction digits parses to the f64 whose shortest
        // representation is that same string, so the JSON sent is exactly `text`.
        let value: f64 = text.parse().expect("formatted decimal parses");
        serde_json::Number::from_f64(value).expect("finite")
    };
    (number, exact)
}

/// Formats a JSON number with a fixed count of decimals, for messages.
fn format_number(n: &serde_json::Number, decimals: u32) -> String {
    match n.as_f64() {
        Some(v) => format!("{v:.prec$}", prec = decimals as usize),
        None => n.to_string(),
    }
}

/// A percentage off, kept in hundredths of a percent: 0 < p <= 100 with at most 2 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(u32);

impl Percent {
    pub const RULE: &'static str = "must be a number greater than 0 and at most 100, with at most 2 decimals";

    pub fn from_hundredths(h: u32) -> Option<Self> {
        (1..=10_000).contains(&h).then_some(Self(h))
    }

    /// Parses from the JSON number's own text so that `20.1` is read as written, not as the
    /// binary float nearest to it.
    pub fn from_json(n: &serde_json::Number) -> Option<Self> {
        let text = n.to_string();
        if text.contains(['e', 'E', '-']) {
            return None;
        }
        let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
        let frac = frac.trim_end_matches('0');
        if frac.len() > 2 || whole.len() > 3 {
            return None;
        }
        let whole: u32 = whole.parse().ok()?;
        let frac_h: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<2}").parse().ok()?
        };
        Self::from_hundredths(whole * 100 + frac_h)
    }

    pub fn hundredths(self) -> u32 {
        self.0
    }

    /// The percentage as a JSON number with at most `max_decimals` decimals, rounded down (a
    /// vendor that takes fewer decimals gets a smaller discount, never a larger one).
    pub fn to_json(self, max_decimals: u32) -> (serde_json::Number, bool) {
        to_major(u64::from(self.0), 2, max_decimals, Round::Down)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, _) = self.to_json(2);
        write!(f, "{n}%")
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json(2).0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        Percent::from_json(&n).ok_or_else(|| serde::de::Error::custom(format!("percent_off {}", Percent::RULE)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn major(minor: u64, code: &str, max: u32, round: Round) -> (String, bool) {
        let c = Currency::parse(code).unwrap();
        let (n, exact) = to_major(minor, c.exponent(), max, round);
        (n.to_string(), exact)
    }

    #[test]
    fn the_largest_amount_is_exact_in_major_units() {
        assert_eq!(
            major(MAX_AMOUNT, "USD", 2, Round::Down),
            ("9999999999999.99".into(), true)
        );
        assert_eq!(
            major(MAX_AMOUNT, "KWD", 2, Round::Down),
            ("999999999999.99".into(), false)
        );
        assert_eq!(
            major(MAX_AMOUNT, "JPY", 2, Round::Down),
            ("999999999999999".into(), true)
        );
        const { assert!(MAX_AMOUNT < (1 << 53) - 1) };
    }

    #[test]
    fn zero_decimal_currency_stays_whole() {
        assert_eq!(major(500, "JPY", 2, Round::Down), ("500".into(), true));
    }

    #[test]
    fn two_decimal_currency_converts_exactly() {
        assert_eq!(major(1999, "USD", 2, Round::Down), ("19.99".into(), true));
        assert_eq!(major(2500, "USD", 2, Round::Down), ("25".into(), true));
        assert_eq!(major(2505, "EUR", 2, Round::Down), ("25.05".into(), true));
    }

    #[test]
    fn three_decimal_currency_rounds_in_the_callers_direction() {
        assert_eq!(major(1234, "KWD", 3, Round::Down), ("1.234".into(), true));
        assert_eq!(major(1234, "KWD", 2, Round::Down), ("1.23".into(), false));
        assert_eq!(major(1234, "KWD", 2, Round::Up), ("1.24".into(), false));
        assert_eq!(major(1230, "KWD", 2, Round::Down), ("1.23".into(), true));
    }

    #[test]
    fn integer_major_units_round_up_for_minimums() {
        assert_eq!(major(2550, "USD", 0, Round::Up), ("26".into(), false));
        assert_eq!(major(2500, "USD", 0, Round::Up), ("25".into(), true));
    }

    #[test]
    fn currency_rules() {
        assert!(Currency::parse("USD").is_ok());
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("ABC").is_err());
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
    }

    #[test]
    fn percent_parsing_reads_the_written_decimals() {
        let p = |s: &str| Percent::from_json(&serde_json::from_str::<serde_json::Number>(s).unwrap());
        assert_eq!(p("20").unwrap().hundredths(), 2000);
        assert_eq!(p("20.1").unwrap().hundredths(), 2010);
        assert_eq!(p("12.34").unwrap().hundredths(), 1234);
        assert_eq!(p("100").unwrap().hundredths(), 10_000);
        assert_eq!(p("0.01").unwrap().hundredths(), 1);
        assert!(p("0").is_none());
        assert!(p("101").is_none());
        assert!(p("12.345").is_none());
        assert!(p("-5").is_none());
        assert_eq!(p("1e2").unwrap().hundredths(), 10_000);
    }

    #[test]
    fn percent_to_fewer_decimals_rounds_down() {
        let p = Percent::from_hundredths(1255).unwrap();
        assert_eq!(p.to_json(2), (serde_json::Number::from_f64(12.55).unwrap(), true));
        assert_eq!(p.to_json(0), (serde_json::Number::from(12u64), false));
        assert_eq!(p.to_string(), "12.55%");
    }
}
