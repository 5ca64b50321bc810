//! Tenant tiers, their quotas and metering periods.

use serde::Deserialize;
use time::{Date, Month, OffsetDateTime, Time};

/// A tenant's tier, as the seed's gateway sold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// 100 requests per UTC day.
    Free,
    /// 10,000 requests per UTC month.
    Starter,
    /// 100,000 requests per UTC month.
    Pro,
    /// No quota (still metered).
    Enterprise,
}

/// How long a quota counts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
}

impl Tier {
    /// Requests admitted per window; `None` is unlimited.
    pub fn quota(self) -> Option<i64> {
        match self {
            Tier::Free => Some(100),
            Tier::Starter => Some(10_000),
            Tier::Pro => Some(100_000),
            Tier::Enterprise => None,
        }
    }

    /// The window the quota (and the tenant's metering) counts over.
    pub fn window(self) -> Window {
        match self {
            Tier::Free => Window::Day,
            Tier::Starter | Tier::Pro | Tier::Enterprise => Window::Month,
        }
    }

    /// Lower-case name, as in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Starter => "starter",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }
}

/// A metering period: its name (`2026-11-23` or `2026-11`) and when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// `YYYY-MM-DD` for a day, `YYYY-MM` for a month (UTC).
    pub name: String,
    /// The first millisecond after the period, since the Unix epoch.
    pub ends_at_ms: i64,
}

impl Window {
    /// The period holding `at_ms` (milliseconds since the Unix epoch, UTC).
    pub fn period(self, at_ms: i64) -> Period {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let date = at.date();
        let (name, next) = match self {
            Window::Day => (
                format!(
                    "{:04}-{:02}-{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                ),
                date.next_day().unwrap_or(date),
            ),
            Window::Month => {
                let (y, m) = match date.month() {
                    Month::December => (date.year() + 1, Month::January),
                    m => (date.year(), m.next()),
                };
                (
                    format!("{:04}-{:02}", date.year(), u8::from(date.month())),
                    Date::from_calendar_date(y, m, 1).unwrap_or(date),
                )
            }
        };
        let ends_at_ms = i64::try_from(
            next.with_time(Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp_nanos()
                / 1_000_000,
        )
        .unwrap_or(i64::MAX);
        Period { name, ends_at_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_months() {
        // 2026-11-23T23:59:59.999Z and the next millisecond.
        let last = 1_795_478_399_999;
        assert_eq!(Window::Day.period(last).name, "2026-11-23");
        assert_eq!(Window::Day.period(last).ends_at_ms, last + 1);
        assert_eq!(Window::Day.period(last + 1).name, "2026-11-24");
        assert_eq!(Window::Month.period(last).name, "2026-11");
        // December rolls into January of the next year.
        let dec = 1_798_761_599_999; // 2026-12-31T23:59:59.999Z
        assert_eq!(Window::Month.period(dec).name, "2026-12");
        assert_eq!(Window::Month.period(dec).ends_at_ms, dec + 1);
        assert_eq!(Window::Month.period(dec + 1).name, "2027-01");
    }

    #[test]
    fn tiers_match_the_seed() {
        assert_eq!(
            (Tier::Free.quota(), Tier::Free.window()),
            (Some(100), Window::Day)
        );
        assert_eq!(Tier::Starter.quota(), Some(10_000));
        assert_eq!(Tier::Pro.quota(), Some(100_000));
        assert_eq!(Tier::Enterprise.quota(), None);
        assert_eq!(Tier::Pro.window(), Window::Month);
    }
}
