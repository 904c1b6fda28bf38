//! Failed authentications per remote address: a token bucket each, so a
//! client that guesses secrets gets a burst of tries and then one every few
//! seconds, however many connections it opens.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

/// The most addresses tracked at once. A full table first forgets the
/// addresses whose buckets have refilled; past that, new addresses go
/// untracked until some do, so the table is bounded whatever the attacker
/// spreads over (about 40 bytes an address).
const MAX_ADDRESSES: usize = 16 * 1024;

/// The failed-auth token buckets of a server, by remote address.
pub(crate) struct AuthThrottle {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl AuthThrottle {
    /// `per_minute` failures a minute, all of them at once at most.
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `addr` may try to authenticate now: false once its failures
    /// used up its bucket, until it refills.
    pub(crate) fn allows(&self, addr: IpAddr, now: Instant) -> bool {
        let key = key(addr);
        match self.lock().get(&key) {
            Some(bucket) => self.refilled(*bucket, now).tokens >= 1.0,
            None => true,
        }
    }

    /// Counts a failed authentication of `addr`.
    pub(crate) fn failed(&self, addr: IpAddr, now: Instant) {
        let key = key(addr);
        let mut buckets = self.lock();
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| self.refilled(*bucket, now).tokens < self.per_minute);
            if buckets.len() >= MAX_ADDRESSES {
                return;
            }
        }
        let full = Bucket {
            tokens: self.per_minute,
            last: now,
        };
        let bucket = buckets.entry(key).or_insert(full);
        let mut refilled = self.refilled(*bucket, now);
        refilled.tokens = (refilled.tokens - 1.0).max(0.0);
        *bucket = refilled;
    }

    /// `bucket` refilled up to `now`: `per_minute` tokens a minute, no more
    /// than `per_minute` in all.
    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(bucket.last);
        let refill = elapsed.as_secs_f64() * self.per_minute / MINUTE.as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + refill).min(self.per_minute),
            last: now,
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// The key of an address: an IPv4 address (or an IPv4-mapped IPv6 one) by
/// itself, an IPv6 address by its /64 network, since one host commonly holds
/// a whole /64 and could otherwise try from a new address each time.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: f64) -> Instant {
        start + Duration::from_secs_f64(secs)
    }

    #[test]
    fn an_address_gets_its_burst_then_one_try_per_refill() {
        let throttle = AuthThrottle::new(30);
        let start = Instant::now();
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..30 {
            assert!(throttle.allows(addr, start));
            throttle.failed(addr, start);
        }
        assert!(!throttle.allows(addr, start));
        // 30 a minute: one token every two seconds.
        assert!(!throttle.allows(addr, at(start, 1.9)));
        assert!(throttle.allows(addr, at(start, 2.1)));
        // Another address is not affected.
        assert!(throttle.allows("192.0.2.8".parse().unwrap(), start));
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket_and_mapped_v4_is_v4() {
        let throttle = AuthThrottle::new(2);
        let start = Instant::now();
        throttle.failed("2001:db8:1:2::1".parse().unwrap(), start);
        throttle.failed("2001:db8:1:2:ffff::9".parse().unwrap(), start);
        assert!(!throttle.allows("2001:db8:1:2::abcd".parse().unwrap(), start));
        assert!(throttle.allows("2001:db8:1:3::1".parse().unwrap(), start));

        throttle.failed("::ffff:192.0.2.1".parse().unwrap(), start);
        throttle.failed("192.0.2.1".parse().unwrap(), start);
        assert!(!throttle.allows("192.0.2.1".parse().unwrap(), start));
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_refilled_addresses_first() {
        let throttle = AuthThrottle::new(10);
        let start = Instant::now();
        for n in 0..MAX_ADDRESSES as u32 + 100 {
            throttle.failed(IpAddr::V4(n.into()), start);
        }
        assert_eq!(throttle.tracked(), MAX_ADDRESSES);
        // A minute later every bucket has refilled: a new address evicts them.
        let later = at(start, 61.0);
        let newcomer = IpAddr::V4(u32::MAX.into());
        throttle.failed(newcomer, later);
        assert_eq!(throttle.tracked(), 1);
    }
}
