//! Checks on the text of a JSON body that its parsed values cannot show.
//!
//! serde_json reads a number too small for a double (`1e-400`) as `0.0`, without error: a
//! delete of `{"id": 1e-400}` deleted id 0, a predicate `eq 1e-400` matched the zeros. Once
//! parsed, `0.0` and `1e-400` are the same value, so the text is checked before it is parsed:
//! a nonzero number that reads as zero does not fit any column and is refused.
//!
//! Two parsers check it: [`crate::ApiJson`] (every daemon's JSON request bodies) and storaged's
//! delta-body parser (`strata_storaged::delta_input`, which reads JSON itself). It lives here,
//! where both reach it, and not in `strata-shared`, which is the table format only.

/// The first number in `body` (outside strings) that is nonzero as written but reads as 0,
/// if any.
pub fn underflowing_number(body: &[u8]) -> Option<&str> {
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < body.len()
                    && matches!(body[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&body[start..i]).ok()?;
                if underflows(token) {
                    return Some(token);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Nonzero digits before the exponent, but parsed as zero.
fn underflows(token: &str) -> bool {
    if !token.contains(['e', 'E', '.']) {
        return false;
    }
    let mantissa = token.split(['e', 'E']).next().unwrap_or("");
    mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'))
        && token.parse::<f64>().is_ok_and(|f| f == 0.0)
}

#[cfg(test)]
mod tests {
    use super::underflowing_number as u;

    #[test]
    fn nonzero_numbers_that_read_as_zero_are_found() {
        assert_eq!(u(br#"{"id": 1e-400}"#), Some("1e-400"));
        assert_eq!(u(br#"[-2.5E-999, 1]"#), Some("-2.5E-999"));
        assert_eq!(u(br#"{"val": 0.000001e-330}"#), Some("0.000001e-330"));
        // Zeros, small but representable numbers, and numbers in strings are fine.
        for ok in [
            &br#"{"a": 0, "b": 0.0, "c": -0e10, "d": 0.000e-999}"#[..],
            br#"{"a": 1e-300, "b": 4.9e-324, "c": 123456789012345678901234567890}"#,
            br#"{"s": "1e-400", "t": "a\"1e-400", "u": 7}"#,
        ] {
            assert_eq!(u(ok), None, "{}", String::from_utf8_lossy(ok));
        }
    }
}
