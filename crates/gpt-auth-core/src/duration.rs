//! nginx time values (`7d`, `1h30m`, `3600`), as nginx's own directives accept them.

/// Parses an nginx time value into seconds: numbers followed by `y` (365 days), `M` (30 days),
/// `w`, `d`, `h`, `m`, `s`, in decreasing order; a trailing bare number is seconds.
pub fn parse_seconds(s: &str) -> Result<u64, &'static str> {
    const UNITS: [(u8, u64); 7] = [
        (b'y', 365 * 86400),
        (b'M', 30 * 86400),
        (b'w', 7 * 86400),
        (b'd', 86400),
        (b'h', 3600),
        (b'm', 60),
        (b's', 1),
    ];
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("empty time value");
    }
    let mut total: u64 = 0;
    let mut last_unit = 0usize; // index into UNITS that the next unit must be at or after
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err("expected a number");
        }
        let n: u64 = s[start..i].parse().map_err(|_| "number too large")?;
        let mult = if i == bytes.len() || bytes[i] == b' ' {
            last_unit = UNITS.len();
            1
        } else {
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == bytes[i]) else {
                return Err("unknown time unit (use y M w d h m s)");
            };
            if pos < last_unit {
                return Err("time units must go from larger to smaller");
            }
            last_unit = pos + 1;
            i += 1;
            UNITS[pos].1
        };
        total =
            n.checked_mul(mult).and_then(|v| total.checked_add(v)).ok_or("time value too large")?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn values() {
        assert_eq!(parse_seconds("3600"), Ok(3600));
        assert_eq!(parse_seconds("7d"), Ok(604800));
        assert_eq!(parse_seconds("1h30m"), Ok(5400));
        assert_eq!(parse_seconds("1h 30m 5"), Ok(5405));
        assert_eq!(parse_seconds("1y"), Ok(365 * 86400));
        assert_eq!(parse_seconds("2M"), Ok(60 * 86400));
        assert_eq!(parse_seconds("0"), Ok(0));
    }

    #[test]
    fn errors() {
        for bad in ["", "d", "5x", "30m1h", "1h1h", "-5", "1.5h", "99999999999999999999"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
        assert!(parse_seconds("18446744073709551615y").is_err());
    }
}
