//! The `kubernetes.io/ingress-bandwidth` / `egress-bandwidth` pod annotations: a Kubernetes
//! quantity in bits per second, checked to lie within 1k..=1P as the kubelet's bandwidth
//! plugin does.

use crate::error::NetError;

const MIN_BITS: u128 = 1_000;
const MAX_BITS: u128 = 1_000_000_000_000_000;

/// Parses a bandwidth annotation (`10M`, `1G`, `100k`, `1Mi`, `2.5M`, `1e6`) into bits/s,
/// rounding fractions up like `Quantity.Value()`.
pub fn parse_bandwidth_annotation(s: &str) -> Result<u64, NetError> {
    let err = |reason| NetError::InvalidBandwidth {
        value: s.into(),
        reason,
    };
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(err("not a number"));
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(err("too many digits"));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err("not a number"))?
    };
    let (pow10, pow2): (i64, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("invalid exponent"));
            }
            (exp.parse().map_err(|_| err("invalid exponent"))?, 0)
        }
        _ => {
            return Err(err(
                "unknown suffix (want k, M, G, T, P, E, Ki..Ei or e<n>)",
            ));
        }
    };
    let too_large = || err("unreasonably large (> 1Pbit)");
    let scale = i64::try_from(frac.len()).map_err(|_| err("too many digits"))?;
    let exp10 = pow10 - scale;
    let mut value = mantissa.checked_mul(1u128 << pow2).ok_or_else(too_large)?;
    if value != 0 {
        let power = |e: i64| u32::try_from(e).ok().and_then(|e| 10u128.checked_pow(e));
        if exp10 >= 0 {
            value = power(exp10)
                .and_then(|p| value.checked_mul(p))
                .ok_or_else(too_large)?;
        } else {
            // Fractions round up: anything positive below one becomes 1.
            value = power(-exp10).map_or(1, |p| value.div_ceil(p));
        }
    }
    if negative && value != 0 || value < MIN_BITS {
        return Err(err("unreasonably small (< 1kbit)"));
    }
    if value > MAX_BITS {
        return Err(too_large());
    }
    u64::try_from(value).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for (s, want) in [
            ("10M", 10_000_000),
            ("1G", 1_000_000_000),
            ("100k", 100_000),
            ("1Mi", 1_048_576),
            ("1Ki", 1_024),
            ("2.5M", 2_500_000),
            ("1e6", 1_000_000),
            ("1E+3", 1_000),
            ("+5000", 5_000),
            ("1000", 1_000),
            ("1000500m", 1_001),
            ("1P", 1_000_000_000_000_000),
            (".5M", 500_000),
            ("1.5Ki", 1_536),
            ("1000.0001", 1_001),
        ] {
            assert_eq!(parse_bandwidth_annotation(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn invalid_or_unreasonable() {
        for (s, why) in [
            ("", "not a number"),
            ("M", "not a number"),
            ("1..2M", "not a number"),
            ("10X", "unknown suffix"),
            ("10K", "unknown suffix"),
            ("10 M", "unknown suffix"),
            ("1e", "invalid exponent"),
            ("1e3.5", "invalid exponent"),
            ("999", "unreasonably small"),
            ("0", "unreasonably small"),
            ("-10M", "unreasonably small"),
            ("1m", "unreasonably small"),
            ("2P", "unreasonably large"),
            ("1Ei", "unreasonably large"),
            ("1e40", "unreasonably large"),
            ("1e-400", "unreasonably small"),
        ] {
            let e = parse_bandwidth_annotation(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }
}
