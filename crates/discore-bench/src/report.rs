//! The printed result: the machine, the date and the commit, then one
//! Markdown table per case.

use std::{fmt::Write as _, process::Command, time::SystemTime};

/// One table of results.
#[derive(Debug)]
pub struct Section {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Section {
    /// A table with these column names.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Adds a line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.render(&mut out);
        out
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "### {}\n", self.title);
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(
            out,
            "|{}",
            self.header.iter().map(|_| " --- |").collect::<String>()
        );
        for row in &self.rows {
            let cells: Vec<&str> = (0..self.header.len())
                .map(|i| row.get(i).map_or("", String::as_str))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out.push('\n');
    }
}

/// Everything one invocation measured.
#[derive(Debug)]
pub struct Report {
    sections: Vec<Section>,
    load_before: String,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            sections: Vec::new(),
            load_before: load_average(),
        }
    }
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages: how busy the shared
/// machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Report {
    /// Adds a finished table.
    pub fn push(&mut self, section: Section) {
        self.sections.push(section);
    }

    /// The Markdown text: machine, date, commit, then the tables.
    pub fn render(&self, command: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## discore-bench results\n");
        let _ = writeln!(out, "- machine: {}", machine());
        let _ = writeln!(out, "- date: {} (UTC)", utc_now());
        let _ = writeln!(out, "- commit: {}", commit());
        let _ = writeln!(out, "- load average before the run: {}", self.load_before);
        let _ = writeln!(out, "- command: `{command}`");
        let _ = writeln!(out, "- load average after the run: {}", load_average());
        let _ = writeln!(out, "- {}\n", build_notes());
        for section in &self.sections {
            section.render(&mut out);
        }
        out
    }
}

/// nproc, the CPU model and the memory size.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, model)| model.trim())
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs (nproc), {model}, {:.1} GiB memory, {} {}",
        memory_kib as f64 / (1024.0 * 1024.0),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// How this binary was built, which decides some of the numbers.
fn build_notes() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug build (numbers are not meaningful; use --release)"
    } else {
        "release build"
    };
    let twilight = if cfg!(feature = "twilight-zlib") {
        "twilight-gateway 0.18 with zlib-stream"
    } else {
        "twilight-gateway 0.18 without compression"
    };
    format!(
        "{profile}; {twilight}; flate2 features unified with discore-mock's (zlib-rs when it enables it)"
    )
}

/// The commit of the working tree, with `-dirty` when it has changes, or
/// `DISCORE_BENCH_COMMIT` when set.
pub fn commit() -> String {
    // A copy of the tree without `.git` (a patched build) names its commit.
    if let Ok(commit) = std::env::var("DISCORE_BENCH_COMMIT") {
        return commit;
    }
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(hash) = run(&["rev-parse", "--short=10", "HEAD"]) else {
        return "unknown (not in a git checkout)".to_owned();
    };
    let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    if dirty { format!("{hash}-dirty") } else { hash }
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days end each 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

/// A fraction as a percentage with no decimals.
pub fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, thousands};

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn grouping() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(164_321.6), "164,322");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }
}
