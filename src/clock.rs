//! The only place that reads the wall clock. Everything else takes `now` as an argument, read once per
//! request at the edge, so the protocol core stays pure and tests can pin time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch. Stored as BIGINT in both backends.
pub type UnixTime = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "this is the one sanctioned reader of the wall clock")]
    fn now(&self) -> UnixTime {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // A clock before 1970 is a broken host; treat it as the epoch rather than panic.
            Err(_) => 0,
        }
    }
}

/// A clock that tests move by hand.
#[derive(Debug, Clone)]
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    pub fn new(at: UnixTime) -> Self {
        Self(Arc::new(AtomicI64::new(at)))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::new(1_000);
        assert_eq!(c.now(), 1_000);
        c.advance(30);
        assert_eq!(c.now(), 1_030);
    }

    #[test]
    fn system_clock_is_after_2025() {
        assert!(SystemClock.now() > 1_735_689_600);
    }
}
