use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A point in time in microseconds since the Unix epoch (UTC), the precision both stores keep.
/// Internal formats (queue payloads) carry the integer; clients see [`Timestamp::to_rfc3339`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

static LAST: AtomicI64 = AtomicI64::new(0);

impl Timestamp {
    /// The current time, strictly increasing within this process, so that two edits of one
    /// message made by this process never carry the same timestamp.
    pub fn now() -> Self {
        let wall = Utc::now().timestamp_micros();
        let mut last = LAST.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Self(next),
                Err(seen) => last = seen,
            }
        }
    }

    pub fn from_micros(us: i64) -> Self {
        Self(us)
    }

    pub fn as_micros(self) -> i64 {
        self.0
    }

    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_micros(self.0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl From<i64> for Timestamp {
    fn from(us: i64) -> Self {
        Self(us)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_utc_with_z() {
        assert_eq!(Timestamp::from_micros(1_795_365_779_123_456).to_rfc3339(), "2026-11-22T16:42:59.123456Z");
    }

    #[test]
    fn now_never_repeats() {
        let a = Timestamp::now();
        let b = Timestamp::now();
        assert!(b > a);
    }
}
