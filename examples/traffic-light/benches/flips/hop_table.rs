//! The per-hop table of a hop trace (`EDGETWIN_TRACE_HOPS`): for each measured flip, each hop's
//! first mark after the mark of the hop it follows (and before the next flip starts), then the
//! median and p99 of each step over the flips that have both marks.

/// The bench's mark at the start of each measured flip; it splits the trace into flips.
pub const FLIP_START: &str = "bench.set.start";

/// The hops of one flip, in causal order: each with the hop it follows. A hop's time is its
/// first mark at or after the time of the hop it follows. Where a mark is written after the step
/// that wakes the next hop (a commit that broadcasts, an append that notifies), the next hop
/// follows the mark before it: another thread may run it before the mark is written.
const CHAIN: &[(&str, &str)] = &[
    // ctl set: GET, then PATCH with the resourceVersion.
    ("registry.patch.received", FLIP_START),
    ("registry.patch.committed", "registry.patch.received"),
    ("bench.set.returned", "registry.patch.committed"),
    // Desired path: registry watch → controller → hub outbox → tunnel → edge → MQTT → mapper.
    ("controller.event", "registry.patch.received"),
    ("hub.store.woken", "controller.event"),
    ("hub.store.served", "hub.store.woken"),
    ("controller.hub.appended", "hub.store.served"),
    ("hub.link.woken", "hub.store.served"),
    ("hub.link.outbox.read", "hub.link.woken"),
    ("hub.link.msg.queued", "hub.link.outbox.read"),
    ("hub.link.flushed", "hub.link.msg.queued"),
    ("edge.link.msg.received", "hub.link.msg.queued"),
    ("edge.cloud.received", "edge.link.msg.received"),
    ("edge.cloud.committed", "edge.cloud.received"),
    ("edge.cloud.published", "edge.cloud.committed"),
    ("mapper.delta.received", "edge.cloud.committed"),
    ("mapper.device.woken", "mapper.delta.received"),
    ("mapper.pin.moved", "mapper.device.woken"),
    ("bench.pin.seen", "mapper.pin.moved"),
    // Reported path: read-back → twin/update → edge commit → tunnel → controller → registry.
    ("mapper.written", "mapper.pin.moved"),
    ("mapper.read.back", "mapper.written"),
    ("mapper.report.queued", "mapper.read.back"),
    ("edge.bus.forwarded", "mapper.report.queued"),
    ("edge.bus.received", "edge.bus.forwarded"),
    ("edge.bus.committed", "edge.bus.received"),
    ("edge.link.woken", "edge.bus.committed"),
    ("edge.link.outbox.read", "edge.link.woken"),
    ("edge.link.msg.queued", "edge.link.outbox.read"),
    ("edge.link.flushed", "edge.link.msg.queued"),
    ("hub.link.msg.received", "edge.link.msg.queued"),
    ("controller.status.due", "hub.link.msg.received"),
    ("controller.status.write", "controller.status.due"),
    ("controller.status.committed", "controller.status.write"),
    ("bench.status.seen", "controller.status.write"),
];

/// The steps' statistics.
pub struct HopTable {
    flips: usize,
    rows: Vec<Row>,
}

struct Row {
    hop: &'static str,
    after: &'static str,
    /// Microseconds from the hop it follows, per flip that has both.
    step: Vec<u64>,
    /// Microseconds from the flip's start.
    since_start: Vec<u64>,
}

impl HopTable {
    /// Reads the trace's lines (`<µs> <pid> <hop>`); malformed lines are skipped.
    pub fn of(trace: &str) -> HopTable {
        let mut marks: Vec<(u64, &str)> = trace
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let micros = fields.next()?.parse().ok()?;
                let _pid = fields.next()?;
                Some((micros, fields.next()?))
            })
            .collect();
        marks.sort_by_key(|(micros, _)| *micros);
        let starts: Vec<usize> = marks
            .iter()
            .enumerate()
            .filter(|(_, (_, hop))| *hop == FLIP_START)
            .map(|(index, _)| index)
            .collect();
        let mut rows: Vec<Row> = CHAIN
            .iter()
            .map(|&(hop, after)| Row {
                hop,
                after,
                step: Vec::new(),
                since_start: Vec::new(),
            })
            .collect();
        for (n, &first) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(marks.len());
            let flip = &marks[first..end];
            let start = flip[0].0;
            let mut times: Vec<(&str, u64)> = vec![(FLIP_START, start)];
            for row in &mut rows {
                let Some(&(_, after_at)) = times.iter().find(|(hop, _)| *hop == row.after) else {
                    continue;
                };
                let Some(&(at, _)) = flip
                    .iter()
                    .find(|(at, hop)| *hop == row.hop && *at >= after_at)
                else {
                    continue;
                };
                times.push((row.hop, at));
                row.step.push(at - after_at);
                row.since_start.push(at - start);
            }
        }
        HopTable {
            flips: starts.len(),
            rows,
        }
    }

    /// A markdown table: each step's median and p99, and its median time since the flip began.
    pub fn render(&self) -> String {
        let mut out = format!(
            "## Hops ({} flips; a step is from the hop it follows; times in ms)\n\n\
             | hop | after | flips | step p50 | step p99 | since set p50 |\n|---|---|---|---|---|---|\n",
            self.flips
        );
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                row.hop,
                row.after,
                row.step.len(),
                ms(percentile(&row.step, 0.50)),
                ms(percentile(&row.step, 0.99)),
                ms(percentile(&row.since_start, 0.50)),
            ));
        }
        out
    }
}

fn percentile(samples: &[u64], p: f64) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

fn ms(micros: Option<u64>) -> String {
    micros.map_or_else(|| "–".to_owned(), |us| format!("{:.3}", us as f64 / 1000.0))
}
