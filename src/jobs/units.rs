//! The quantities a job file and the job commands are written in: durations (`90s`, `30m`,
//! `26h`, `7d`), percentages (`10%`) and rates (`20MiB/s`).

use std::time::Duration;

/// `90s`, `30m`, `2h`, `1d`, `1w`: a whole number and one unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m or 2h"))?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h, d or w")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
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

/// `20MiB/s`, `500KiB/s`, `1GiB/s`, `800kB/s` (the `/s` is optional): bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("/s");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 20MiB/s"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        _ => {
            return Err(format!(
                "{s:?}: the unit must be B, KiB, MiB, GiB, kB, MB or GB"
            ))
        }
    };
    match n.checked_mul(mult) {
        Some(0) => Err(format!("{s:?}: a rate must be more than 0")),
        Some(v) => Ok(v),
        None => Err(format!("{s:?} is too large")),
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
        for bad in ["", "h", "5", "5x", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_and_percentages() {
        assert_eq!(parse_rate("20MiB/s").unwrap(), 20 << 20);
        assert_eq!(parse_rate("800kB").unwrap(), 800_000);
        assert!(parse_rate("0MiB/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_percent("10%").unwrap(), 10.0);
        assert!(parse_percent("150%").is_err());
    }
}
