//! Usage plans, API keys, and the throttle and quota settings Stages and routes share with them.

use crate::{SourceRef, Throttle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Requests per key in a calendar period.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
    /// Requests subtracted from the limit in the first period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The first period ([`QuotaPeriod::index`]): the one the plan was created in. None when
    /// its creation time is unknown (a directory of manifests): then no period is the first,
    /// and `offset` applies to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_period: Option<u64>,
}

impl Quota {
    /// The limit in period `index`: `offset` less in the first period.
    pub fn limit_in(&self, index: u64) -> u64 {
        if self.first_period == Some(index) {
            self.limit.saturating_sub(self.offset)
        } else {
            self.limit
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// UTC calendar periods of a quota.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    /// A day.
    Day,
    /// A week from Monday.
    Week,
    /// A calendar month.
    Month,
}

const DAY: u64 = 86_400;

impl QuotaPeriod {
    /// The number of the UTC period holding `unix_secs`: days since 1970-01-01 for DAY, weeks
    /// from Monday 1969-12-29 for WEEK, months since January 1970 for MONTH.
    pub fn index(self, unix_secs: u64) -> u64 {
        let days = unix_secs / DAY;
        match self {
            QuotaPeriod::Day => days,
            // 1970-01-01 was a Thursday: three days after a Monday.
            QuotaPeriod::Week => (days + 3) / 7,
            QuotaPeriod::Month => {
                let (y, m, _) = civil(days);
                (y - 1970) * 12 + (m - 1)
            }
        }
    }

    /// When period `index` starts, in seconds since the epoch.
    pub fn start(self, index: u64) -> u64 {
        match self {
            QuotaPeriod::Day => index * DAY,
            QuotaPeriod::Week => (index * 7).saturating_sub(3) * DAY,
            QuotaPeriod::Month => days_from_civil(1970 + index / 12, index % 12 + 1) * DAY,
        }
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm, for
/// days after the epoch).
pub fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of the first day of `month` (1-12) of `year` (1970 or later).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (1970 or later), as AWS's GetUsage takes its
/// `startDate` and `endDate`; None for anything else, including a day the month lacks.
pub fn parse_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let first = days_from_civil(year, month);
    let next = if month == 12 {
        days_from_civil(year + 1, 1)
    } else {
        days_from_civil(year, month + 1)
    };
    (first + day - 1 < next).then_some(first + day - 1)
}

/// The `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn format_date(days: u64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Where a Stage reads the API key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    Header,
    /// What an authorizer returns as `usageIdentifierKey`.
    Authorizer,
}

impl ApiKeySource {
    /// Whether this is the default, HEADER.
    pub fn is_header(&self) -> bool {
        *self == ApiKeySource::Header
    }
}

/// A usage plan as the dataplane enforces it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsagePlan {
    /// The UsagePlan object.
    pub source: SourceRef,
    /// The Stages it covers, sorted by Stage.
    pub stages: Vec<PlanStage>,
    /// Per key, across the plan's Stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl UsagePlan {
    /// `namespace/name`, how keys name the plan.
    pub fn key(&self) -> String {
        self.source.key()
    }
}

/// A Stage of a usage plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanStage {
    /// The Stage, as `namespace/name`.
    pub stage: String,
    /// Per-route limits for each key, by route key (`GET /pets/{petId}`, `ANY /files/{proxy+}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_throttles: BTreeMap<String, Throttle>,
}

/// An API key: never its value, only the value's SHA-256. Kept lean (no source reference: a
/// Secret has no status to track), since a gateway may hold 100,000 of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// `$context.identity.apiKeyId`: the Secret's `namespace/name`.
    pub id: String,
    /// SHA-256 of the key's value, lower-case hex.
    pub sha256: String,
    /// The plans it is in (`namespace/name`), at most one per Stage, sorted.
    pub plans: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-03 is a Thursday.
    const THU: u64 = 1_796_256_000;

    #[test]
    fn dates_parse_and_format_as_get_usage_writes_them() {
        assert_eq!(parse_date("2026-12-03"), Some(THU / DAY));
        assert_eq!(format_date(THU / DAY), "2026-12-03");
        assert_eq!(
            parse_date("2024-02-29").map(format_date).as_deref(),
            Some("2024-02-29")
        );
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "1969-12-31",
            "+026-12-03",
            "2026-12-3x",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn periods_are_utc_calendar_days_weeks_from_monday_and_months() {
        assert_eq!(civil(THU / DAY), (2026, 12, 3));
        let day = QuotaPeriod::Day.index(THU + 3600);
        assert_eq!(QuotaPeriod::Day.start(day), THU);
        let week = QuotaPeriod::Week.index(THU);
        // Monday 2026-11-30 00:00 UTC to Sunday 2026-12-06 23:59:59.
        assert_eq!(QuotaPeriod::Week.start(week), THU - 3 * DAY);
        assert_eq!(QuotaPeriod::Week.index(THU + 4 * DAY - 1), week);
        assert_eq!(QuotaPeriod::Week.index(THU + 4 * DAY), week + 1);
        let month = QuotaPeriod::Month.index(THU);
        assert_eq!(month, 56 * 12 + 11);
        assert_eq!(civil(QuotaPeriod::Month.start(month) / DAY), (2026, 12, 1));
        assert_eq!(
            civil(QuotaPeriod::Month.start(month + 1) / DAY),
            (2027, 1, 1)
        );
        // February of a leap year ends on the 29th.
        let feb = QuotaPeriod::Month.index(QuotaPeriod::Month.start(month + 14));
        assert_eq!(civil(QuotaPeriod::Month.start(feb) / DAY), (2028, 2, 1));
        assert_eq!(
            QuotaPeriod::Month.index(QuotaPeriod::Month.start(feb) + 28 * DAY),
            feb
        );
        assert_eq!(
            QuotaPeriod::Month.index(QuotaPeriod::Month.start(feb) + 29 * DAY),
            feb + 1
        );
        assert_eq!(QuotaPeriod::Week.index(0), 0);
        assert_eq!(QuotaPeriod::Month.index(0), 0);
    }

    #[test]
    fn the_offset_applies_to_the_first_period_only() {
        let q = Quota {
            limit: 100,
            period: QuotaPeriod::Month,
            offset: 30,
            first_period: Some(5),
        };
        assert_eq!((q.limit_in(5), q.limit_in(6)), (70, 100));
    }
}
