//! Binary floating-point columns served as decimals with a scale: the value served (the stored
//! double rounded to the field's places) and the doubles that serve a given value, so a filter
//! on the served value becomes range comparisons the database answers with an index.

use std::cmp::Ordering;

use crate::source::select::CmpOp;

/// The text a stored double is served as with `scale` places: its shortest round-trip
/// decimal, rounded half away from zero (`79.19000244140625` → `79.19`, `1.005` → `1.01`).
pub fn served(value: f64, scale: u32) -> String {
    let text = format!("{}", value.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let scale = scale as usize;
    let mut digits: Vec<u8> = int.bytes().collect();
    let kept = frac.len().min(scale);
    digits.extend(frac[..kept].bytes());
    digits.extend(std::iter::repeat_n(b'0', scale - kept));
    if frac.as_bytes().get(scale).is_some_and(|&d| d >= b'5') {
        // Carry the rounding up through the kept digits.
        let mut at = digits.len();
        loop {
            if at == 0 {
                digits.insert(0, b'1');
                break;
            }
            at -= 1;
            if digits[at] == b'9' {
                digits[at] = b'0';
            } else {
                digits[at] += 1;
                break;
            }
        }
    }
    let split = digits.len() - scale;
    let int = std::str::from_utf8(&digits[..split]).unwrap_or("0");
    let frac = std::str::from_utf8(&digits[split..]).unwrap_or("");
    let zero = digits.iter().all(|&d| d == b'0');
    let sign = if value.is_sign_negative() && !zero {
        "-"
    } else {
        ""
    };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The served value as a double (to compare it with a client's value).
fn served_value(value: f64, scale: u32) -> f64 {
    served(value, scale).parse().unwrap_or(value)
}

/// Where the doubles a comparison keeps begin or end: the rows kept are `column >= at`
/// (`Below` false) or `column < at` (`Below` true).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The first double on the kept side (`>=`), or the first one past it (`<`).
    pub at: f64,
    /// Keeps the doubles below `at` instead of those from it.
    pub below: bool,
}

/// What a comparison of the served value with `target` keeps, as bounds on the stored
/// double: one bound (a range operator), two that must both hold (`eq`), or two of which one
/// must hold (`ne`). `None` when `target` is not a finite number.
pub fn bounds(op: CmpOp, target: f64, scale: u32) -> Option<Vec<Bound>> {
    if !target.is_finite() {
        return None;
    }
    // Served values are multiples of 10^-scale: `>= target` is `>=` the first one not below
    // it, `> target` is `>=` the first one above it.
    let on_grid = served_value(target, scale);
    let unit = 10f64.powi(-(scale.min(300) as i32));
    let next_above = |grid: f64| served_value(grid + unit, scale);
    let from_not_below = if on_grid >= target {
        on_grid
    } else {
        next_above(on_grid)
    };
    let from_above = if on_grid > target {
        on_grid
    } else {
        next_above(on_grid)
    };
    let least = |grid: f64| Bound {
        at: least_serving_at_least(grid, scale),
        below: false,
    };
    let under = |grid: f64| Bound {
        at: least_serving_at_least(grid, scale),
        below: true,
    };
    Some(match op {
        CmpOp::Gte => vec![least(from_not_below)],
        CmpOp::Gt => vec![least(from_above)],
        CmpOp::Lt => vec![under(from_not_below)],
        CmpOp::Lte => vec![under(from_above)],
        CmpOp::Eq | CmpOp::Ne => {
            let (low, high) = (least(from_not_below), under(from_above));
            if op == CmpOp::Eq {
                vec![low, high]
            } else {
                vec![
                    Bound { below: true, ..low },
                    Bound {
                        below: false,
                        ..high
                    },
                ]
            }
        }
    })
}

/// The least double served as `grid` or more. Served values grow with the stored one, so the
/// answer is found by stepping from an estimate half a unit below `grid`, a few doubles at most.
fn least_serving_at_least(grid: f64, scale: u32) -> f64 {
    let unit = 10f64.powi(-(scale.min(300) as i32));
    let reaches = |x: f64| served_value(x, scale).total_cmp(&grid) != Ordering::Less;
    let mut x = grid - unit / 2.0;
    // The estimate is off by a few ulps at most; the bound keeps a bad one from spinning.
    for _ in 0..4096 {
        if reaches(x) {
            let lower = x.next_down();
            if !reaches(lower) {
                return x;
            }
            x = lower;
        } else {
            x = x.next_up();
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_double_is_served_rounded_half_away_from_zero() {
        assert_eq!(served(79.19000244140625, 2), "79.19");
        assert_eq!(served(117.87999725341797, 2), "117.88");
        assert_eq!(served(1.005, 2), "1.01");
        assert_eq!(served(-1.005, 2), "-1.01");
        assert_eq!(served(9.995, 2), "10.00");
        assert_eq!(served(-0.001, 2), "0.00");
        assert_eq!(served(0.0, 2), "0.00");
        assert_eq!(served(12.5, 0), "13");
        assert_eq!(served(1e21, 2), "1000000000000000000000.00");
    }

    /// Every double near the bound agrees with the served value's comparison.
    fn agrees(op: CmpOp, target: f64, scale: u32) {
        let bounds = bounds(op, target, scale).unwrap();
        let keeps = |x: f64| {
            let holds = |b: &Bound| if b.below { x < b.at } else { x >= b.at };
            match op {
                CmpOp::Ne => bounds.iter().any(holds),
                _ => bounds.iter().all(holds),
            }
        };
        for b in &bounds {
            let mut x = b.at;
            for _ in 0..20 {
                x = x.next_down();
            }
            for _ in 0..40 {
                let s = served_value(x, scale);
                let expected = match op {
                    CmpOp::Eq => s == target,
                    CmpOp::Ne => s != target,
                    CmpOp::Lt => s < target,
                    CmpOp::Lte => s <= target,
                    CmpOp::Gt => s > target,
                    CmpOp::Gte => s >= target,
                };
                assert_eq!(keeps(x), expected, "{op:?} {target} at {x:e} served {s}");
                x = x.next_up();
            }
        }
    }

    #[test]
    fn bounds_keep_exactly_the_doubles_whose_served_value_compares() {
        for op in [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Lte,
            CmpOp::Gt,
            CmpOp::Gte,
        ] {
            for target in [79.19, 0.0, -1.01, 1.005, 79.191, 999.99, 1e9 + 0.01] {
                agrees(op, target, 2);
            }
            agrees(op, 12.0, 0);
        }
        // The float4 value of 79.19 is served as 79.19, so `eq` keeps it.
        let eq = bounds(CmpOp::Eq, 79.19, 2).unwrap();
        let widened = f64::from(79.19f32);
        assert!(widened >= eq[0].at && widened < eq[1].at);
        // A value with more places than are served equals none.
        let eq = bounds(CmpOp::Eq, 79.191, 2).unwrap();
        assert_eq!(eq[0].at, eq[1].at);
        assert!(bounds(CmpOp::Eq, f64::INFINITY, 2).is_none());
    }
}
