//! Summaries of repeated measurements: min and median are what the report
//! shows (the machine is shared, so the minimum is the least disturbed
//! round and the median the typical one).

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// NaN-free summary of `values`; all fields NaN when there are none.
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Summary {
                n: 0,
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        Summary {
            n: v.len(),
            min: v[0],
            median: median_sorted(&v),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Root mean square; NaN for no values.
pub fn rms(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|x| x * x).sum::<f64>() / values.len() as f64).sqrt()
}

/// Largest absolute value; NaN for no values.
pub fn max_abs(values: &[f64]) -> f64 {
    values.iter().map(|x| x.abs()).fold(f64::NAN, f64::max)
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Population standard deviation; NaN for no values.
pub fn sd(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
}

/// `a / b`, NaN when either is not a finite number or `b` is zero.
pub fn ratio(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_and_even() {
        let s = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!(
            (s.n, s.min, s.median, s.max, s.mean),
            (3, 1.0, 2.0, 3.0, 2.0)
        );
        let s = Summary::of(&[4.0, 1.0, 2.0, 3.0, f64::NAN]);
        assert_eq!((s.n, s.median), (4, 2.5));
        assert!(Summary::of(&[]).median.is_nan());
    }

    #[test]
    fn rms_ratio_and_max_abs() {
        assert_eq!(rms(&[3.0, -3.0]), 3.0);
        assert_eq!(max_abs(&[1.0, -5.0, 2.0]), 5.0);
        assert!(ratio(1.0, 0.0).is_nan());
        assert_eq!(ratio(3.0, 2.0), 1.5);
        assert_eq!(sd(&[1.0, 3.0]), 1.0);
    }
}
