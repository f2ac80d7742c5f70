//! When a job's steps are due: `every 6h`, `hourly`, `daily 02:30`, `weekly`, `weekly sun 03:00`,
//! `never`. Calendar schedules are in the local time zone (TZ); every decision is a pure
//! function of the last run and "now", so tests drive it with a fixed clock.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Schedule {
    /// At most once per interval, measured from the last run.
    Every(Duration),
    /// Once a day at a local time.
    Daily(Time),
    /// Once a week on a day at a local time.
    Weekly(Weekday, Time),
    /// Once an hour at a minute past.
    Hourly(i8),
    /// Only when asked for by name (`coffer drill JOB`, `coffer run JOB --force`).
    Never,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let bad = || {
            format!(
                "{s:?} is not a schedule; use \"every 6h\", \"hourly\", \"daily 02:30\", \
                 \"weekly\", \"weekly sun 03:00\" or \"never\""
            )
        };
        let time = |w: Option<&&str>| -> Result<Time, String> {
            let Some(w) = w else {
                return Ok(Time::midnight());
            };
            let (h, m) = w.split_once(':').ok_or_else(bad)?;
            let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            Time::new(h, m, 0, 0).map_err(|_| format!("{w:?} is not a time of day (HH:MM)"))
        };
        Ok(match words.as_slice() {
            ["every", d] => {
                let d = super::units::parse_duration(d)?;
                if d.is_zero() {
                    return Err(format!("{s:?}: the interval must be more than 0"));
                }
                Schedule::Every(d)
            }
            ["hourly"] => Schedule::Hourly(0),
            ["hourly", m] => {
                let m = m.trim_start_matches(':');
                match m.parse::<i8>() {
                    Ok(m) if (0..60).contains(&m) => Schedule::Hourly(m),
                    _ => return Err(bad()),
                }
            }
            ["daily", rest @ ..] if rest.len() <= 1 => Schedule::Daily(time(rest.first())?),
            ["weekly"] => Schedule::Weekly(Weekday::Sunday, Time::midnight()),
            ["weekly", day, rest @ ..] if rest.len() <= 1 => {
                Schedule::Weekly(weekday(day).ok_or_else(bad)?, time(rest.first())?)
            }
            ["never"] | ["manual"] => Schedule::Never,
            _ => return Err(bad()),
        })
    }

    /// The newest scheduled instant at or before `now` (ns). For `every`, there is none:
    /// the interval counts from the last run.
    fn latest_slot(&self, now: &Zoned) -> Option<Zoned> {
        let at = |t: Time| {
            now.date()
                .to_datetime(t)
                .to_zoned(now.time_zone().clone())
                .ok()
        };
        match self {
            Schedule::Every(_) | Schedule::Never => None,
            Schedule::Hourly(m) => {
                let t = Time::new(now.hour(), *m, 0, 0).ok()?;
                let slot = at(t)?;
                if slot <= *now {
                    Some(slot)
                } else {
                    slot.checked_sub(1.hour()).ok()
                }
            }
            Schedule::Daily(t) => {
                let slot = at(*t)?;
                if slot <= *now {
                    Some(slot)
                } else {
                    slot.checked_sub(1.day()).ok()
                }
            }
            Schedule::Weekly(day, t) => {
                let back =
                    (now.weekday().to_monday_zero_offset() - day.to_monday_zero_offset() + 7) % 7;
                let slot = at(*t)?.checked_sub((back as i64).days()).ok()?;
                if slot <= *now {
                    Some(slot)
                } else {
                    slot.checked_sub(1.week()).ok()
                }
            }
        }
    }

    /// Is a step with this schedule, last run at `last_ns` (if ever), due at `now_ns`?
    /// A step that never ran is due at once (except `never`).
    pub fn is_due(&self, last_ns: Option<i64>, now_ns: i64, tz: &TimeZone) -> bool {
        if *self == Schedule::Never {
            return false;
        }
        let Some(last) = last_ns else {
            return true;
        };
        self.next_due(Some(last), now_ns, tz)
            .is_some_and(|next| next <= now_ns)
    }

    /// When the step is next due (ns), given its last run; `None` for `never`. A step that is
    /// overdue answers a time at or before now.
    pub fn next_due(&self, last_ns: Option<i64>, now_ns: i64, tz: &TimeZone) -> Option<i64> {
        let Some(last) = last_ns else {
            return (*self != Schedule::Never).then_some(now_ns);
        };
        if let Schedule::Every(d) = self {
            return Some(last.saturating_add(d.as_nanos().min(i64::MAX as u128) as i64));
        }
        let now = zoned(now_ns, tz)?;
        let slot = self.latest_slot(&now)?;
        let slot_ns = nanos(&slot);
        if last < slot_ns {
            return Some(slot_ns);
        }
        // Ran since the latest slot: the next slot is one period on.
        let next = match self {
            Schedule::Hourly(_) => slot.checked_add(1.hour()),
            Schedule::Daily(_) => slot.checked_add(1.day()),
            Schedule::Weekly(..) => slot.checked_add(1.week()),
            Schedule::Every(_) | Schedule::Never => return None,
        };
        next.ok().map(|z| nanos(&z))
    }

    /// The longest time between two scheduled runs: the least RPO this schedule can meet.
    pub fn period(&self) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(*d),
            Schedule::Hourly(_) => Some(Duration::from_secs(3600)),
            Schedule::Daily(_) => Some(Duration::from_secs(86400)),
            Schedule::Weekly(..) => Some(Duration::from_secs(7 * 86400)),
            Schedule::Never => None,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |t: &Time| format!("{:02}:{:02}", t.hour(), t.minute());
        match self {
            Schedule::Every(d) => write!(f, "every {}", super::units::format_duration(*d)),
            Schedule::Hourly(m) => write!(f, "hourly :{m:02}"),
            Schedule::Daily(t) => write!(f, "daily {}", hm(t)),
            Schedule::Weekly(d, t) => write!(f, "weekly {} {}", weekday_name(*d), hm(t)),
            Schedule::Never => f.write_str("never"),
        }
    }
}

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Schedule::parse(&s)
    }
}

/// `sun`, `sunday`, `Sun`: at least the first three letters of an English day name.
fn weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ]
    .into_iter()
    .find(|d| s.len() >= 3 && format!("{d:?}").to_ascii_lowercase().starts_with(&s))
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

fn zoned(ns: i64, tz: &TimeZone) -> Option<Zoned> {
    Timestamp::from_nanosecond(ns as i128)
        .ok()
        .map(|t| t.to_zoned(tz.clone()))
}

fn nanos(z: &Zoned) -> i64 {
    z.timestamp().as_nanosecond() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_nanosecond() as i64
    }

    #[test]
    fn parses_the_documented_forms_and_refuses_others() {
        assert_eq!(
            Schedule::parse("every 6h").unwrap(),
            Schedule::Every(Duration::from_secs(6 * 3600))
        );
        assert_eq!(
            Schedule::parse("daily 02:30").unwrap(),
            Schedule::Daily(Time::new(2, 30, 0, 0).unwrap())
        );
        assert_eq!(
            Schedule::parse("weekly sunday 03:00").unwrap(),
            Schedule::Weekly(Weekday::Sunday, Time::new(3, 0, 0, 0).unwrap())
        );
        assert_eq!(
            Schedule::parse("daily 02:30").unwrap().to_string(),
            "daily 02:30"
        );
        for bad in [
            "",
            "daily 25:00",
            "every",
            "every 0h",
            "weekly funday",
            "sometimes",
            "daily 2",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn daily_is_due_once_per_day_after_its_time() {
        let tz = TimeZone::UTC;
        let s = Schedule::parse("daily 02:30").unwrap();
        let ran = t("2026-11-26T02:31:00Z");
        assert!(!s.is_due(Some(ran), t("2026-11-27T02:29:00Z"), &tz));
        assert!(s.is_due(Some(ran), t("2026-11-27T02:30:00Z"), &tz));
        assert_eq!(
            s.next_due(
                Some(t("2026-11-27T02:30:05Z")),
                t("2026-11-27T09:00:00Z"),
                &tz
            ),
            Some(t("2026-11-28T02:30:00Z"))
        );
        // A missed night is due as soon as anything runs.
        assert!(s.is_due(Some(ran), t("2026-11-28T17:00:00Z"), &tz));
        assert!(s.is_due(None, t("2026-11-28T17:00:00Z"), &tz));
    }

    #[test]
    fn intervals_weeks_hours_and_never() {
        let tz = TimeZone::UTC;
        let every = Schedule::parse("every 6h").unwrap();
        assert!(!every.is_due(
            Some(t("2026-11-27T00:00:00Z")),
            t("2026-11-27T05:59:59Z"),
            &tz
        ));
        assert!(every.is_due(
            Some(t("2026-11-27T00:00:00Z")),
            t("2026-11-27T06:00:00Z"),
            &tz
        ));
        // 2026-11-29 is a Sunday.
        let weekly = Schedule::parse("weekly sun 03:00").unwrap();
        assert!(!weekly.is_due(
            Some(t("2026-11-22T04:00:00Z")),
            t("2026-11-29T02:00:00Z"),
            &tz
        ));
        assert!(weekly.is_due(
            Some(t("2026-11-22T04:00:00Z")),
            t("2026-11-29T03:00:00Z"),
            &tz
        ));
        let hourly = Schedule::parse("hourly :15").unwrap();
        assert!(!hourly.is_due(
            Some(t("2026-11-27T10:16:00Z")),
            t("2026-11-27T11:14:00Z"),
            &tz
        ));
        assert!(hourly.is_due(
            Some(t("2026-11-27T10:16:00Z")),
            t("2026-11-27T11:15:00Z"),
            &tz
        ));
        assert!(!Schedule::Never.is_due(None, t("2026-11-27T10:00:00Z"), &tz));
    }
}
