//! Results: one row per step, the baseline, the ratio; as Markdown and JSON.

use std::path::Path;

use serde::Serialize;

use crate::brokers::{BaselineResult, SinkKind};
use crate::BoxError;

/// One rate step.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The generator's rate (logical X events/s; a body may carry several envelopes).
    pub offered_events_per_sec: f64,
    pub step_secs: f64,
    /// Bodies the emulator emitted (each delivered to the relay's webhook).
    pub bodies_emitted: usize,
    /// Bodies X delivered with a 2xx.
    pub bodies_delivered: usize,
    pub webhook_attempts: usize,
    /// Attempts answered non-2xx, timed out or refused.
    pub webhook_non_2xx: usize,
    /// Messages the consumer received during the step (broker-level duplicates included).
    pub consumer_messages: u64,
    /// Consumer bodies without an envelope `id`, since the start of the run.
    pub consumer_unparsable: u64,
    /// Unique envelope ids of the delivered bodies.
    pub envelopes_expected: usize,
    /// Of those, received by the consumer.
    pub envelopes_received: usize,
    /// envelopes_expected / step_secs.
    pub offered_envelopes_per_sec: f64,
    /// envelopes_received / time_to_all_secs.
    pub delivered_envelopes_per_sec: f64,
    /// From the step's start to the consumer's last receipt (or to giving up).
    pub time_to_all_secs: f64,
    /// The consumer received every expected envelope.
    pub complete: bool,
    /// X's first delivery attempt of the body → consumer receipt, ms.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_p999: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// Relay utime+stime over the step / wall time of the step, % of one core.
    pub relay_cpu_percent: Option<f64>,
    /// X's emission → its first delivery attempt (X's own queueing: at most 32 deliveries in
    /// flight per webhook), ms; not part of the latency above.
    pub x_queue_ms_p50: Option<f64>,
    pub x_queue_ms_p99: Option<f64>,
    /// This process (emulator + consumer + harness) CPU over the step, % of one core.
    pub harness_cpu_percent: Option<f64>,
    /// Relay VmHWM at the end of the step, MiB.
    pub relay_peak_rss_mib: Option<f64>,
    /// complete, no non-2xx, delivered ≥ 90 % of offered.
    pub kept_up: bool,
}

impl Step {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        format!(
            "{} bodies, {} envelopes ({:.0}/s offered), {} received ({:.0}/s), non-2xx {}, \
             p50 {} ms, p99 {} ms, p99.9 {} ms, cpu {}%, peak rss {} MiB, {}",
            self.bodies_emitted,
            self.envelopes_expected,
            self.offered_envelopes_per_sec,
            self.envelopes_received,
            self.delivered_envelopes_per_sec,
            self.webhook_non_2xx,
            opt(self.latency_ms_p50, 1),
            opt(self.latency_ms_p99, 1),
            opt(self.latency_ms_p999, 1),
            opt(self.relay_cpu_percent, 0),
            opt(self.relay_peak_rss_mib, 1),
            if self.kept_up {
                "kept up"
            } else {
                "did NOT keep up"
            }
        )
    }
}

/// The machine the run was on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub model_name: String,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model_name = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            model_name,
            kernel,
        }
    }
}

/// Everything of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub sink: &'static str,
    pub command: String,
    pub started_at: String,
    pub machine: Machine,
    pub note: Option<String>,
    /// Whether VmHWM could be reset per step (else it is the peak since the relay started).
    pub peak_rss_per_step: bool,
    pub steps: Vec<Step>,
    /// Index into `steps` of the last step that kept up.
    pub sustained: Option<usize>,
    pub baseline_method: &'static str,
    pub baseline: Option<BaselineResult>,
}

impl Report {
    pub fn new(
        sink: SinkKind,
        command: String,
        note: Option<String>,
        peak_rss_per_step: bool,
    ) -> Report {
        Report {
            sink: sink.name(),
            command,
            started_at: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            machine: Machine::detect(),
            note,
            peak_rss_per_step,
            steps: Vec::new(),
            sustained: None,
            baseline_method: sink.baseline_desc(),
            baseline: None,
        }
    }

    /// Delivered envelopes/s of the sustained step over the baseline's.
    pub fn ratio(&self) -> Option<f64> {
        let s = &self.steps[self.sustained?];
        let b = self.baseline.as_ref()?;
        (b.events_per_sec > 0.0).then(|| s.delivered_envelopes_per_sec / b.events_per_sec)
    }

    /// The sink's Markdown section (starting with its `##` heading).
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = format!("## {}\n\n", self.sink);
        s.push_str(&format!(
            "Run {} with\n\n```sh\n{}\n```\n\n",
            self.started_at, self.command
        ));
        s.push_str(&format!(
            "Machine: `nproc` = {}, {} (Linux {}). The emulator, the relay, the broker and the \
             consumer all share these {} cores.",
            m.nproc, m.model_name, m.kernel, m.nproc
        ));
        if let Some(n) = &self.note {
            s.push_str(&format!(" {n}"));
        }
        s.push_str("\n\n");
        s.push_str(
            "| offered events/s | bodies | envelopes | offered env/s | delivered env/s | \
             webhook non-2xx | p50 ms | p99 ms | p99.9 ms | relay CPU % of a core | \
             relay peak RSS MiB | X queue p50/p99 ms | emulator+consumer CPU % | kept up |\n",
        );
        s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|\n");
        for (i, st) in self.steps.iter().enumerate() {
            s.push_str(&self.step_row(i, st));
        }
        if let Some(b) = &self.baseline {
            s.push_str(&format!(
                "| raw client | | {} | | {:.0} | | | | | | | | | baseline |\n",
                b.messages, b.events_per_sec
            ));
        }
        s.push('\n');
        match self.sustained {
            Some(i) => {
                let st = &self.steps[i];
                s.push_str(&format!(
                    "Sustained: {:.0} envelopes/s delivered at {:.0} offered events/s{}.\n",
                    st.delivered_envelopes_per_sec,
                    st.offered_events_per_sec,
                    if i + 1 == self.steps.len() {
                        " (the highest step tried: the relay kept up with every step)"
                    } else {
                        ""
                    }
                ));
            }
            None => {
                s.push_str("Sustained: none (the relay did not keep up with the first step).\n")
            }
        }
        if let Some(b) = &self.baseline {
            s.push_str(&format!(
                "\nBaseline ({}): {} messages of the same envelopes ({:.0} bytes on average), \
                 all publishes confirmed after {:.2} s, all received after {:.2} s: \
                 {:.0} events/s ({} received).\n",
                self.baseline_method,
                b.messages,
                b.bytes as f64 / b.messages.max(1) as f64,
                b.publish_secs,
                b.all_received_secs,
                b.events_per_sec,
                b.received
            ));
        }
        match self.ratio() {
            Some(r) => s.push_str(&format!(
                "\nRatio relay / raw at the sustained step: **{r:.3}**. The relay's figure is \
                 bounded by the offered rate (it is paced), the raw client's is not: a ratio \
                 below 1 at a step that kept up says how much headroom the broker had, not \
                 that the relay is slower by that factor.\n"
            )),
            None => s.push_str("\nRatio relay / raw: n/a (no sustained step).\n"),
        }
        if !self.peak_rss_per_step {
            s.push_str(
                "\nPeak RSS could not be reset per step: it is the peak since the relay started.\n",
            );
        }
        s
    }

    /// One step's row of the table.
    fn step_row(&self, i: usize, st: &Step) -> String {
        let kept = match (st.kept_up, self.sustained == Some(i)) {
            (true, true) => "yes (sustained)".to_owned(),
            (true, false) => "yes".to_owned(),
            (false, _) if !st.complete => format!(
                "no ({} of {} received)",
                st.envelopes_received, st.envelopes_expected
            ),
            (false, _) if st.webhook_non_2xx > 0 => "no (non-2xx)".to_owned(),
            (false, _) => "no (< 90 % of offered)".to_owned(),
        };
        format!(
            "| {:.0} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} |\n",
            st.offered_events_per_sec,
            st.bodies_emitted,
            st.envelopes_expected,
            st.offered_envelopes_per_sec,
            st.delivered_envelopes_per_sec,
            st.webhook_non_2xx,
            opt(st.latency_ms_p50, 1),
            opt(st.latency_ms_p99, 1),
            opt(st.latency_ms_p999, 1),
            opt(st.relay_cpu_percent, 0),
            opt(st.relay_peak_rss_mib, 1),
            opt(st.x_queue_ms_p50, 1),
            opt(st.x_queue_ms_p99, 1),
            opt(st.harness_cpu_percent, 0),
            kept
        )
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "n/a".into(),
    }
}

const HEADER: &str = "# End-to-end benchmark (`activity-relay-bench`)\n\n\
See [`crates/bench/README.md`](../../crates/bench/README.md) for what is measured and how. \
Each section below is written by a run of the harness for one sink (a new run replaces its \
sink's section). Figures are measured, not asserted: they depend on the machine and on \
what else ran on it.\n";

fn markers(sink: &str) -> (String, String) {
    (
        format!("<!-- bench:{sink}:begin -->"),
        format!("<!-- bench:{sink}:end -->"),
    )
}

/// Replaces the section of `sink` in `path` (between its markers), or appends it.
pub fn write_section(path: &Path, sink: &str, section: &str) -> Result<(), BoxError> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HEADER.to_owned(),
        Err(e) => return Err(format!("reading {}: {e}", path.display()).into()),
    };
    let (begin, end) = markers(sink);
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &old[..b], block, &old[e + end.len()..])
        }
        _ => format!("{}\n\n{}\n", old.trim_end(), block),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(path, new).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}
