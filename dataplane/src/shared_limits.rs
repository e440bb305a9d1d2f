//! Fleet-wide limits: with `--redis`, every replica's throttles and quotas are one set of
//! counters in Redis, so three replicas hold a key to its rate, not to three times it.
//!
//! One request is one round trip: a Lua script checks every bucket of its [`Chain`] (GCRA on
//! Redis's own clock, so replicas' clocks need not agree) and the key's quota counter, and
//! either spends at every level or at none, atomically (Redis runs one script at a time). Each
//! worker thread has its own multiplexed connection.
//!
//! Redis is never waited on for long: a check that does not answer within `--redis-timeout-ms`,
//! or fails, sends that request and every later one to the replica's own buckets and counters
//! (the per-replica behaviour without Redis) until a probe finds Redis answering again. A
//! replica passes its view of each quota count to the script as a floor, so a Redis that lost
//! its data (restarted without persistence, flushed) never starts a key's period from zero.
//!
//! The URL can carry a password: it is never logged or put in an error; [`SharedLimits::server`]
//! is its host and port alone.

use crate::metrics::{Metrics, RedisMetrics};
use crate::phases::quota::SharedQuota;
use crate::phases::throttle::Chain;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every key this gateway writes in Redis starts with this.
pub const PREFIX: &str = "tollhouse:";

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a Redis that stopped answering is tried again.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// KEYS: the chain's buckets, then the quota counter if any. ARGV: the number of buckets, then
/// per bucket its microseconds per token and burst, then the quota's limit, expiry (unix
/// seconds) and floor. Answers `{0, used}` admitted, `{1, level}` throttled, `{2, used}` over
/// the quota. Numbers are stored with `%.0f`: Lua's own conversion would write large ones in
/// exponent form.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local tats = {}
for i = 1, n do
  local iv = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local h = redis.call('HMGET', KEYS[i], 'tat', 'iv')
  local tat = tonumber(h[1]) or 0
  local old = tonumber(h[2])
  if old and old ~= iv and tat > now then
    -- a changed limit keeps the tokens already spent, at most the new burst
    local spent = math.ceil((tat - now) / old)
    if spent > burst then spent = burst end
    tat = now + spent * iv
  end
  local nxt = math.max(tat, now) + iv
  if nxt - now > iv * burst then
    return {1, i}
  end
  tats[i] = nxt
end
local used = 0
local q = KEYS[n + 1]
if q then
  local limit = tonumber(ARGV[2 * n + 2])
  local exat = ARGV[2 * n + 3]
  local floor = tonumber(ARGV[2 * n + 4])
  local cur = tonumber(redis.call('GET', q) or '0')
  if cur < floor then
    cur = floor
    redis.call('SET', q, string.format('%.0f', cur), 'EXAT', exat)
  end
  if cur >= limit then
    return {2, cur}
  end
  used = cur + 1
  redis.call('SET', q, string.format('%.0f', used), 'EXAT', exat)
end
for i = 1, n do
  redis.call('HSET', KEYS[i], 'tat', string.format('%.0f', tats[i]), 'iv', ARGV[2 * i])
  redis.call('PEXPIRE', KEYS[i], math.ceil((tats[i] - now) / 1000) + 1000)
end
return {0, used}
"#;

/// What Redis decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Spent at every level; `used` is the key's count in its quota period (0 without one).
    Admitted {
        /// The fleet's count after this request.
        used: u64,
    },
    /// A bucket had no token; nothing was spent.
    Throttled,
    /// The quota is spent; nothing was spent.
    OverQuota {
        /// The fleet's count.
        used: u64,
    },
}

/// The gateway's link to Redis.
pub struct SharedLimits {
    client: redis::Client,
    script: redis::Script,
    timeout: Duration,
    server: String,
    up: AtomicBool,
    metrics: RedisMetrics,
    /// Every worker's connection, for the probe.
    conns: Mutex<Vec<ConnectionManager>>,
}

impl SharedLimits {
    /// Reads `url` (`redis://[:password@]host:port[/db]`) and registers the metrics; connects
    /// nothing yet. The error never repeats the URL.
    pub fn new(url: &str, timeout: Duration, metrics: &mut Metrics) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                "--redis is not a redis:// URL ({:?}); the value is not repeated here, it may hold a password",
                e.kind()
            )
        })?;
        let server = match &client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            redis::ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => "redis".to_string(),
        };
        let metrics = metrics.redis();
        Ok(SharedLimits {
            client,
            script: redis::Script::new(SCRIPT),
            timeout: timeout.max(Duration::from_millis(1)),
            server,
            up: AtomicBool::new(false),
            metrics,
            conns: Mutex::new(Vec::new()),
        })
    }

    /// Host and port of the server, for logs.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Whether checks go to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A connection for the calling worker's runtime; it connects on first use and reconnects
    /// by itself.
    pub fn connect(&self) -> Result<ConnectionManager, String> {
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| format!("Redis connection to {}: {:?}", self.server, e.kind()))?;
        if let Ok(mut conns) = self.conns.lock() {
            conns.push(conn.clone());
        }
        Ok(conn)
    }

    /// Checks `chain` and `quota` for the fleet through `conn`: `None` when Redis is not up,
    /// fails or is late, and the replica's own limits must decide.
    pub async fn admit(
        &self,
        conn: &ConnectionManager,
        chain: &Chain<'_>,
        quota: Option<&SharedQuota>,
    ) -> Option<Verdict> {
        if !self.is_up() {
            self.metrics.fallback_requests.inc();
            return None;
        }
        let mut call = self.script.prepare_invoke();
        call.arg(chain.levels().count());
        for bucket in chain.levels() {
            // A blocked level refuses here; nothing is spent anywhere.
            let Some((micros, burst)) = bucket.micros().filter(|&(_, burst)| burst > 0) else {
                return Some(Verdict::Throttled);
            };
            call.key(format!("{PREFIX}{}", bucket.name()))
                .arg(micros)
                .arg(burst);
        }
        if let Some(q) = quota {
            call.key(format!("{PREFIX}{}", q.counter))
                .arg(q.limit)
                .arg(q.expire_at)
                .arg(q.floor);
        }
        let mut conn = conn.clone();
        let started = Instant::now();
        let answer =
            tokio::time::timeout(self.timeout, call.invoke_async::<(i64, i64)>(&mut conn)).await;
        self.metrics.script.observe(started.elapsed().as_secs_f64());
        let used = |n: i64| u64::try_from(n).unwrap_or(0);
        match answer {
            Ok(Ok((0, n))) => Some(Verdict::Admitted { used: used(n) }),
            Ok(Ok((1, _))) => Some(Verdict::Throttled),
            Ok(Ok((2, n))) => Some(Verdict::OverQuota { used: used(n) }),
            Ok(Ok((other, _))) => {
                self.went_down(&format!("the limit script answered {other}"));
                None
            }
            Ok(Err(e)) => {
                self.went_down(&describe(&e));
                None
            }
            Err(_) => {
                self.went_down(&format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn went_down(&self, why: &str) {
        self.metrics.fallback_requests.inc();
        self.mark_down(why);
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.fallbacks.inc();
            self.metrics.up.set(0);
            tracing::warn!(server = %self.server, error = %why,
                "Redis is not answering; each replica holds requests to its own limits until it does");
        }
    }

    /// Runs for the life of the process: pings every worker's connection every 200 ms, so a
    /// Redis that went away is noticed even by an idle replica, and checks go to Redis again
    /// only once all of them answer.
    pub async fn probe(&self) {
        let mut last_error = String::new();
        loop {
            let conns = self.conns.lock().map(|c| c.clone()).unwrap_or_default();
            let mut failed = conns.is_empty().then(|| "no connection yet".to_string());
            for mut conn in conns {
                let ping = redis::cmd("PING");
                match tokio::time::timeout(CONNECT_TIMEOUT, ping.query_async::<String>(&mut conn))
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => failed = Some(describe(&e)),
                    Err(_) => failed = Some("no answer to PING".to_string()),
                }
                if failed.is_some() {
                    break;
                }
            }
            match failed {
                None if !self.is_up() => {
                    self.up.store(true, Ordering::Relaxed);
                    self.metrics.up.set(1);
                    last_error.clear();
                    tracing::info!(server = %self.server, "Redis answers; limits hold for the whole fleet");
                }
                None => {}
                Some(e) if self.is_up() => self.mark_down(&e),
                Some(e) if e != last_error => {
                    tracing::debug!(server = %self.server, error = %e, "Redis does not answer yet");
                    last_error = e;
                }
                Some(_) => {}
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
}

/// A Redis error without anything the URL held: its kind, its code, and the server's words.
fn describe(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.to_string(),
        _ => format!("{:?}: {e}", e.kind()),
    }
}
