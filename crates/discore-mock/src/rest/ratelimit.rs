//! Authorization and the per-route rate limit of REST requests, with the
//! headers Discord sends on every answer
//! (<https://discord.com/developers/docs/topics/rate-limits#header-format>).

use super::{ApiError, Auth};
use crate::state::{RestBucket, Shared};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use serde_json::json;
use std::time::{Duration, Instant};

/// The rate-limit headers of one answer in a bucket.
pub(crate) struct RateHeaders {
    limit: u32,
    remaining: u32,
    reset_after: Duration,
    bucket: String,
}

impl RateHeaders {
    pub(crate) fn apply(&self, builder: &mut HttpResponseBuilder) {
        let reset_at = crate::world::unix_ms_now() as f64 / 1000.0 + self.reset_after.as_secs_f64();
        builder
            .insert_header(("X-RateLimit-Limit", self.limit.to_string()))
            .insert_header(("X-RateLimit-Remaining", self.remaining.to_string()))
            .insert_header(("X-RateLimit-Reset", format!("{reset_at:.3}")))
            .insert_header((
                "X-RateLimit-Reset-After",
                format!("{:.3}", self.reset_after.as_secs_f64()),
            ))
            .insert_header(("X-RateLimit-Bucket", self.bucket.clone()));
    }
}

/// Checks `Authorization: Bot <token>` (for [`Auth::Bot`]) and the
/// bucket's limit. `Err` is the 401 or 429 to send; `Ok(None)` when no
/// limit is configured.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
pub(crate) fn admit(
    shared: &Shared,
    req: &HttpRequest,
    bucket: &str,
    auth: Auth,
) -> Result<Option<RateHeaders>, HttpResponse> {
    if auth == Auth::Bot {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let authorized = match (&shared.config.token, given) {
            (Ok(token), Some(given)) => token.matches_authorization(given),
            _ => false,
        };
        if !authorized {
            let error = ApiError::unauthorized();
            return Err(HttpResponse::Unauthorized().json(error.body()));
        }
    }
    let Some(limit) = shared.config.rest_rate_limit else {
        return Ok(None);
    };
    let now = Instant::now();
    let hash = format!(
        "{:016x}{:016x}",
        fnv(bucket),
        fnv(&bucket.to_lowercase()).rotate_left(17)
    );
    let mut state = shared.lock();
    let entry = state
        .rest_buckets
        .entry(bucket.to_owned())
        .or_insert(RestBucket {
            window_start: now,
            used: 0,
        });
    if now.saturating_duration_since(entry.window_start) >= limit.window {
        *entry = RestBucket {
            window_start: now,
            used: 0,
        };
    }
    let reset_after = limit
        .window
        .saturating_sub(now.saturating_duration_since(entry.window_start));
    if entry.used >= limit.limit {
        let headers = RateHeaders {
            limit: limit.limit,
            remaining: 0,
            reset_after,
            bucket: hash,
        };
        let mut builder = HttpResponse::TooManyRequests();
        headers.apply(&mut builder);
        builder
            .insert_header((
                "Retry-After",
                reset_after.as_secs_f64().ceil().max(1.0).to_string(),
            ))
            .insert_header(("X-RateLimit-Scope", "user"));
        return Err(builder.json(json!({
            "message": "You are being rate limited.",
            "retry_after": (reset_after.as_secs_f64() * 1000.0).ceil() / 1000.0,
            "global": false,
        })));
    }
    entry.used += 1;
    Ok(Some(RateHeaders {
        limit: limit.limit,
        remaining: limit.limit - entry.used,
        reset_after,
        bucket: hash,
    }))
}

/// A stable hash for the bucket id (Discord's are opaque strings).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
