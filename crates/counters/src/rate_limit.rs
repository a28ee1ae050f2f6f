//! The rate limit of application tokens ([`RateLimiter`]): `governor`'s keyed GCRA in this
//! process (embedded mode), or the same algorithm in one Lua script on Redis's clock, so
//! that every server of a deployment draws from one allowance per application.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chatsys_core::ports::{Rate, RateLimiter};
use chatsys_core::{AppId, Error, Result};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::redis::redis_error;

/// The time between two requests at the average rate (at least 1 µs).
fn interval(rate: Rate) -> Duration {
    Duration::from_secs_f64(1.0 / rate.per_second).max(Duration::from_micros(1))
}

fn burst(rate: Rate) -> NonZeroU32 {
    NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN)
}

/// Embedded mode: one allowance per application, in this process.
pub struct InProcessRateLimiter {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<AppId>,
    clock: DefaultClock,
}

impl InProcessRateLimiter {
    pub fn new(rate: Rate) -> Self {
        let quota = Quota::with_period(interval(rate)).expect("a non-zero interval").allow_burst(burst(rate));
        Self { rate, limiter: DefaultKeyedRateLimiter::keyed(quota), clock: DefaultClock::default() }
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn take(&self, app: AppId) -> Result<Option<Duration>> {
        Ok(self.limiter.check_key(&app).err().map(|until| until.wait_time_from(self.clock.now())))
    }

    fn rate(&self) -> Rate {
        self.rate
    }
}

/// How long a request waits for Redis to answer the rate limit. Redis answers in well under
/// a millisecond; one that does not answer in this time is taken as hung, and the request
/// goes on unchecked (the limit protects the service, it must not take it down): without
/// this bound, every request waited for the 2 s of any Redis command while Redis hung. Not
/// shorter, so that a process starved of CPU for a moment does not skip the limit.
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// After Redis failed to answer, requests go on unchecked for this long without asking it;
/// then one request asks again while the others go on, so that while Redis hangs about one
/// request a second waits for [`ANSWER_WITHIN`].
const REST_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Distributed mode: one allowance per application for every server, in Redis (the key
/// goes with the application's other keys when it is erased).
pub struct RedisRateLimiter {
    rate: Rate,
    redis: ConnectionManager,
    prefix: String,
    script: Script,
    /// After a failure: until when the limiter does not ask Redis (`None`: it asks).
    resting_until: Mutex<Option<Instant>>,
}

impl RedisRateLimiter {
    pub fn new(rate: Rate, redis: ConnectionManager, prefix: String) -> Self {
        let script = Script::new(include_str!("lua/rate.lua"));
        Self { rate, redis, prefix, script, resting_until: Mutex::new(None) }
    }

    /// Whether this request asks Redis: always, unless Redis failed to answer lately; then
    /// none during the rest, and after it one at a time (the others go on unchecked).
    fn may_ask(&self) -> bool {
        let mut resting_until = self.resting_until.lock().expect("rate limiter lock");
        let now = Instant::now();
        match *resting_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) => {
                *resting_until = Some(now + ANSWER_WITHIN);
                true
            }
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn take(&self, app: AppId) -> Result<Option<Duration>> {
        if !self.may_ask() {
            return Err(Error::unavailable("redis failed to answer the rate limit a moment ago"));
        }
        let key = format!("{}:{{a{}}}:rate", self.prefix, app.0);
        let micros = u64::try_from(interval(self.rate).as_micros()).unwrap_or(u64::MAX);
        let mut redis = self.redis.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(micros).arg(burst(self.rate).get());
        let asked = invocation.invoke_async::<u64>(&mut redis);
        let answer = match tokio::time::timeout(ANSWER_WITHIN, asked).await {
            Ok(answer) => answer.map_err(redis_error),
            Err(_) => Err(Error::unavailable(format!(
                "redis did not answer the rate limit within {} ms",
                ANSWER_WITHIN.as_millis()
            ))),
        };
        *self.resting_until.lock().expect("rate limiter lock") =
            answer.is_err().then(|| Instant::now() + REST_AFTER_FAILURE);
        let wait = answer?;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }

    fn rate(&self) -> Rate {
        self.rate
    }
}

/// Parses `CHATSYS_RATE_LIMIT`: `<requests>/<s|min|h>[,<burst>]`, e.g. `50/s,200`; the burst
/// defaults to the requests of one period.
pub fn parse_rate(text: &str) -> std::result::Result<Rate, String> {
    let wrong = || format!("{text:?} is not a rate: write <requests>/<s|min|h>[,<burst>], e.g. 50/s,200");
    let (rate, burst) = match text.split_once(',') {
        Some((rate, burst)) => (rate.trim(), Some(burst.trim())),
        None => (text.trim(), None),
    };
    let (count, period) = rate.split_once('/').ok_or_else(wrong)?;
    let count: u32 = count.trim().parse().map_err(|_| wrong())?;
    let seconds = match period.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(wrong()),
    };
    let burst = match burst {
        Some(b) => b.parse().map_err(|_| wrong())?,
        None => count,
    };
    if count == 0 || burst == 0 {
        return Err(format!("{text:?}: the requests and the burst must be at least 1"));
    }
    Ok(Rate { per_second: f64::from(count) / seconds, burst })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("50/s,200"), Ok(Rate { per_second: 50.0, burst: 200 }));
        assert_eq!(parse_rate("120/min"), Ok(Rate { per_second: 2.0, burst: 120 }));
        for wrong in ["", "50", "50/d", "0/s", "5/s,0", "x/s", "5/s,x"] {
            assert!(parse_rate(wrong).is_err(), "{wrong}");
        }
    }
}
