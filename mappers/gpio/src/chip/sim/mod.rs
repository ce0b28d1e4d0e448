//! A simulated GPIO chip, for machines without GPIO hardware (CI, a laptop, the demo).
//!
//! It behaves like a kernel GPIO chip as seen through the character device: lines are requested
//! as inputs or outputs with active-low, bias and debounce; a line held by one requester is busy
//! for others. A released output keeps driving its level (as most kernel drivers and a
//! Raspberry Pi's registers do), and the next request of it as an output takes it over at that
//! level instead of driving its initial one; a released input goes back to its pull. On top of
//! that it is observable and drivable from the outside, like the kernel's `gpio-sim`:
//!
//! - every change of a pin's physical level is logged as a [`Transition`] with a timestamp and
//!   its [`Cause`] (bounded to the last [`LOG_CAPACITY`] entries);
//! - [`SimChip::drive`] sets the level an undriven line sees (a button, a sensor);
//! - [`SimChip::wire`] connects an output to an input, so driving the output moves the input
//!   and fires its edge events;
//! - [`SimChip::snapshot`] gives the whole chip as serialisable data;
//! - [`SimChip::subscribe`] streams each transition as it happens (no polling);
//! - [`SimGpio::persistent`] keeps the pins in files ([`store`]), so that a mapper started again
//!   finds them as the previous process left them, even after a SIGKILL.
//!
//! Debounce follows the kernel (and so gpiocdev): each change of an input restarts a timer of
//! the debounce period; when it expires with the level still different from the last reported
//! one, one edge is reported and reads return the new level. Debouncing runs on the tokio
//! runtime that requested the line.

pub mod store;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::broadcast;

use super::{
    Bias, EdgeEvent, EdgeSender, EdgeStream, GpioChip, GpioError, InputLine, InputRequest,
    LineOptions, OutputLine, OutputRequest,
};

/// How many lines a simulated chip has.
pub const SIM_LINES: u32 = 64;

/// How many transitions a chip keeps; older ones are dropped (and counted).
pub const LOG_CAPACITY: usize = 10_000;

/// How many transitions a slow [`SimChip::subscribe`] receiver may lag behind before it misses
/// some (it is told how many).
pub const SUBSCRIBER_CAPACITY: usize = 1024;

/// The physical level of a pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// 0 V.
    Low,
    /// Supply voltage.
    High,
}

impl Level {
    fn from_bool(high: bool) -> Level {
        if high { Level::High } else { Level::Low }
    }

    /// The pin level of a logical value on a line with this polarity.
    fn of_logical(active: bool, active_low: bool) -> Level {
        Level::from_bool(active != active_low)
    }

    /// The logical value this pin level means on a line with this polarity.
    fn logical(self, active_low: bool) -> bool {
        (self == Level::High) != active_low
    }
}

/// Why a pin's level changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cause {
    /// A line was requested (an output's initial level, an input's bias).
    Request,
    /// An output was set.
    Write,
    /// An input was released and went back to its pull.
    Release,
    /// The level was driven from outside ([`SimChip::drive`]).
    Drive,
    /// The output wired to this input changed, or a wire was added or removed.
    Wire,
}

/// One change of a pin's physical level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Position in the chip's log, from 1; never reused.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The line.
    pub line: u32,
    /// The new level.
    pub level: Level,
    /// Why it changed.
    pub cause: Cause,
}

/// How a requested line is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Driven by its holder.
    Out,
    /// Read by its holder.
    In,
}

/// One line in a [`ChipSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineSnapshot {
    /// The line offset.
    pub line: u32,
    /// The pin's physical level.
    pub level: Level,
    /// The holder's direction; `None` when the line is free.
    pub direction: Option<Direction>,
    /// The logical level the holder sees (active low applied, debounced); `None` when free.
    pub active: Option<bool>,
    /// Whether the holder requested active-low.
    pub active_low: bool,
    /// The holder's bias.
    pub bias: Option<Bias>,
    /// The holder's consumer label.
    pub consumer: Option<String>,
    /// The level driven from outside, if any.
    pub driven: Option<Level>,
    /// The output this input is wired to, if any.
    pub wired_from: Option<u32>,
    /// The level a released output still drives (the line is free; a new output request takes
    /// it over at this level).
    pub retained: Option<Level>,
}

/// The whole state of a chip, as served by the mapper's `--sim-http` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChipSnapshot {
    /// The chip name.
    pub chip: String,
    /// The lines that are requested, driven, wired or high.
    pub lines: Vec<LineSnapshot>,
    /// The transition log, oldest first.
    pub transitions: Vec<Transition>,
    /// How many old transitions were dropped from the log.
    pub dropped_transitions: u64,
}

#[derive(Debug)]
enum Mode {
    Output {
        driven: Level,
    },
    Input {
        debounce: Option<Duration>,
        /// The level last reported (reads return it when debouncing).
        debounced: Level,
        /// Bumped by every change: a debounce timer only fires if none came after it.
        generation: u64,
        edges: Option<EdgeSender>,
        runtime: Option<Handle>,
    },
}

#[derive(Debug)]
struct Holder {
    /// Which request holds the line: a stale handle never releases a newer request.
    request: u64,
    consumer: String,
    active_low: bool,
    bias: Option<Bias>,
    mode: Mode,
}

#[derive(Debug)]
struct LineState {
    holder: Option<Holder>,
    external: Option<Level>,
    /// A released output's level: the pin still drives it.
    retained: Option<Level>,
    level: Level,
}

#[derive(Debug)]
struct ChipState {
    lines: Vec<LineState>,
    /// Input line → the output line it is wired to.
    wires: BTreeMap<u32, u32>,
    log: VecDeque<Transition>,
    next_seq: u64,
    next_request: u64,
    dropped: u64,
    /// Where the pins are kept between processes (`None`: in memory only).
    store: Option<store::StateFile>,
}

#[derive(Debug)]
struct Shared {
    chip: String,
    label: String,
    state: Mutex<ChipState>,
    /// Every logged transition, as it is logged.
    transitions: broadcast::Sender<Transition>,
}

/// A simulated chip. Clones share the chip: the driver requests lines on one, a test or the
/// mapper's HTTP endpoint observes and drives another.
#[derive(Debug, Clone)]
pub struct SimChip {
    shared: Arc<Shared>,
}

impl SimChip {
    /// A chip named `name` with [`SIM_LINES`] lines, all low and free.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_lines(name, SIM_LINES)
    }

    /// A chip with `count` lines.
    pub fn with_lines(name: impl Into<String>, count: u32) -> Self {
        let name = name.into();
        let lines = (0..count)
            .map(|_| LineState {
                holder: None,
                external: None,
                retained: None,
                level: Level::Low,
            })
            .collect();
        SimChip {
            shared: Arc::new(Shared {
                label: format!("sim:{name}"),
                chip: name,
                transitions: broadcast::channel(SUBSCRIBER_CAPACITY).0,
                state: Mutex::new(ChipState {
                    lines,
                    wires: BTreeMap::new(),
                    log: VecDeque::new(),
                    next_seq: 1,
                    next_request: 1,
                    dropped: 0,
                    store: None,
                }),
            }),
        }
    }

    /// A chip with [`SIM_LINES`] lines whose pins are kept in a file in `dir` (see [`store`]):
    /// the outputs and outside drives found there are restored (the outputs as released lines
    /// still driving their level), and every change is written back.
    ///
    /// # Errors
    /// When the chip's file exists but cannot be read or parsed.
    pub fn persistent(name: impl Into<String>, dir: &Path) -> Result<Self, String> {
        let chip = Self::new(name);
        let (file, kept) = store::StateFile::open(dir, chip.chip_name())?;
        {
            let mut state = chip.state();
            let count = state.lines.len() as u32;
            let kept = kept.unwrap_or_default();
            for (&line, &level) in kept.outputs.iter().filter(|(l, _)| **l < count) {
                state.lines[line as usize].retained = Some(level);
            }
            for (&line, &level) in kept.driven.iter().filter(|(l, _)| **l < count) {
                state.lines[line as usize].external = Some(level);
            }
            // The pins are where the last process left them: nothing moved.
            for (index, line) in state.lines.iter_mut().enumerate() {
                if kept.high.contains(&(index as u32)) {
                    line.level = Level::High;
                }
            }
            state.store = Some(file);
        }
        Ok(chip)
    }

    fn state(&self) -> MutexGuard<'_, ChipState> {
        lock(&self.shared)
    }

    fn check_line(&self, state: &ChipState, line: u32) -> Result<usize, GpioError> {
        if (line as usize) < state.lines.len() {
            Ok(line as usize)
        } else {
            Err(GpioError::NoSuchLine {
                chip: self.shared.label.clone(),
                line,
                lines: Some(state.lines.len() as u32),
            })
        }
    }

    /// Drives a line from outside, as a button or a sensor would. An input sees this level
    /// unless it is wired to an output; an output ignores it until it is released.
    pub fn drive(&self, line: u32, level: Level) -> Result<(), GpioError> {
        let mut state = self.state();
        let index = self.check_line(&state, line)?;
        state.lines[index].external = Some(level);
        self.settle(&mut state, Cause::Drive, None);
        Ok(())
    }

    /// Stops driving a line from outside: it goes back to its pull.
    pub fn undrive(&self, line: u32) -> Result<(), GpioError> {
        let mut state = self.state();
        let index = self.check_line(&state, line)?;
        state.lines[index].external = None;
        self.settle(&mut state, Cause::Drive, None);
        Ok(())
    }

    /// Wires `output` to `input`: while `output` drives (requested as an output, or released
    /// and still driving), `input` reads its pin level.
    pub fn wire(&self, output: u32, input: u32) -> Result<(), GpioError> {
        self.wire_all(&[(output, input)])
    }

    /// Adds every `(output, input)` wire at once, or none if one of them is refused: the pins
    /// settle once, with all of them in place (a chip restored by [`SimChip::persistent`] gets
    /// its jumpers back without any input moving).
    pub fn wire_all(&self, wires: &[(u32, u32)]) -> Result<(), GpioError> {
        let mut state = self.state();
        let mut added = state.wires.clone();
        for &(output, input) in wires {
            self.check_line(&state, output)?;
            self.check_line(&state, input)?;
            if output == input {
                return Err(GpioError::Unsupported(format!(
                    "cannot wire line {output} of {} to itself",
                    self.shared.label
                )));
            }
            if added.contains_key(&output) {
                return Err(GpioError::Unsupported(format!(
                    "line {output} of {} is itself wired as an input",
                    self.shared.label
                )));
            }
            if added.values().any(|&from| from == input) {
                return Err(GpioError::Unsupported(format!(
                    "line {input} of {} already drives a wired input",
                    self.shared.label
                )));
            }
            added.insert(input, output);
        }
        state.wires = added;
        self.settle(&mut state, Cause::Wire, None);
        Ok(())
    }

    /// Removes the wire into `input`, if any.
    pub fn unwire(&self, input: u32) {
        let mut state = self.state();
        if state.wires.remove(&input).is_some() {
            self.settle(&mut state, Cause::Wire, None);
        }
    }

    /// A pin's physical level.
    pub fn level(&self, line: u32) -> Result<Level, GpioError> {
        let state = self.state();
        let index = self.check_line(&state, line)?;
        Ok(state.lines[index].level)
    }

    /// The transition log, oldest first.
    pub fn transitions(&self) -> Vec<Transition> {
        self.state().log.iter().cloned().collect()
    }

    /// Every transition logged from now on, as it is logged (in `seq` order).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.shared.transitions.subscribe()
    }

    /// The chip name (without the `sim:` prefix).
    pub fn chip_name(&self) -> &str {
        &self.shared.chip
    }

    /// One line as data, whether or not anything uses it.
    pub fn line(&self, line: u32) -> Result<LineSnapshot, GpioError> {
        let state = self.state();
        let index = self.check_line(&state, line)?;
        Ok(line_snapshot(&state, index))
    }

    /// The whole chip as data: the lines that are requested, driven, wired or high, and the
    /// transitions after `since` (a [`Transition::seq`]; 0 for the whole log).
    pub fn snapshot_since(&self, since: u64) -> ChipSnapshot {
        let state = self.state();
        let lines = (0..state.lines.len())
            .filter(|&index| {
                let line = &state.lines[index];
                line.holder.is_some()
                    || line.external.is_some()
                    || line.retained.is_some()
                    || line.level == Level::High
                    || state.wires.contains_key(&(index as u32))
            })
            .map(|index| line_snapshot(&state, index))
            .collect();
        ChipSnapshot {
            chip: self.shared.chip.clone(),
            lines,
            transitions: state
                .log
                .iter()
                .filter(|t| t.seq > since)
                .cloned()
                .collect(),
            dropped_transitions: state.dropped,
        }
    }

    /// The whole chip as data, with the whole transition log.
    pub fn snapshot(&self) -> ChipSnapshot {
        self.snapshot_since(0)
    }

    /// Recomputes every pin level after a change; logs what moved, and reports the edges of
    /// inputs whose level changed (except `quiet`, a line being requested). Outputs first:
    /// wired inputs read them.
    fn settle(&self, state: &mut ChipState, cause: Cause, quiet: Option<usize>) {
        let count = state.lines.len();
        let mut changed: Vec<(usize, Cause)> = Vec::new();
        for pass_outputs in [true, false] {
            for index in 0..count {
                let is_output = matches!(
                    state.lines[index].holder,
                    Some(Holder {
                        mode: Mode::Output { .. },
                        ..
                    })
                );
                if is_output != pass_outputs {
                    continue;
                }
                let level = self.resolve(state, index);
                if level == state.lines[index].level {
                    continue;
                }
                state.lines[index].level = level;
                // An input moved by the output it is wired to changed because of the wire.
                let source_moved = state
                    .wires
                    .get(&(index as u32))
                    .is_some_and(|&from| changed.iter().any(|&(i, _)| i == from as usize));
                changed.push((index, if source_moved { Cause::Wire } else { cause }));
            }
        }
        let now_ms = unix_ms();
        for (index, cause) in changed {
            let level = state.lines[index].level;
            self.log(
                state,
                Transition {
                    seq: 0,
                    at_ms: now_ms,
                    line: index as u32,
                    level,
                    cause,
                },
            );
            if quiet != Some(index) {
                self.input_changed(state, index);
            }
        }
        persist(state);
    }

    /// The level a line shows: the level its output drives (held or released); for anything
    /// else, the output it is wired to, the level driven from outside, or its pull (low when
    /// floating).
    fn resolve(&self, state: &ChipState, index: usize) -> Level {
        let line = &state.lines[index];
        if let Some(driven) = output_level(line) {
            return driven;
        }
        if let Some(driven) = state
            .wires
            .get(&(index as u32))
            .and_then(|&from| output_level(&state.lines[from as usize]))
        {
            return driven;
        }
        if let Some(level) = line.external {
            return level;
        }
        match line.holder.as_ref().and_then(|h| h.bias) {
            Some(Bias::PullUp) => Level::High,
            _ => Level::Low,
        }
    }

    fn log(&self, state: &mut ChipState, mut transition: Transition) {
        transition.seq = state.next_seq;
        state.next_seq += 1;
        if state.log.len() == LOG_CAPACITY {
            state.log.pop_front();
            state.dropped += 1;
        }
        edgetwin_sdk::hoptrace::mark("mapper.pin.moved");
        // No receiver is not an error: nobody is watching.
        let _ = self.shared.transitions.send(transition.clone());
        state.log.push_back(transition);
    }

    /// An input's pin changed: report the edge now, or restart its debounce timer.
    fn input_changed(&self, state: &mut ChipState, index: usize) {
        let line = &mut state.lines[index];
        let level = line.level;
        let Some(holder) = line.holder.as_mut() else {
            return;
        };
        let request = holder.request;
        let active_low = holder.active_low;
        let Mode::Input {
            debounce,
            debounced,
            generation,
            edges,
            runtime,
        } = &mut holder.mode
        else {
            return;
        };
        *generation += 1;
        match (debounce, runtime) {
            (Some(period), Some(runtime)) => {
                let chip = Arc::downgrade(&self.shared);
                let (period, generation) = (*period, *generation);
                runtime.spawn(async move {
                    tokio::time::sleep(period).await;
                    debounce_expired(chip, index, request, generation);
                });
            }
            _ => {
                *debounced = level;
                if let Some(edges) = edges {
                    edges.send(Ok(EdgeEvent {
                        active: level.logical(active_low),
                    }));
                }
            }
        }
    }

    /// Takes a line for a requester; returns the request id its handle keeps.
    fn request(&self, options: &LineOptions, mode: Mode) -> Result<u64, GpioError> {
        let line = options.line;
        let mut state = self.state();
        let index = self.check_line(&state, line)?;
        if let Some(current) = &state.lines[index].holder {
            return Err(GpioError::Busy {
                chip: self.shared.label.clone(),
                line,
                holder: Some(current.consumer.clone()),
            });
        }
        let request = state.next_request;
        state.next_request += 1;
        // A released output still driving its pin is taken over at its level; an input request
        // turns the driver off.
        let retained = state.lines[index].retained.take();
        let mode = match (mode, retained) {
            (Mode::Output { .. }, Some(driven)) => Mode::Output { driven },
            (mode, _) => mode,
        };
        state.lines[index].holder = Some(Holder {
            request,
            consumer: options.consumer.clone(),
            active_low: options.active_low,
            bias: options.bias,
            mode,
        });
        // An input starts out reporting what the line shows with its new bias: no edge.
        let level = self.resolve(&state, index);
        if let Some(Holder {
            mode: Mode::Input { debounced, .. },
            ..
        }) = &mut state.lines[index].holder
        {
            *debounced = level;
        }
        self.settle(&mut state, Cause::Request, Some(index));
        Ok(request)
    }

    fn release(&self, line: u32, request: u64) {
        let mut state = self.state();
        let Some(slot) = state.lines.get_mut(line as usize) else {
            return;
        };
        if slot.holder.as_ref().is_some_and(|h| h.request == request) {
            // An output keeps driving its level; an input goes back to its pull.
            if let Some(Holder {
                mode: Mode::Output { driven },
                ..
            }) = slot.holder.take()
            {
                slot.retained = Some(driven);
            }
            self.settle(&mut state, Cause::Release, None);
        }
    }

    /// Runs `f` on the holder of `line` if `request` still holds it.
    fn with_holder<R>(
        &self,
        line: u32,
        request: u64,
        f: impl FnOnce(&mut ChipState, usize) -> R,
    ) -> Result<R, GpioError> {
        let mut state = self.state();
        let index = line as usize;
        if state
            .lines
            .get(index)
            .and_then(|l| l.holder.as_ref())
            .is_some_and(|h| h.request == request)
        {
            Ok(f(&mut state, index))
        } else {
            Err(GpioError::Io {
                chip: self.shared.label.clone(),
                detail: format!("line {line} was released"),
            })
        }
    }
}

/// The level a line's output drives: held as an output, or released and still driving.
fn output_level(line: &LineState) -> Option<Level> {
    match &line.holder {
        Some(Holder {
            mode: Mode::Output { driven },
            ..
        }) => Some(*driven),
        Some(_) => None,
        None => line.retained,
    }
}

/// Writes the chip's pins to its state file, if it has one (see [`store`]).
fn persist(state: &mut ChipState) {
    if state.store.is_none() {
        return;
    }
    let mut kept = store::PinState::default();
    for (index, line) in state.lines.iter().enumerate() {
        if let Some(level) = output_level(line) {
            kept.outputs.insert(index as u32, level);
        }
        if let Some(level) = line.external {
            kept.driven.insert(index as u32, level);
        }
        if line.level == Level::High {
            kept.high.insert(index as u32);
        }
    }
    if let Some(file) = state.store.as_mut() {
        file.save(kept);
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, ChipState> {
    // The state is plain data that is consistent after every statement that can panic.
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn line_snapshot(state: &ChipState, index: usize) -> LineSnapshot {
    let line = &state.lines[index];
    let holder = line.holder.as_ref();
    LineSnapshot {
        line: index as u32,
        level: line.level,
        direction: holder.map(|h| match h.mode {
            Mode::Output { .. } => Direction::Out,
            Mode::Input { .. } => Direction::In,
        }),
        active: holder.map(|h| seen_level(line, h).logical(h.active_low)),
        active_low: holder.is_some_and(|h| h.active_low),
        bias: holder.and_then(|h| h.bias),
        consumer: holder.map(|h| h.consumer.clone()),
        driven: line.external,
        wired_from: state.wires.get(&(index as u32)).copied(),
        retained: line.retained,
    }
}

/// The level a holder sees: debounced for a debounced input, the pin otherwise.
fn seen_level(line: &LineState, holder: &Holder) -> Level {
    match &holder.mode {
        Mode::Input {
            debounce: Some(_),
            debounced,
            ..
        } => *debounced,
        _ => line.level,
    }
}

/// A debounce timer expired: report the edge if nothing changed since it was started.
fn debounce_expired(chip: Weak<Shared>, index: usize, request: u64, generation: u64) {
    let Some(shared) = chip.upgrade() else {
        return;
    };
    let mut state = lock(&shared);
    let Some(line) = state.lines.get_mut(index) else {
        return;
    };
    let level = line.level;
    let Some(holder) = line.holder.as_mut().filter(|h| h.request == request) else {
        return;
    };
    let active_low = holder.active_low;
    if let Mode::Input {
        debounced,
        generation: current,
        edges,
        ..
    } = &mut holder.mode
        && *current == generation
        && *debounced != level
    {
        *debounced = level;
        if let Some(edges) = edges {
            edges.send(Ok(EdgeEvent {
                active: level.logical(active_low),
            }));
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl GpioChip for SimChip {
    fn name(&self) -> &str {
        &self.shared.label
    }

    fn request_output(&self, request: &OutputRequest) -> Result<Box<dyn OutputLine>, GpioError> {
        let options = &request.options;
        let id = self.request(
            options,
            Mode::Output {
                driven: Level::of_logical(request.initial, options.active_low),
            },
        )?;
        Ok(Box::new(SimOutput {
            chip: self.clone(),
            line: options.line,
            request: id,
            active_low: options.active_low,
        }))
    }

    fn request_input(&self, request: &InputRequest) -> Result<Box<dyn InputLine>, GpioError> {
        let options = &request.options;
        let runtime = match request.debounce {
            Some(_) => Some(Handle::try_current().map_err(|_| {
                GpioError::Unsupported("debouncing a simulated line needs a tokio runtime".into())
            })?),
            None => None,
        };
        let (sender, stream) = if request.edges {
            let (tx, rx) = EdgeStream::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let id = self.request(
            options,
            Mode::Input {
                debounce: request.debounce,
                debounced: Level::Low,
                generation: 0,
                edges: sender,
                runtime,
            },
        )?;
        Ok(Box::new(SimInput {
            chip: self.clone(),
            line: options.line,
            request: id,
            edges: stream,
        }))
    }
}

/// An output line of a [`SimChip`].
#[derive(Debug)]
struct SimOutput {
    chip: SimChip,
    line: u32,
    request: u64,
    active_low: bool,
}

impl OutputLine for SimOutput {
    fn set(&mut self, active: bool) -> Result<(), GpioError> {
        let level = Level::of_logical(active, self.active_low);
        let chip = self.chip.clone();
        self.chip
            .with_holder(self.line, self.request, |state, index| {
                if let Some(Holder {
                    mode: Mode::Output { driven },
                    ..
                }) = &mut state.lines[index].holder
                {
                    *driven = level;
                }
                chip.settle(state, Cause::Write, None);
            })
    }

    fn get(&self) -> Result<bool, GpioError> {
        let active_low = self.active_low;
        self.chip
            .with_holder(self.line, self.request, |state, index| {
                state.lines[index].level.logical(active_low)
            })
    }
}

impl Drop for SimOutput {
    fn drop(&mut self) {
        self.chip.release(self.line, self.request);
    }
}

/// An input line of a [`SimChip`].
#[derive(Debug)]
struct SimInput {
    chip: SimChip,
    line: u32,
    request: u64,
    edges: Option<EdgeStream>,
}

impl InputLine for SimInput {
    fn get(&self) -> Result<bool, GpioError> {
        self.chip
            .with_holder(self.line, self.request, |state, index| {
                let line = &state.lines[index];
                match &line.holder {
                    Some(holder) => seen_level(line, holder).logical(holder.active_low),
                    None => false,
                }
            })
    }

    fn edges(&mut self) -> Option<EdgeStream> {
        self.edges.take()
    }
}

impl Drop for SimInput {
    fn drop(&mut self) {
        self.chip.release(self.line, self.request);
    }
}

/// The simulated chips of one mapper, by name, created on first use. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct SimGpio {
    chips: Arc<Mutex<BTreeMap<String, SimChip>>>,
    /// Where each chip keeps its pins ([`SimGpio::persistent`]).
    state_dir: Option<PathBuf>,
}

impl SimGpio {
    /// No chips yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chips whose pins are kept in `dir`, one file per chip (see [`store`]), so that a mapper
    /// started again with the same directory finds its pins as it left them. The directory is
    /// created if needed, and the chips already kept there are loaded now, so that a broken
    /// file is a start-up error.
    ///
    /// # Errors
    /// When the directory cannot be created or read, or a file in it is not a chip's state.
    pub fn persistent(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut chips = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            chips.insert(name.to_owned(), SimChip::persistent(name, dir)?);
        }
        Ok(SimGpio {
            chips: Arc::new(Mutex::new(chips)),
            state_dir: Some(dir.to_path_buf()),
        })
    }

    /// The chip named `name`, created with [`SIM_LINES`] lines if it does not exist.
    pub fn chip(&self, name: &str) -> SimChip {
        let mut chips = self.chips.lock().unwrap_or_else(PoisonError::into_inner);
        chips
            .entry(name.to_owned())
            .or_insert_with(|| self.create(name))
            .clone()
    }

    /// A new chip, kept in the state directory when there is one. (A file that broke after
    /// [`SimGpio::persistent`] checked the directory is left alone: the chip runs in memory.)
    fn create(&self, name: &str) -> SimChip {
        let Some(dir) = &self.state_dir else {
            return SimChip::new(name);
        };
        SimChip::persistent(name, dir).unwrap_or_else(|err| {
            tracing::warn!(chip = name, error = %err, "simulated chip starts from its defaults");
            SimChip::new(name)
        })
    }

    /// The chip named `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<SimChip> {
        let chips = self.chips.lock().unwrap_or_else(PoisonError::into_inner);
        chips.get(name).cloned()
    }

    /// Every chip, by name.
    pub fn chips(&self) -> Vec<SimChip> {
        let chips = self.chips.lock().unwrap_or_else(PoisonError::into_inner);
        chips.values().cloned().collect()
    }

    /// Every chip as data.
    pub fn snapshot(&self) -> Vec<ChipSnapshot> {
        self.chips().iter().map(SimChip::snapshot).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(line: u32) -> LineOptions {
        LineOptions {
            line,
            active_low: false,
            bias: None,
            consumer: format!("test:{line}"),
        }
    }

    fn output(line: u32, initial: bool) -> OutputRequest {
        OutputRequest {
            options: options(line),
            initial,
        }
    }

    fn input(line: u32, debounce: Option<Duration>) -> InputRequest {
        InputRequest {
            options: options(line),
            debounce,
            edges: true,
        }
    }

    fn causes(chip: &SimChip, line: u32) -> Vec<(Level, Cause)> {
        chip.transitions()
            .into_iter()
            .filter(|t| t.line == line)
            .map(|t| (t.level, t.cause))
            .collect()
    }

    #[test]
    fn outputs_drive_pins_and_log_only_real_transitions() {
        let chip = SimChip::new("gpiochip0");
        let mut red = chip.request_output(&output(17, false)).expect("free line");
        assert_eq!(chip.level(17), Ok(Level::Low));
        red.set(true).expect("set");
        red.set(true).expect("set again");
        assert_eq!(red.get(), Ok(true));
        assert_eq!(chip.level(17), Ok(Level::High));
        red.set(false).expect("set");
        assert_eq!(
            causes(&chip, 17),
            vec![(Level::High, Cause::Write), (Level::Low, Cause::Write)],
            "setting the same level twice is one transition"
        );
        let log = chip.transitions();
        assert!(
            log.windows(2)
                .all(|w| w[0].seq < w[1].seq && w[0].at_ms <= w[1].at_ms)
        );
    }

    #[test]
    fn subscribers_get_each_transition_as_it_is_logged() {
        let chip = SimChip::new("gpiochip0");
        let mut before = chip.subscribe();
        let mut red = chip.request_output(&output(17, false)).expect("free line");
        red.set(true).expect("set");
        let mut after = chip.subscribe();
        red.set(false).expect("set");
        let seen = |rx: &mut broadcast::Receiver<Transition>| {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|t| (t.line, t.level, t.cause))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            seen(&mut before),
            vec![
                (17, Level::High, Cause::Write),
                (17, Level::Low, Cause::Write)
            ]
        );
        assert_eq!(
            seen(&mut after),
            vec![(17, Level::Low, Cause::Write)],
            "a subscriber sees only what comes after it subscribed"
        );
    }

    #[test]
    fn active_low_inverts_the_pin_not_the_logical_level() {
        let chip = SimChip::new("gpiochip0");
        let mut request = output(5, true);
        request.options.active_low = true;
        let mut lamp = chip.request_output(&request).expect("free line");
        assert_eq!(
            chip.level(5),
            Ok(Level::Low),
            "active and active-low: pin low"
        );
        assert_eq!(lamp.get(), Ok(true));
        lamp.set(false).expect("set");
        assert_eq!(chip.level(5), Ok(Level::High));
        assert_eq!(causes(&chip, 5), vec![(Level::High, Cause::Write)]);
    }

    #[test]
    fn a_held_line_is_busy_and_free_again_once_dropped() {
        let chip = SimChip::new("gpiochip0");
        let first = chip.request_output(&output(3, true)).expect("free line");
        let busy = chip.request_input(&input(3, None)).err();
        assert_eq!(
            busy,
            Some(GpioError::Busy {
                chip: "sim:gpiochip0".into(),
                line: 3,
                holder: Some("test:3".into())
            })
        );
        drop(first);
        assert_eq!(
            chip.level(3),
            Ok(Level::High),
            "a released output keeps driving its level"
        );
        assert_eq!(chip.line(3).map(|l| l.retained), Ok(Some(Level::High)));
        assert_eq!(causes(&chip, 3), vec![(Level::High, Cause::Request)]);
        let input = chip.request_input(&input(3, None)).expect("free again");
        assert_eq!(
            (input.get(), chip.level(3)),
            (Ok(false), Ok(Level::Low)),
            "requested as an input, the line stops driving and follows its pull"
        );
        drop(input);
        assert_eq!(
            causes(&chip, 3),
            vec![(Level::High, Cause::Request), (Level::Low, Cause::Request)]
        );
    }

    #[test]
    fn an_output_requested_again_is_taken_over_at_its_level() {
        let chip = SimChip::new("gpiochip0");
        chip.wire(17, 5).expect("wire");
        let mut red = chip.request_output(&output(17, false)).expect("free line");
        red.set(true).expect("set");
        drop(red);
        assert_eq!(
            chip.level(5),
            Ok(Level::High),
            "the wired input still sees it"
        );
        let again = chip.request_output(&output(17, false)).expect("free again");
        assert_eq!(again.get(), Ok(true), "the initial level is not driven");
        assert_eq!(
            causes(&chip, 17),
            vec![(Level::High, Cause::Write)],
            "no transition: the pin never moved"
        );
        assert_eq!(chip.line(17).map(|l| l.retained), Ok(None), "held again");
    }

    #[test]
    fn a_persistent_chip_finds_its_pins_as_a_killed_process_left_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = SimChip::persistent("gpiochip0", dir.path()).expect("no state yet");
        first.wire(17, 5).expect("wire");
        let mut red = first.request_output(&output(17, false)).expect("free line");
        red.set(true).expect("set");
        first.drive(4, Level::Low).expect("drive");
        // The process dies holding the line: no release runs.
        std::mem::forget(red);
        drop(first);

        let second = SimChip::persistent("gpiochip0", dir.path()).expect("state read");
        // Two jumpers, as the command line gives them: each input keeps its level.
        second.wire_all(&[(17, 5), (27, 6)]).expect("wire again");
        assert_eq!(second.level(17), Ok(Level::High));
        assert_eq!(second.level(5), Ok(Level::High), "through the wire");
        assert_eq!(second.line(4).map(|l| l.driven), Ok(Some(Level::Low)));
        let red = second
            .request_output(&output(17, false))
            .expect("free line");
        assert_eq!(red.get(), Ok(true), "taken over, not reset");
        assert_eq!(
            second.transitions(),
            [],
            "the restored pins never moved, nor did wiring them again move the input"
        );
    }

    #[test]
    fn persistent_gpio_loads_every_kept_chip_and_refuses_a_broken_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let gpio = SimGpio::persistent(dir.path()).expect("empty dir");
            let mut line = gpio
                .chip("bank1")
                .request_output(&output(2, true))
                .expect("free line");
            line.set(true).expect("set");
        }
        let gpio = SimGpio::persistent(dir.path()).expect("state read");
        assert!(gpio.get("bank1").is_some(), "loaded at start");
        assert_eq!(gpio.chip("bank1").level(2), Ok(Level::High));
        std::fs::write(
            dir.path().join("bank2.json"),
            br#"{"outputs": {"2": "middle"}}"#,
        )
        .expect("write");
        let err = SimGpio::persistent(dir.path()).expect_err("broken file");
        assert!(err.contains("bank2.json"), "{err}");
    }

    #[test]
    fn lines_beyond_the_chip_are_refused() {
        let chip = SimChip::with_lines("small", 4);
        let err = chip.request_output(&output(4, false)).err();
        assert_eq!(
            err,
            Some(GpioError::NoSuchLine {
                chip: "sim:small".into(),
                line: 4,
                lines: Some(4)
            })
        );
        assert!(chip.drive(9, Level::High).is_err());
    }

    #[test]
    fn inputs_follow_bias_then_drive() {
        let chip = SimChip::new("gpiochip0");
        let mut request = input(8, None);
        request.options.bias = Some(Bias::PullUp);
        let button = chip.request_input(&request).expect("free line");
        assert_eq!(button.get(), Ok(true), "pulled up and undriven");
        chip.drive(8, Level::Low).expect("drive");
        assert_eq!(button.get(), Ok(false));
        chip.undrive(8).expect("undrive");
        assert_eq!(button.get(), Ok(true));
        assert_eq!(
            causes(&chip, 8),
            vec![
                (Level::High, Cause::Request),
                (Level::Low, Cause::Drive),
                (Level::High, Cause::Drive)
            ]
        );
    }

    #[tokio::test]
    async fn a_wired_output_moves_the_input_and_fires_edges() {
        let chip = SimChip::new("gpiochip0");
        chip.wire(17, 27).expect("wire");
        let mut out = chip.request_output(&output(17, false)).expect("free line");
        let mut request = input(27, None);
        request.options.active_low = true;
        let mut sensed = chip.request_input(&request).expect("free line");
        let mut edges = sensed.edges().expect("edges requested");
        assert!(sensed.edges().is_none(), "the stream is handed out once");
        assert_eq!(sensed.get(), Ok(true), "low pin on an active-low input");
        out.set(true).expect("set");
        assert_eq!(edges.next().await, Some(Ok(EdgeEvent { active: false })));
        out.set(false).expect("set");
        assert_eq!(edges.next().await, Some(Ok(EdgeEvent { active: true })));
        assert_eq!(
            causes(&chip, 27),
            vec![(Level::High, Cause::Wire), (Level::Low, Cause::Wire)]
        );
        drop(sensed);
        assert_eq!(
            edges.next().await,
            None,
            "releasing the line ends the stream"
        );
    }

    #[test]
    fn wiring_mistakes_are_refused() {
        let chip = SimChip::new("gpiochip0");
        assert!(chip.wire(1, 1).is_err());
        chip.wire(1, 2).expect("wire");
        assert!(chip.wire(2, 3).is_err(), "a wired input cannot drive");
        assert!(
            chip.wire_all(&[(5, 6), (6, 7)]).is_err(),
            "checked against the wires given with it"
        );
        assert!(chip.wire(5, 6).is_ok(), "a refused batch adds nothing");
        assert!(
            chip.wire(4, 1).is_err(),
            "a driving output cannot be wired as an input"
        );
        chip.unwire(2);
        assert!(chip.wire(2, 3).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_reports_one_edge_after_the_line_settles() {
        let chip = SimChip::new("gpiochip0");
        let period = Duration::from_millis(10);
        let mut button = chip
            .request_input(&input(4, Some(period)))
            .expect("free line");
        let mut edges = button.edges().expect("edges");
        // A bouncing press: three changes within the period, ending high.
        for level in [Level::High, Level::Low, Level::High] {
            chip.drive(4, level).expect("drive");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        assert_eq!(button.get(), Ok(false), "not settled yet: the old level");
        assert_eq!(edges.next().await, Some(Ok(EdgeEvent { active: true })));
        assert_eq!(button.get(), Ok(true));
        // A glitch shorter than the period that returns to the same level reports nothing.
        chip.drive(4, Level::Low).expect("drive");
        tokio::time::sleep(Duration::from_millis(2)).await;
        chip.drive(4, Level::High).expect("drive");
        tokio::time::sleep(Duration::from_millis(50)).await;
        chip.drive(4, Level::Low).expect("drive");
        assert_eq!(
            edges.next().await,
            Some(Ok(EdgeEvent { active: false })),
            "the glitch was swallowed: the next edge is the release"
        );
        assert_eq!(
            causes(&chip, 4).len(),
            6,
            "the log keeps every raw transition"
        );
    }

    #[test]
    fn debounce_without_a_runtime_is_refused_clearly() {
        let chip = SimChip::new("gpiochip0");
        let err = chip
            .request_input(&input(4, Some(Duration::from_millis(5))))
            .err();
        assert!(matches!(err, Some(GpioError::Unsupported(m)) if m.contains("tokio runtime")));
        assert!(
            chip.request_input(&input(4, None)).is_ok(),
            "nothing was held"
        );
    }

    #[test]
    fn a_stale_handle_does_not_release_the_next_holder() {
        let chip = SimChip::new("gpiochip0");
        let first = chip.request_output(&output(6, false)).expect("free line");
        let request = chip.state().lines[6].holder.as_ref().map(|h| h.request);
        drop(first);
        let mut second = chip.request_output(&output(6, false)).expect("free again");
        chip.release(6, request.unwrap_or_default());
        assert!(second.set(true).is_ok(), "still held by the second request");
    }

    #[test]
    fn snapshot_shows_requested_driven_and_wired_lines() {
        let chip = SimChip::new("gpiochip0");
        let mut red = chip.request_output(&output(17, false)).expect("free line");
        red.set(true).expect("set");
        chip.drive(22, Level::High).expect("drive");
        chip.wire(17, 27).expect("wire");
        let snapshot = chip.snapshot();
        let lines: Vec<u32> = snapshot.lines.iter().map(|l| l.line).collect();
        assert_eq!(lines, vec![17, 22, 27]);
        let json = serde_json::to_value(&snapshot).expect("serialises");
        assert_eq!(json["lines"][0]["level"], "high");
        assert_eq!(json["lines"][0]["direction"], "out");
        assert_eq!(json["lines"][0]["active"], true);
        assert_eq!(json["lines"][0]["consumer"], "test:17");
        assert_eq!(json["lines"][1]["driven"], "high");
        assert_eq!(json["lines"][2]["wiredFrom"], 17);
        assert_eq!(json["lines"][2]["level"], "high");
        assert_eq!(json["transitions"][0]["cause"], "write");
        let later = chip.snapshot_since(snapshot.transitions[0].seq);
        assert_eq!(later.transitions.len(), snapshot.transitions.len() - 1);
        let free = chip.line(40).expect("line exists");
        assert_eq!(
            (free.level, free.direction, free.consumer),
            (Level::Low, None, None)
        );
    }

    #[test]
    fn the_log_is_bounded_and_counts_what_it_dropped() {
        let chip = SimChip::new("gpiochip0");
        let mut line = chip.request_output(&output(0, false)).expect("free line");
        for i in 0..LOG_CAPACITY + 5 {
            line.set(i % 2 == 0).expect("set");
        }
        let snapshot = chip.snapshot();
        assert_eq!(snapshot.transitions.len(), LOG_CAPACITY);
        assert_eq!(snapshot.dropped_transitions, 5);
        assert_eq!(snapshot.transitions[0].seq, 6);
    }

    #[test]
    fn sim_gpio_shares_chips_by_name() {
        let gpio = SimGpio::new();
        let a = gpio.chip("gpiochip0");
        let _held = a.request_output(&output(1, true)).expect("free line");
        assert_eq!(gpio.chip("gpiochip0").level(1), Ok(Level::High));
        assert_eq!(gpio.chip("gpiochip1").level(1), Ok(Level::Low));
        assert_eq!(gpio.snapshot().len(), 2);
        assert!(gpio.get("gpiochip1").is_some());
        assert!(gpio.get("gpiochip2").is_none(), "get creates nothing");
    }
}
