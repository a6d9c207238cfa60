//! Date-time to date conversions for vendors that only take a calendar date.
//!
//! A date-only field is ambiguous: "expires 2026-04-01" may mean the code stops at the start of
//! that day or at its end, and the day is counted in some time zone. The gateway takes the most
//! generous reading the vendor could apply (an expiry date is valid through the end of that day,
//! a start date from its first instant, both in the upstream's configured time zone) and picks the
//! date so that even under that reading the code never lives longer than the merchant asked.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;

/// A date chosen for a date-only vendor field, and whether it is exactly the asked instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateChoice {
    pub date: NaiveDate,
    pub exact: bool,
}

/// The last day, in `tz`, that ends on or before `expires_at`.
pub fn expiry_date(expires_at: DateTime<FixedOffset>, tz: Tz) -> DateChoice {
    let local = expires_at.with_timezone(&tz);
    let day = local.date_naive();
    let exact = start_of_day(day, tz).is_some_and(|start| start == expires_at);
    DateChoice {
        date: day - Duration::days(1),
        exact,
    }
}

/// The first day, in `tz`, that starts on or after `starts_at`.
pub fn start_date(starts_at: DateTime<FixedOffset>, tz: Tz) -> DateChoice {
    let local = starts_at.with_timezone(&tz);
    let day = local.date_naive();
    let exact = start_of_day(day, tz).is_some_and(|start| start == starts_at);
    DateChoice {
        date: if exact { day } else { day + Duration::days(1) },
        exact,
    }
}

/// For a vendor that takes both dates: the code's life must hold at least one whole day in
/// `tz`, or the start date would come after the expiry date and the vendor would hold a code
/// that can never be redeemed. The rule broken, for `expires_at`, otherwise.
pub fn whole_day_between(
    starts_at: DateTime<FixedOffset>,
    expires_at: DateTime<FixedOffset>,
    tz: Tz,
) -> Result<(), String> {
    let (start, expiry) = (start_date(starts_at, tz).date, expiry_date(expires_at, tz).date);
    if expiry < start {
        return Err(format!(
            "must leave at least one whole day in {tz} after starts_at: this vendor takes dates only, and from {} to {} the code would start on {start} and expire after {expiry}, so it could never be redeemed",
            starts_at.to_rfc3339(),
            expires_at.to_rfc3339()
        ));
    }
    Ok(())
}

/// The first instant of `day` in `tz` (midnight, or the first valid local time on days whose
/// midnight a DST change skips).
fn start_of_day(day: NaiveDate, tz: Tz) -> Option<DateTime<FixedOffset>> {
    (0..=2)
        .filter_map(|h| {
            tz.from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(h, 0, 0)?))
                .earliest()
        })
        .next()
        .map(|t| t.fixed_offset())
}

/// A date-only vendor field filled from `expires_at`, with a warning when the date cuts time
/// off the code's life.
pub fn expiry_field(expires_at: DateTime<FixedOffset>, tz: Tz) -> (String, Option<crate::adapter::Warning>) {
    let c = expiry_date(expires_at, tz);
    let warning = (!c.exact).then(|| crate::adapter::Warning {
        field: "expires_at".into(),
        message: format!(
            "sent as the date {} (the vendor takes a date, read as valid through the end of that day in {tz}); the code ends before {}, never after",
            c.date,
            expires_at.to_rfc3339()
        ),
    });
    (c.date.to_string(), warning)
}

/// A date-only vendor field filled from `starts_at`, with a warning when the code starts later.
pub fn start_field(starts_at: DateTime<FixedOffset>, tz: Tz) -> (String, Option<crate::adapter::Warning>) {
    let c = start_date(starts_at, tz);
    let warning = (!c.exact).then(|| crate::adapter::Warning {
        field: "starts_at".into(),
        message: format!(
            "sent as the date {} (the vendor takes a date, counted from its first instant in {tz}); the code starts after {}, never before",
            c.date,
            starts_at.to_rfc3339()
        ),
    });
    (c.date.to_string(), warning)
}

/// An RFC 3339 date-time in UTC, the form every date-time vendor field here documents.
pub fn utc_rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }
    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_life_of_one_whole_day_is_enough_and_less_is_refused() {
        let tz = Tz::UTC;
        // 1 March 00:00 to 2 March 00:00: exactly the day of 1 March.
        assert_eq!(
            whole_day_between(at("2026-03-01T00:00:00Z"), at("2026-03-02T00:00:00Z"), tz),
            Ok(())
        );
        // Nine hours within one day: the start date (2 March) is after the expiry (28 February).
        let rule = whole_day_between(at("2026-03-01T09:00:00Z"), at("2026-03-01T18:00:00Z"), tz).unwrap_err();
        assert!(
            rule.contains("start on 2026-03-02 and expire after 2026-02-28"),
            "{rule}"
        );
        // 23 hours across midnight hold no whole day either.
        assert!(whole_day_between(at("2026-03-01T01:00:00Z"), at("2026-03-02T00:00:00Z"), tz).is_err());
    }

    #[test]
    fn expiry_at_utc_midnight_is_the_previous_day_exactly() {
        let c = expiry_date(at("2026-04-01T00:00:00Z"), Tz::UTC);
        assert_eq!(
            c,
            DateChoice {
                date: d("2026-03-31"),
                exact: true
            }
        );
    }

    #[test]
    fn expiry_mid_day_rounds_to_the_shorter_validity() {
        let c = expiry_date(at("2026-04-01T15:30:00Z"), Tz::UTC);
        assert_eq!(
            c,
            DateChoice {
                date: d("2026-03-31"),
                exact: false
            }
        );
    }

    #[test]
    fn expiry_counts_the_day_in_the_upstreams_zone() {
        // 23:30 UTC on 31 March is already 1 April in Berlin (CEST, +02:00): the last Berlin
        // day that ends before it is 31 March.
        let c = expiry_date(at("2026-03-31T23:30:00Z"), chrono_tz::Europe::Berlin);
        assert_eq!(
            c,
            DateChoice {
                date: d("2026-03-31"),
                exact: false
            }
        );
        // The same instant in UTC: 31 March has not ended, so the date is 30 March.
        let c = expiry_date(at("2026-03-31T23:30:00Z"), Tz::UTC);
        assert_eq!(c.date, d("2026-03-30"));
        // Berlin midnight given with its own offset is exact in Berlin.
        let c = expiry_date(at("2026-04-01T00:00:00+02:00"), chrono_tz::Europe::Berlin);
        assert_eq!(
            c,
            DateChoice {
                date: d("2026-03-31"),
                exact: true
            }
        );
        // New York is behind UTC: UTC midnight there is 20:00 the day before.
        let c = expiry_date(at("2026-04-01T00:00:00Z"), chrono_tz::America::New_York);
        assert_eq!(
            c,
            DateChoice {
                date: d("2026-03-30"),
                exact: false
            }
        );
    }

    #[test]
    fn start_rounds_forward_unless_at_midnight() {
        assert_eq!(
            start_date(at("2026-03-01T00:00:00Z"), Tz::UTC),
            DateChoice {
                date: d("2026-03-01"),
                exact: true
            }
        );
        assert_eq!(
            start_date(at("2026-03-01T00:00:01Z"), Tz::UTC),
            DateChoice {
                date: d("2026-03-02"),
                exact: false
            }
        );
        // 22:00 UTC on 28 Feb is 23:00 on 28 Feb in Berlin (CET): the code starts on 1 March.
        assert_eq!(
            start_date(at("2026-02-28T22:00:00Z"), chrono_tz::Europe::Berlin),
            DateChoice {
                date: d("2026-03-01"),
                exact: false
            }
        );
        // 23:00 UTC on 28 Feb is Berlin midnight on 1 March: exact.
        assert_eq!(
            start_date(at("2026-02-28T23:00:00Z"), chrono_tz::Europe::Berlin),
            DateChoice {
                date: d("2026-03-01"),
                exact: true
            }
        );
    }
}
