//! A small, strict parser of the OpenMetrics text format (1.0.0) that
//! `/metrics` serves: what a scraper would reject, it rejects too, plus
//! discore's naming conventions.
//!
//! OpenMetrics' framing on top of Prometheus' text format: the exposition
//! ends with `# EOF`, a counter family is named without `_total` while its
//! samples carry it, and `# UNIT` names the family's unit.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample: its name, labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metric family: its type, help and samples.
#[derive(Clone, Debug, Default)]
pub struct Family {
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// A parsed exposition, by family name.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
}

impl Exposition {
    /// The samples named `name` whose labels include every `(label, value)`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.families
            .values()
            .flat_map(|f| f.samples.iter())
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample named `name` with these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("not a number: {text:?}")),
    }
}

/// Parses `name{labels}` and answers the rest of the line.
fn parse_series(line: &str) -> Result<(String, BTreeMap<String, String>, &str), String> {
    let end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let consumed;
        loop {
            // A label name, or the end.
            let start = match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().ok_or("unreachable")?;
                    consumed = Some(i + 1);
                    break;
                }
                Some((i, _)) => *i,
                None => return Err("unterminated labels".into()),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or("a label without a value")?;
            let label = &inner[start..eq];
            if !is_label_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {label}")),
                    },
                    Some('"') => break,
                    Some('\n') | None => return Err(format!("unterminated value of {label}")),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    consumed = Some(i + 1);
                    break;
                }
                other => return Err(format!("expected , or }} after a label, found {other:?}")),
            }
        }
        rest = &inner[consumed.ok_or("unterminated labels")?..];
    }
    Ok((name.to_owned(), labels, rest))
}

/// The family a sample name belongs to, given the declared types: a
/// histogram's or summary's `_bucket`, `_sum`, `_count` and `_created`, a
/// counter's `_total` and `_created`.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    let suffixes: [(&str, &[&str]); 5] = [
        ("_bucket", &["histogram"]),
        ("_sum", &["histogram", "summary"]),
        ("_count", &["histogram", "summary"]),
        ("_total", &["counter"]),
        ("_created", &["histogram", "summary", "counter"]),
    ];
    for (suffix, kinds) in suffixes {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| kinds.contains(&t.as_str()))
        {
            return base;
        }
    }
    name
}

/// Parses and validates an exposition.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    let Some(body) = text.strip_suffix("# EOF\n") else {
        return Err("the exposition must end with # EOF".into());
    };
    for (number, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.trim().is_empty() {
            return Err(at("an empty line".into()));
        }
        let family_name;
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            if keyword == "EOF" {
                return Err(at("# EOF before the end".into()));
            }
            if keyword == "UNIT" {
                // The family's name must end with its unit.
                let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
                let unit = parts.next().unwrap_or_default();
                if unit.is_empty() || !name.ends_with(&format!("_{unit}")) {
                    return Err(at(format!("{name} does not end with its unit {unit:?}")));
                }
                continue;
            }
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            if !is_metric_name(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            let rest = parts.next().unwrap_or_default();
            let family = exposition.families.entry(name.to_owned()).or_default();
            if keyword == "TYPE" {
                let kinds = [
                    "counter",
                    "gauge",
                    "histogram",
                    "gaugehistogram",
                    "summary",
                    "stateset",
                    "info",
                    "unknown",
                ];
                if !kinds.contains(&rest) {
                    return Err(at(format!("unknown type {rest:?}")));
                }
                if types.insert(name.to_owned(), rest.to_owned()).is_some() {
                    return Err(at("TYPE given twice".into()));
                }
                if !family.samples.is_empty() {
                    return Err(at("TYPE after the family's samples".into()));
                }
                family.kind = rest.to_owned();
            } else {
                if !family.help.is_empty() {
                    return Err(at("HELP given twice".into()));
                }
                family.help = rest.to_owned();
            }
            family_name = name.to_owned();
        } else {
            let (name, labels, rest) = parse_series(line).map_err(at)?;
            let mut fields = rest.split_whitespace();
            let value =
                parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
            if let Some(timestamp) = fields.next() {
                timestamp
                    .parse::<i64>()
                    .map_err(|_| at(format!("bad timestamp {timestamp:?}")))?;
            }
            if fields.next().is_some() {
                return Err(at("trailing text".into()));
            }
            if !series.insert((name.clone(), labels.clone())) {
                return Err(at("the same series twice".into()));
            }
            family_name = family_of(&name, &types).to_owned();
            if types.get(&family_name).is_some_and(|t| t == "counter") && name == family_name {
                return Err(at("a counter's sample without _total".into()));
            }
            let family = exposition.families.entry(family_name.clone()).or_default();
            if family.kind == "histogram" && name.ends_with("_bucket") {
                let le = labels
                    .get("le")
                    .ok_or_else(|| at("a bucket without le".into()))?;
                parse_value(le).map_err(at)?;
            }
            family.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        // A family's lines must be contiguous.
        if current.as_deref() != Some(family_name.as_str()) {
            if finished.contains(&family_name) {
                return Err(at(format!("family {family_name} is split")));
            }
            if let Some(previous) = current.replace(family_name) {
                finished.insert(previous);
            }
        }
    }
    for (name, family) in &exposition.families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(exposition)
}

/// Buckets are cumulative, `+Inf` exists and equals `_count`, per series.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut by_series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
    for sample in &family.samples {
        let mut labels = sample.labels.clone();
        if sample.name.ends_with("_bucket") {
            let le = labels.remove("le").ok_or("no le")?;
            by_series
                .entry(labels)
                .or_default()
                .push((parse_value(&le)?, sample.value));
        } else if sample.name.ends_with("_count") {
            counts.insert(labels, sample.value);
        }
    }
    for (labels, buckets) in by_series {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for (le, value) in &buckets {
            if *le <= last.0 || *value < last.1 {
                return Err(format!(
                    "{name} {labels:?}: buckets not cumulative: {buckets:?}"
                ));
            }
            last = (*le, *value);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name} {labels:?}: no +Inf bucket"));
        }
        if counts.get(&labels) != Some(&last.1) {
            return Err(format!("{name} {labels:?}: _count is not the +Inf bucket"));
        }
    }
    Ok(())
}

/// discore's conventions on top of the format: every family has a HELP and a
/// TYPE, the `discore_` prefix, `_total` exactly on counters' samples (and
/// on no family's name, as OpenMetrics has it), and base units.
pub fn check_conventions(exposition: &Exposition) -> Result<(), String> {
    for (name, family) in &exposition.families {
        if family.kind.is_empty() || family.help.is_empty() {
            return Err(format!("{name} lacks TYPE or HELP"));
        }
        if !name.starts_with("discore_") {
            return Err(format!("{name} lacks the discore_ prefix"));
        }
        if name.ends_with("_total") {
            return Err(format!("{name}: a family's name has no _total"));
        }
        for sample in &family.samples {
            if (family.kind == "counter") != sample.name.ends_with("_total") {
                return Err(format!(
                    "{}: _total is for counters ({})",
                    sample.name, family.kind
                ));
            }
        }
        for unit in ["_ms", "_milliseconds", "_kb", "_kilobytes", "_mb"] {
            if name.contains(unit) {
                return Err(format!("{name}: not a base unit"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_rejects_what_a_scraper_would() {
    let good = "# HELP a A.\n# TYPE a counter\na_total{x=\"1\\\"\\n\"} 2\n# EOF\n";
    let parsed = parse(good).expect("valid");
    assert_eq!(parsed.value("a_total", &[("x", "1\"\n")]), 2.0);
    assert_eq!(parsed.families["a"].kind, "counter");
    // Each is rejected for its own fault, not for a missing # EOF.
    for bad in [
        "a 1\n# EOF",
        "a 1\n",
        "a 1\n# EOF\nb 1\n# EOF\n",
        "a 1\n\n# EOF\n",
        "# TYPE a counter\na 1\n# EOF\n",
        "# TYPE a_seconds gauge\n# UNIT a_seconds bytes\na_seconds 1\n# EOF\n",
        "a{x=\"1\"} 1\na{x=\"1\"} 2\n# EOF\n",
        "a{x=1} 1\n# EOF\n",
        "a{x=\"1\\t\"} 1\n# EOF\n",
        "a{1x=\"1\"} 1\n# EOF\n",
        "a one\n# EOF\n",
        "a 1\nb 1\na 2\n# EOF\n",
        "# TYPE a counter\n# TYPE a gauge\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n# EOF\n",
        "a 1 2 3\n# EOF\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
