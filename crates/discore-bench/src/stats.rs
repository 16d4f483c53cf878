//! Small statistics: best of N and percentiles.

use std::time::Duration;

/// CPU time (user + system, all threads) this process used so far, from
/// `/proc/self/stat` (10 ms resolution).
pub fn cpu_time() -> Duration {
    cpu_time_of("self")
}

/// CPU time (user + system, all threads) process `pid` (or `"self"`) used
/// so far, from `/proc/<pid>/stat` (10 ms resolution; zero when unreadable).
pub fn cpu_time_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |field: usize| -> u64 {
        fields
            .get(field - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on every Linux ABI.
    Duration::from_millis((ticks(14) + ticks(15)) * 10)
}

/// The best of several runs: highest rate, least CPU per event.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    /// Events per second, wall clock.
    pub rate: f64,
    /// Client CPU time per event.
    pub cpu_per_event: Duration,
    /// The emulator's CPU time per event (zero where not measured).
    pub emulator_cpu_per_event: Duration,
}

impl Throughput {
    /// One run of `events` that took `elapsed` and `cpu` of the client's
    /// CPU time, with no emulator CPU measured.
    pub fn client_only(events: u64, elapsed: Duration, cpu: Duration) -> Self {
        Self {
            rate: rate(events, elapsed),
            cpu_per_event: cpu / u32::try_from(events.max(1)).unwrap_or(u32::MAX),
            emulator_cpu_per_event: Duration::ZERO,
        }
    }

    /// Folds runs into their best.
    pub fn best(runs: &[Self]) -> Self {
        Self {
            rate: best(&runs.iter().map(|r| r.rate).collect::<Vec<_>>()),
            cpu_per_event: runs
                .iter()
                .map(|r| r.cpu_per_event)
                .min()
                .unwrap_or_default(),
            emulator_cpu_per_event: runs
                .iter()
                .map(|r| r.emulator_cpu_per_event)
                .min()
                .unwrap_or_default(),
        }
    }
}

/// Events per second of one timed run.
pub fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The best (largest) of several rates: the machine is shared and noisy, so
/// the best run is the one least disturbed.
pub fn best(rates: &[f64]) -> f64 {
    rates.iter().copied().fold(0.0, f64::max)
}

/// The nearest-rank percentile `p` (0–100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// A duration in milliseconds with two decimals.
pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// A duration in microseconds with no decimals.
pub fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

#[cfg(test)]
mod tests {
    use super::{best, cpu_time, percentile};
    use std::time::Duration;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time();
        let started = std::time::Instant::now();
        let mut x = 0_u64;
        while cpu_time() == before && started.elapsed() < Duration::from_secs(5) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        assert!(cpu_time() > before, "no CPU time counted ({x})");
    }

    #[test]
    fn nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&mut samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&mut samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&mut [], 50.0), Duration::ZERO);
    }

    #[test]
    fn best_is_the_largest() {
        assert!((best(&[1.0, 3.0, 2.0]) - 3.0).abs() < f64::EPSILON);
        assert!(best(&[]).abs() < f64::EPSILON);
    }
}
