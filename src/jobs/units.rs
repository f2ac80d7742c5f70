//! The quantities a job file and the job commands are written in: durations (`90s`, `30m`,
//! `26h`, `7d`), percentages (`10%`) and rates (`20MiB/s`).

use std::time::Duration;

/// `90s`, `30m`, `1h30m`, `1d2h`, `2w`, `1 hour 30 minutes`, `PT90M`: what people write,
/// and everything coffer prints (`format_duration`). Parsed by jiff's span grammar, in which
/// `m` is minutes and months are `mo`; a day is 24 hours. Months and years are refused:
/// they have no fixed length. (`--keep-within` is the exception: it keeps restic's meaning,
/// where `m` is months; see `retention::Within`.)
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let hint = || format!("{s:?} is not a duration like 90s, 30m, 1h30m, 2d or 1w (m is minutes)");
    // A bare number has no unit: seconds or minutes would both be a guess.
    if t.is_empty() || t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(hint());
    }
    let span: jiff::Span = t.parse().map_err(|_| hint())?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(format!(
            "{s:?}: months and years have no fixed length; give days, e.g. 30d"
        ));
    }
    if span.is_negative() {
        return Err(format!("{s:?}: a duration cannot be negative"));
    }
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| format!("{s:?} is too long"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} is too long"))
}

/// A duration as people write it back: `26h`, `15m`, `1d2h`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// `10%` or `10`: a share between 0 and 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s:?} must be between 0% and 100%"))
    }
}

/// `20MiB/s`, `20M`, `20mib/s`, `500KiB/s`, `800kB/s`, `1G` (the `/s` is optional, case is
/// not significant): bytes per second. A lone `K`, `M` or `G` is binary (KiB, MiB, GiB), as
/// in restic and rclone; `kB`, `MB`, `GB` are decimal.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("/s")
        .or_else(|| t.strip_suffix("/S"))
        .unwrap_or(t);
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 20MiB/s or 20M"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => {
            return Err(format!(
                "{s:?}: the unit must be B, K/KiB, M/MiB, G/GiB, T/TiB, kB, MB, GB or TB"
            ))
        }
    };
    let v = (n * mult).round();
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    match v as u64 {
        0 => Err(format!("{s:?}: a rate must be more than 0")),
        v => Ok(v),
    }
}

/// Byte counts for people: `512 B`, `3.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip_and_refuse_nonsense() {
        assert_eq!(
            parse_duration("26h").unwrap(),
            Duration::from_secs(26 * 3600)
        );
        assert_eq!(
            parse_duration("1w").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(format_duration(Duration::from_secs(26 * 3600)), "1d2h");
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        // What coffer prints, it reads back; compound forms and words too.
        for d in [90, 900, 5400, 26 * 3600, 9 * 86400 + 61] {
            let d = Duration::from_secs(d);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("2 hours").unwrap(),
            Duration::from_secs(7200)
        );
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        for bad in [
            "",
            "h",
            "5",
            "5x",
            "-1h",
            "1mo",
            "1y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("1mo").unwrap_err().contains("30d"));
    }

    #[test]
    fn rates_and_percentages() {
        assert_eq!(parse_rate("20MiB/s").unwrap(), 20 << 20);
        assert_eq!(parse_rate("800kB").unwrap(), 800_000);
        for same in ["20M", "20mib/s", "20MiB", "20m/s", "20 MiB/s"] {
            assert_eq!(parse_rate(same).unwrap(), 20 << 20, "{same}");
        }
        assert_eq!(parse_rate("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_rate("20MB/s").unwrap(), 20_000_000);
        assert!(parse_rate("0MiB/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_percent("10%").unwrap(), 10.0);
        assert!(parse_percent("150%").is_err());
    }
}
