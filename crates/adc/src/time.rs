//! The few date formats token endpoints use: RFC 3339 (`expireTime`) and AWS's basic ISO 8601.
//!
//! Parsing and formatting go through the `time` crate, which checks the calendar (no
//! `2026-02-31`), bounds offsets to ±23:59 and years to 0000–9999; nothing here does calendar
//! arithmetic by hand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Parses an RFC 3339 timestamp such as `2026-01-01T00:00:00Z` or
/// `2026-01-01T00:00:00.123456+01:00`. `None` when malformed, not a real date, or before 1970
/// (callers turn `None` into a typed error naming the field).
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let parsed = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    let nanos = u128::try_from(parsed.unix_timestamp_nanos()).ok()?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    let subsec = u32::try_from(nanos % 1_000_000_000).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, subsec))
}

/// `t` in UTC (the epoch for times before it, the largest representable date past year 9999).
fn utc(t: SystemTime) -> OffsetDateTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| {
            time::PrimitiveDateTime::MAX
                .assume_offset(UtcOffset::UTC)
                .replace_nanosecond(0)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        })
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
#[cfg(test)]
pub(crate) fn format_rfc3339(t: SystemTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    utc(t).format(format).unwrap_or_default()
}

/// AWS SigV4's `x-amz-date` (`YYYYMMDDTHHMMSSZ`) and date stamp (`YYYYMMDD`).
pub(crate) fn amz_date(t: SystemTime) -> (String, String) {
    let at = utc(t);
    let full = at
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let stamp = full.get(..8).unwrap_or_default().to_owned();
    (full, stamp)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rfc3339_round_trips_and_accepts_offsets_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00Z"),
            Some(at(1_767_225_600))
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T01:00:00+01:00"),
            Some(at(1_767_225_600))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:34:56.5Z"),
            Some(at(1_709_210_096) + Duration::from_millis(500))
        );
        for t in [0, 951_782_400, 1_709_210_096, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&format_rfc3339(at(t))), Some(at(t)));
        }
        for bad in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "yyyy-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Finding 8: impossible dates, offsets past ±23:59 and out-of-range years are refused.
    #[test]
    fn finding_8_rfc3339_refuses_impossible_dates_and_offsets() {
        for bad in [
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+99:99",
            "2026-01-01T00:00:00-23:60",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "12026-01-01T00:00:00Z",
            "+2026-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            parse_rfc3339("2026-01-01T23:59:00+23:59"),
            Some(at(1_767_225_600))
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59Z"),
            Some(at(253_402_300_799))
        );
    }

    #[test]
    fn amz_dates() {
        let (full, stamp) = amz_date(at(1_440_938_160));
        assert_eq!(full, "20150830T123600Z");
        assert_eq!(stamp, "20150830");
        let (full, _) = amz_date(at(u64::MAX / 2));
        assert_eq!(full, "99991231T235959Z");
    }
}
