//! Buckets in Redis, shared by every instance.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tenantry_domain::gcra::Decision;

use crate::{Check, LimiterError, RateLimiter, Verdict};

/// GCRA over several buckets in one atomic step, timed by the Redis clock (microseconds; exact in
/// Lua's doubles). A bucket is stored as `<tat>:<interval>` so that a changed limit keeps the count
/// already used. Mirrors `tenantry_domain::gcra::decide`; the conformance suite holds both to the
/// same cases. Returns, per bucket: allowed, new TAT, remaining, reset after, retry after.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local tats = {}
local all = true
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = now
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local t, old_interval = string.match(stored, '^(%d+):(%d+)$')
    tat = tonumber(t)
    old_interval = tonumber(old_interval)
    -- keep the count already used when the limit changed (gcra::rescale)
    if tat > now and old_interval > 0 and old_interval ~= interval then
      tat = now + math.floor((tat - now) * interval / old_interval)
    end
  end
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at <= now then
    out[i] = {1, new_tat, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
  else
    all = false
    local room = tolerance - (tat - now)
    if room < 0 then room = 0 end
    out[i] = {0, tat, math.floor(room / interval), tat - now, allow_at - now}
  end
  tats[i] = new_tat
end
if all then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%d:%d', tats[i], tonumber(ARGV[2 * i - 1])), 'PX', math.floor((tats[i] - now) / 1000) + 1000)
  end
end
return out
";

pub struct RedisLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
}

impl RedisLimiter {
    /// Connects to `url`; bucket keys are `<prefix><bucket>`. A call that takes longer than
    /// `timeout` counts as Redis being unavailable.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, LimiterError> {
        let client =
            redis::Client::open(url).map_err(|e| LimiterError::Unavailable(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            timeout.max(Duration::from_millis(500)),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| LimiterError::Unavailable("timed out connecting to Redis".into()))?
        .map_err(|e| LimiterError::Unavailable(e.to_string()))?;
        Ok(Self {
            conn,
            script: redis::Script::new(SCRIPT),
            prefix: prefix.to_owned(),
            timeout,
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn probe(&self) -> Option<Result<Duration, LimiterError>> {
        let started = std::time::Instant::now();
        let mut conn = self.conn.clone();
        let pong = tokio::time::timeout(
            self.timeout.max(Duration::from_millis(200)),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        Some(match pong {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(LimiterError::Unavailable(e.to_string())),
            Err(_) => Err(LimiterError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        })
    }

    async fn check(&self, checks: &[Check]) -> Result<Verdict, LimiterError> {
        let mut invocation = self.script.prepare_invoke();
        for c in checks {
            invocation.key(format!("{}{}", self.prefix, c.key));
            invocation
                .arg(c.limit.emission_interval_us())
                .arg(c.limit.tolerance_us());
        }
        let mut conn = self.conn.clone();
        let rows: Vec<Vec<i64>> =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| LimiterError::Unavailable("Redis did not answer in time".into()))?
                .map_err(|e| LimiterError::Unavailable(e.to_string()))?;
        let as_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let decisions = rows
            .into_iter()
            .map(|r| Decision {
                allowed: r.first() == Some(&1),
                new_tat_us: as_u64(r.get(1).copied().unwrap_or(0)),
                remaining: as_u64(r.get(2).copied().unwrap_or(0)),
                reset_after_us: as_u64(r.get(3).copied().unwrap_or(0)),
                retry_after_us: as_u64(r.get(4).copied().unwrap_or(0)),
            })
            .collect();
        Ok(Verdict::from_decisions(decisions))
    }
}
