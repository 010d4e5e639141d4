//! Statistics and results: percentiles, the report each benchmark adds to, and its JSON.

use super::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) mean: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// Nearest-rank percentiles.
pub(crate) fn stats(samples: &[f64]) -> Stats {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len().max(1);
    let rank = |p: f64| {
        s.get(((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Stats {
        n: s.len(),
        p50: rank(50.0),
        p99: rank(99.0),
        mean: s.iter().sum::<f64>() / n as f64,
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
    }
}

impl Stats {
    pub(crate) fn json(&self) -> Value {
        json!({ "n": self.n, "p50": r3(self.p50), "p99": r3(self.p99), "mean": r3(self.mean), "min": r3(self.min), "max": r3(self.max) })
    }
}

pub(crate) fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One row of the table and one object of the JSON.
pub(crate) struct Measurement {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) values: Value,
    pub(crate) baseline: Value,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
    pub(crate) note: String,
    /// How the table shows the value and the baseline.
    pub(crate) shown: String,
    pub(crate) shown_baseline: String,
}

impl Measurement {
    pub(crate) fn new(name: &str, unit: &'static str) -> Measurement {
        Measurement {
            name: name.into(),
            unit,
            values: Value::Null,
            baseline: Value::Null,
            ratio: None,
            target: String::new(),
            met: None,
            note: String::new(),
            shown: String::new(),
            shown_baseline: String::new(),
        }
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "values": self.values,
            "baseline": self.baseline,
            "ratio": self.ratio.map(r3),
            "target": self.target,
            "met": self.met,
            "note": self.note,
        })
    }
}

pub(crate) struct Report {
    pub(crate) measurements: Vec<Measurement>,
    pub(crate) failures: Vec<String>,
}

impl Report {
    pub(crate) fn push(&mut self, m: Measurement) {
        let met = match m.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        eprintln!("  {:<34} {} [{}]", m.name, m.shown, met);
        self.measurements.push(m);
    }
}
