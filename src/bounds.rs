//! Bounds of configured numbers and the durations made from them: a value out of its range
//! is refused by name, a size or duration past what fits saturates, and a moment that cannot
//! be computed is `None`, never "now" or zero.

use std::time::Duration;

/// Pushes an error naming `key` unless `value` lies within `range`.
pub fn within<T: PartialOrd + std::fmt::Display>(
    errs: &mut Vec<String>,
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) {
    if !range.contains(&value) {
        errs.push(format!(
            "{key} = {value} is out of bounds: must be between {} and {}",
            range.start(),
            range.end()
        ));
    }
}

/// `n` units of `unit` bytes (or seconds), saturating: a size or duration past what fits is
/// "as much as there is", never a wrapped-around small number.
pub fn scaled(n: u64, unit: u64) -> u64 {
    n.saturating_mul(unit)
}

/// The moment `age` ago, or `None` when it lies before what a timestamp can hold: a cutoff
/// that cannot be computed selects nothing, it never falls back to "now".
pub fn ago(age: Duration) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::Utc::now().checked_sub_signed(chrono::Duration::from_std(age).ok()?)
}
