//! The progress display of `service create`, `update`, `scale` and `rollback` without
//! `--detach`: polls the node every [`POLL_MS`] and draws one bar per slot until every slot
//! runs a task of the current spec, watches the tasks for the verify period, and follows the
//! service's update status (Docker's strings throughout):
//!
//! ```text
//! overall progress: 2 out of 3 tasks
//! 1/3: running   [==================================================>]
//! 2/3: running   [==================================================>]
//! 3/3: no suitable node (scheduling constraints not satisfied on 1 node)
//! verify: Waiting 5 seconds to verify that tasks are stable...
//! verify: Service converged
//! ```
//!
//! A rollback (automatic or asked for) says why once, counts as "rolling back update: N out
//! of M tasks", and ends with "rollback: rollback completed" after the service converged. A
//! paused update or rollback ends the command with an error that carries the leader's
//! message. What to say and when to stop is decided by [`Follow`], from views and times
//! only; [`wait`] is the shell that polls, draws and sleeps.
//!
//! On a terminal the lines are redrawn in place (indicatif); otherwise each line is printed
//! once per change, so scripts and tests can read it. Like Docker it waits until the service
//! converges or the user presses Ctrl-C (the update carries on; only the waiting stops).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarm_actors::model::{TaskState, UpdateState};

use crate::control::client::Client;
use crate::control::proto::{ControlRequest, ControlResponse, ProgressView, SlotProgress};

/// How often the node is asked where the tasks stand.
pub const POLL_MS: u64 = 300;

/// Overrides the verify period (the service's `update.monitor_ms`), in milliseconds; tests set
/// it low so that they do not wait five seconds per command.
pub const VERIFY_ENV: &str = "SWARM_NODE_VERIFY_MS";

/// Slots drawn as bars; a larger service shows only the overall line (as Docker does past its
/// own limit), so that the display stays bounded.
pub const SLOTS_SHOWN_MAX: usize = 100;

/// Bar length in characters, Docker's.
pub(crate) const BAR_CHARS: u64 = 50;

/// Failed polls in a row that the display rides out (a manager busy electing a leader, a
/// dropped connection) before the command gives up with the last error: about 6 s.
pub const POLL_FAILURES_MAX: u32 = 20;

/// The lines one poll produces: the overall line, then one per slot (if shown) with how far
/// its bar is filled (no bar when the line gives a reason instead of a state).
pub fn lines(view: &ProgressView) -> (String, Vec<(String, Option<u64>)>) {
    let total = view.slots.len();
    let overall = if view.rolling_back() {
        format!(
            "rolling back update: {} out of {total} tasks",
            view.running()
        )
    } else {
        format!("overall progress: {} out of {total} tasks", view.running())
    };
    if total > SLOTS_SHOWN_MAX {
        return (overall, Vec::new());
    }
    let slots = view
        .slots
        .iter()
        .map(|s| slot_line(s, total, view.global))
        .collect();
    (overall, slots)
}

fn slot_line(s: &SlotProgress, total: usize, global: bool) -> (String, Option<u64>) {
    let label = if global {
        s.label.clone()
    } else {
        format!("{}/{total}", s.label)
    };
    let word = match s.state {
        None => "new".to_string(),
        Some(st) => st.to_string().to_lowercase(),
    };
    let waiting = matches!(s.state, None | Some(TaskState::Pending));
    if waiting && !s.message.is_empty() {
        (format!("{label}: {}", s.message), None)
    } else {
        (format!("{label}: {word:<9}"), Some(progress(s.state)))
    }
}

/// Docker's bar: `[=====>     ]`, [`BAR_CHARS`] wide plus the arrow head.
pub(crate) fn bar(filled: u64) -> String {
    let filled = filled.min(BAR_CHARS) as usize;
    format!(
        "[{}>{}]",
        "=".repeat(filled),
        " ".repeat(BAR_CHARS as usize - filled)
    )
}

/// How far along a bar is: states up to Running fill it, in order.
fn progress(state: Option<TaskState>) -> u64 {
    let step = match state {
        None => 0,
        Some(s) if s.is_terminal() => 0,
        Some(s) => s as u64 + 1,
    };
    step * BAR_CHARS / (TaskState::Running as u64 + 1)
}

/// [`VERIFY_ENV`]'s value, if set: it replaces the service's verify period.
fn verify_override() -> anyhow::Result<Option<u64>> {
    match std::env::var(VERIFY_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{VERIFY_ENV}={v:?} is not a number of milliseconds")),
        Err(_) => Ok(None),
    }
}

/// How the command goes on after a poll.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    Poll,
    /// Converged, verified, and no update under way: the command succeeds.
    Done,
    /// The update or rollback paused: the command fails with this text.
    Failed(String),
}

/// What one poll shows, in order: lines said above the tasks, whether the tasks are drawn,
/// lines said below them.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub before: Vec<String>,
    pub draw: bool,
    pub after: Vec<String>,
    pub next: Next,
}

/// Follows a service through successive [`ProgressView`]s: what to say and when to stop, as
/// Docker's CLI decides it. Time comes in as milliseconds on the command's own clock, so that
/// tests drive it without waiting.
#[derive(Debug, Default)]
pub struct Follow {
    /// Replaces the service's verify period ([`VERIFY_ENV`]).
    verify_override_ms: Option<u64>,
    /// The reason of the current rollback has been said (once per rollback, as Docker does).
    rollback_said: bool,
    /// A rollback was seen under way during this wait, so its completion is reported.
    rollback_seen: bool,
    /// An update or rollback was seen under way during this wait.
    rolling_seen: bool,
    /// When the tasks were first seen converged, and the verify period then.
    converged_since: Option<(u64, u64)>,
}

impl Follow {
    pub fn new(verify_override_ms: Option<u64>) -> Follow {
        Follow {
            verify_override_ms,
            ..Follow::default()
        }
    }

    pub fn step(&mut self, view: &ProgressView, now_ms: u64) -> Step {
        let mut step = Step {
            before: Vec::new(),
            draw: true,
            after: Vec::new(),
            next: Next::Poll,
        };
        let message = view
            .update_status
            .as_ref()
            .map_or("", |u| u.message.as_str());
        let state = view.update_state();
        match state {
            Some(UpdateState::Paused) => {
                step.draw = false;
                step.next = Next::Failed(format!("service update paused: {message}"));
                return step;
            }
            Some(UpdateState::RollbackPaused) => {
                step.draw = false;
                step.next = Next::Failed(format!("service rollback paused: {message}"));
                return step;
            }
            Some(UpdateState::Updating) => {
                // A new update after a rollback: its own rollback, if any, is said again.
                self.rollback_said = false;
                self.rolling_seen = true;
            }
            Some(UpdateState::RollbackStarted) => {
                if !self.rollback_said && !message.is_empty() {
                    step.before.push(format!("rollback: {message}"));
                }
                self.rollback_said = true;
                self.rollback_seen = true;
                self.rolling_seen = true;
            }
            Some(UpdateState::Completed | UpdateState::RollbackCompleted) | None => {}
        }
        let rolling = state.is_some_and(UpdateState::is_rolling);
        if !view.converged() {
            if self.converged_since.take().is_some() {
                step.after.push("verify: Detected task failure".to_string());
            }
            // Docker's rule: an update the leader finished although the tasks do not all run
            // (failure action `continue`) ends the wait; there is nothing more to follow.
            if self.rolling_seen && !rolling && state.is_some() {
                step.next = Next::Done;
            }
            return step;
        }
        let (since, verify) = match self.converged_since {
            Some(c) => c,
            None => {
                let verify = self.verify_override_ms.unwrap_or(view.monitor_ms);
                if verify > 0 {
                    step.after.push(format!(
                        "verify: Waiting {} seconds to verify that tasks are stable...",
                        verify.div_ceil(1_000)
                    ));
                }
                *self.converged_since.insert((now_ms, verify))
            }
        };
        // The leader marks the update completed one monitor period after its last task ran;
        // until then a task may still fail and turn the update into a pause or a rollback.
        if now_ms.saturating_sub(since) >= verify && !rolling {
            step.after.push("verify: Service converged".to_string());
            if self.rollback_seen && state == Some(UpdateState::RollbackCompleted) {
                step.after.push(format!("rollback: {message}"));
            }
            step.next = Next::Done;
        }
        step
    }
}

/// Where the output goes: bars redrawn in place, or plain lines printed on change.
enum Display {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        slots: Vec<ProgressBar>,
    },
    Plain {
        shown: BTreeMap<usize, String>,
    },
}

impl Display {
    fn new() -> Display {
        if std::io::stdout().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let overall = multi.add(ProgressBar::new(0).with_style(text_style()));
            Display::Bars {
                multi,
                overall,
                slots: Vec::new(),
            }
        } else {
            Display::Plain {
                shown: BTreeMap::new(),
            }
        }
    }

    fn draw(&mut self, view: &ProgressView, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        let (overall_text, slot_lines) = lines(view);
        match self {
            Display::Bars {
                multi,
                overall,
                slots,
            } => {
                overall.set_message(overall_text);
                while slots.len() < slot_lines.len() {
                    slots.push(multi.add(ProgressBar::new(0).with_style(text_style())));
                }
                while slots.len() > slot_lines.len() {
                    if let Some(b) = slots.pop() {
                        b.finish_and_clear();
                        multi.remove(&b);
                    }
                }
                for (line, (text, filled)) in slots.iter().zip(slot_lines) {
                    match filled {
                        Some(f) => line.set_message(format!("{text} {}", bar(f))),
                        None => line.set_message(text),
                    }
                }
            }
            Display::Plain { shown } => {
                let all = std::iter::once(overall_text).chain(slot_lines.into_iter().map(|l| l.0));
                for (i, text) in all.enumerate() {
                    let text = text.trim_end().to_string();
                    if shown.get(&i) != Some(&text) {
                        writeln!(out, "{text}")?;
                        shown.insert(i, text);
                    }
                }
            }
        }
        Ok(())
    }

    fn say(&self, text: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        match self {
            Display::Bars { multi, .. } => multi.println(text)?,
            Display::Plain { .. } => writeln!(out, "{text}")?,
        }
        Ok(())
    }

    /// Leaves the bars where they are; what is written to `out` afterwards goes below them.
    fn finish(&mut self) {
        if let Display::Bars { overall, slots, .. } = self {
            overall.finish();
            for b in slots {
                b.finish();
            }
        }
    }
}

fn text_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").expect("a fixed template")
}

async fn poll(client: &Client, service: &str) -> anyhow::Result<ProgressView> {
    match client
        .call(ControlRequest::ServiceProgress {
            service: service.to_string(),
        })
        .await?
    {
        ControlResponse::Progress(p) => Ok(p),
        other => bail!("unexpected answer from the node: {other:?}"),
    }
}

/// Waits for `service` to converge, drawing progress, until it does, its update pauses
/// (an error), or Ctrl-C (the update carries on).
pub async fn wait(
    client: &Client,
    service: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut follow = Follow::new(verify_override()?);
    let mut display = Display::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match poll(client, service).await {
            Ok(view) => {
                failures = 0;
                let now_ms = started.elapsed().as_millis() as u64;
                match show(&mut display, &view, follow.step(&view, now_ms), out)? {
                    Next::Poll => {}
                    Next::Done => return Ok(()),
                    Next::Failed(e) => bail!("{e}"),
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= POLL_FAILURES_MAX {
                    display.finish();
                    return Err(e);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
            _ = &mut interrupted => {
                display.finish();
                writeln!(out, "Operation continuing in background.")?;
                writeln!(out, "Use `swarm-node service ps {service}` to check progress.")?;
                return Ok(());
            }
        }
    }
}

/// Puts one [`Step`] on the display; returns how the command goes on. The last step's
/// closing lines go below the finished bars, where Docker prints them.
fn show(
    display: &mut Display,
    view: &ProgressView,
    step: Step,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Next> {
    for line in &step.before {
        display.say(line, out)?;
    }
    if step.draw {
        display.draw(view, out)?;
    }
    if step.next != Next::Poll {
        display.finish();
    }
    for line in &step.after {
        match step.next {
            Next::Poll => display.say(line, out)?,
            _ => writeln!(out, "{line}")?,
        }
    }
    Ok(step.next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_actors::model::UpdateStatus;

    fn view(states: &[(Option<TaskState>, &str)]) -> ProgressView {
        ProgressView {
            id: "x".into(),
            global: false,
            spec_version: 1,
            monitor_ms: 5_000,
            slots: states
                .iter()
                .enumerate()
                .map(|(i, (s, m))| SlotProgress {
                    label: (i + 1).to_string(),
                    state: *s,
                    message: m.to_string(),
                })
                .collect(),
            update_status: None,
            old_live: 0,
        }
    }

    fn status(mut v: ProgressView, state: UpdateState, message: &str) -> ProgressView {
        v.update_status = Some(UpdateStatus {
            state,
            started_ms: 1_000,
            completed_ms: None,
            message: message.to_string(),
        });
        v
    }

    const RUNNING: (Option<TaskState>, &str) = (Some(TaskState::Running), "");

    /// Plays polls (command-clock time, view) through `follow` onto a plain display, up to the
    /// first step that ends the wait; returns what was printed and how it ended.
    fn play(follow: &mut Follow, polls: &[(u64, ProgressView)]) -> (String, Next) {
        let mut d = Display::Plain {
            shown: BTreeMap::new(),
        };
        let mut out = Vec::new();
        let mut next = Next::Poll;
        for (now_ms, v) in polls {
            next = show(&mut d, v, follow.step(v, *now_ms), &mut out).unwrap();
            if next != Next::Poll {
                break;
            }
        }
        (String::from_utf8(out).unwrap(), next)
    }

    #[test]
    fn lines_say_what_each_slot_does() {
        let v = view(&[
            (Some(TaskState::Running), ""),
            (Some(TaskState::Preparing), ""),
            (
                Some(TaskState::Pending),
                "no suitable node (1 node not available)",
            ),
            (None, ""),
        ]);
        let (overall, slots) = lines(&v);
        assert_eq!(overall, "overall progress: 1 out of 4 tasks");
        assert_eq!(slots[0], ("1/4: running  ".to_string(), Some(BAR_CHARS)));
        assert!(slots[1].0.starts_with("2/4: preparing"));
        assert!(slots[1].1.is_some_and(|f| f > 0 && f < BAR_CHARS));
        assert_eq!(
            slots[2],
            (
                "3/4: no suitable node (1 node not available)".to_string(),
                None
            )
        );
        assert_eq!(slots[3], ("4/4: new      ".to_string(), Some(0)));
        assert_eq!(bar(BAR_CHARS), format!("[{}>]", "=".repeat(50)));
        assert_eq!(bar(2), format!("[==>{}]", " ".repeat(48)));
        assert!(!v.converged());
        let done = view(&[
            (Some(TaskState::Running), ""),
            (Some(TaskState::Running), ""),
        ]);
        assert!(done.converged());
    }

    #[test]
    fn large_services_show_the_overall_line_only() {
        let many = vec![(Some(TaskState::Running), ""); SLOTS_SHOWN_MAX + 1];
        let (overall, slots) = lines(&view(&many));
        assert!(overall.ends_with(&format!(
            "{} out of {} tasks",
            SLOTS_SHOWN_MAX + 1,
            SLOTS_SHOWN_MAX + 1
        )));
        assert!(slots.is_empty());
    }

    #[test]
    fn plain_output_prints_a_line_once_per_change() {
        let mut d = Display::Plain {
            shown: BTreeMap::new(),
        };
        let mut out = Vec::new();
        let v = view(&[(Some(TaskState::Pending), "")]);
        d.draw(&v, &mut out).unwrap();
        d.draw(&v, &mut out).unwrap();
        d.draw(&view(&[(Some(TaskState::Running), "")]), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "overall progress: 0 out of 1 tasks\n1/1: pending\n\
             overall progress: 1 out of 1 tasks\n1/1: running\n"
        );
    }

    #[test]
    fn a_rollback_says_why_once_counts_as_rolling_back_and_says_when_it_completed() {
        const WHY: &str = "update rolled back due to failure or early termination of task abc";
        let mut old = status(
            view(&[RUNNING, (Some(TaskState::Starting), "")]),
            UpdateState::Updating,
            "update in progress",
        );
        old.old_live = 1;
        let mut back = status(
            view(&[RUNNING, (None, "")]),
            UpdateState::RollbackStarted,
            WHY,
        );
        back.old_live = 1;
        let converged = status(view(&[RUNNING, RUNNING]), UpdateState::RollbackStarted, WHY);
        let completed = status(
            view(&[RUNNING, RUNNING]),
            UpdateState::RollbackCompleted,
            "rollback completed",
        );
        let mut f = Follow::new(None);
        let (text, next) = play(
            &mut f,
            &[
                (0, old),
                (300, back.clone()),
                (600, back),
                (900, converged.clone()),
                // The verify period has passed, but the leader still watches the tasks.
                (6_000, converged),
                (6_300, completed),
            ],
        );
        assert_eq!(next, Next::Done);
        assert_eq!(
            text,
            format!(
                "overall progress: 1 out of 2 tasks\n1/2: running\n2/2: starting\n\
                 rollback: {WHY}\nrolling back update: 1 out of 2 tasks\n2/2: new\n\
                 rolling back update: 2 out of 2 tasks\n2/2: running\n\
                 verify: Waiting 5 seconds to verify that tasks are stable...\n\
                 verify: Service converged\nrollback: rollback completed\n"
            )
        );
    }

    #[test]
    fn a_manual_rollback_says_so_before_the_first_tasks() {
        let v = status(
            view(&[RUNNING]),
            UpdateState::RollbackStarted,
            "manually requested rollback",
        );
        let (text, next) = play(&mut Follow::new(Some(0)), &[(0, v)]);
        assert_eq!(next, Next::Poll, "a rollback under way is not done: {text}");
        assert!(
            text.starts_with("rollback: manually requested rollback\nrolling back update: 1"),
            "{text}"
        );
    }

    #[test]
    fn a_paused_update_or_rollback_ends_the_wait_with_the_leaders_message() {
        const WHY: &str = "update paused due to failure or early termination of task abc";
        let starting = view(&[(Some(TaskState::Starting), "")]);
        let updating = status(starting, UpdateState::Updating, "update in progress");
        let paused = status(view(&[RUNNING]), UpdateState::Paused, WHY);
        let (text, next) = play(&mut Follow::new(None), &[(0, updating), (300, paused)]);
        assert_eq!(next, Next::Failed(format!("service update paused: {WHY}")));
        assert_eq!(text, "overall progress: 0 out of 1 tasks\n1/1: starting\n");
        let why = "rollback paused due to failure or early termination of task abc";
        let paused = status(view(&[RUNNING]), UpdateState::RollbackPaused, why);
        let (_, next) = play(&mut Follow::new(None), &[(0, paused)]);
        assert_eq!(
            next,
            Next::Failed(format!("service rollback paused: {why}"))
        );
    }

    #[test]
    fn done_waits_for_the_verify_period_and_for_the_update_to_complete() {
        // A create or a scale: no update status, so only the verify period counts.
        let mut f = Follow::new(None);
        assert_eq!(f.step(&view(&[RUNNING]), 0).next, Next::Poll);
        assert_eq!(f.step(&view(&[RUNNING]), 4_999).next, Next::Poll);
        assert_eq!(f.step(&view(&[RUNNING]), 5_000).next, Next::Done);
        // An update: converged and verified, but Done only once the leader says completed.
        let updating = status(
            view(&[RUNNING]),
            UpdateState::Updating,
            "update in progress",
        );
        let mut f = Follow::new(Some(0));
        let first = f.step(&updating, 0);
        assert!(first.after.is_empty(), "no verify period: {first:?}");
        assert_eq!(first.next, Next::Poll);
        assert_eq!(f.step(&updating, 60_000).next, Next::Poll);
        let done = status(view(&[RUNNING]), UpdateState::Completed, "update completed");
        let last = f.step(&done, 60_300);
        assert_eq!(last.next, Next::Done);
        assert_eq!(last.after, vec!["verify: Service converged".to_string()]);
        // An old task still up (start-first) keeps the service from converging.
        let mut overlap = view(&[RUNNING]);
        overlap.old_live = 1;
        assert!(!overlap.converged());
        let mut f = Follow::new(Some(0));
        assert_eq!(f.step(&overlap, 0).next, Next::Poll);
    }

    #[test]
    fn a_task_failing_during_verification_starts_the_period_again() {
        let mut f = Follow::new(None);
        let (text, next) = play(
            &mut f,
            &[
                (0, view(&[RUNNING])),
                (3_000, view(&[(Some(TaskState::Failed), "exit 1")])),
                (3_300, view(&[RUNNING])),
                // 5 s after the first convergence, but only 2 s after the second.
                (5_300, view(&[RUNNING])),
            ],
        );
        assert_eq!(next, Next::Poll);
        assert_eq!(
            text.matches("verify: Waiting 5 seconds").count(),
            2,
            "{text}"
        );
        assert!(text.contains("verify: Detected task failure\n"), "{text}");
        assert_eq!(f.step(&view(&[RUNNING]), 8_300).next, Next::Done);
    }

    #[test]
    fn an_update_completed_without_converging_ends_the_wait_only_if_it_was_followed() {
        let failing = view(&[(Some(TaskState::Failed), "exit 1")]);
        let updating = status(failing.clone(), UpdateState::Updating, "update in progress");
        let completed = status(failing, UpdateState::Completed, "update completed");
        // A completed status left from before this wait does not end it.
        let mut f = Follow::new(None);
        assert_eq!(f.step(&completed, 0).next, Next::Poll);
        let mut f = Follow::new(None);
        assert_eq!(f.step(&updating, 0).next, Next::Poll);
        assert_eq!(f.step(&completed, 300).next, Next::Done);
    }
}
