//! The progress display of `service create`, `update` and `scale` without `--detach`: polls
//! the node every [`POLL_MS`] and draws one bar per slot until every slot runs a task of the
//! current spec, then watches for the verify period before it says the service converged.
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
//! On a terminal the lines are redrawn in place (indicatif); otherwise each line is printed
//! once per change, so scripts and tests can read it. Like Docker it waits until the service
//! converges or the user presses Ctrl-C (the service stays; only the waiting stops).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarm_actors::model::TaskState;

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

/// The lines one poll produces: the overall line, then one per slot (if shown) with how far
/// its bar is filled (no bar when the line gives a reason instead of a state).
pub fn lines(view: &ProgressView) -> (String, Vec<(String, Option<u64>)>) {
    let total = view.slots.len();
    let overall = format!("overall progress: {} out of {total} tasks", view.running());
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

/// The verify period: [`VERIFY_ENV`] if set, else the service's.
fn verify_ms(view: &ProgressView) -> anyhow::Result<u64> {
    match std::env::var(VERIFY_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{VERIFY_ENV}={v:?} is not a number of milliseconds")),
        Err(_) => Ok(view.monitor_ms),
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

    fn finish(self) {
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

/// Waits for `service` to converge, drawing progress, until it does or Ctrl-C.
pub async fn wait(
    client: &Client,
    service: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut display = Display::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // When the tasks were first seen converged, and the verify period then.
    let mut converged_since: Option<(Instant, u64)> = None;
    loop {
        let view = poll(client, service).await?;
        display.draw(&view, out)?;
        if view.converged() {
            let (since, verify) = match converged_since {
                Some(c) => c,
                None => {
                    let verify = verify_ms(&view)?;
                    if verify > 0 {
                        display.say(
                            &format!(
                                "verify: Waiting {} seconds to verify that tasks are stable...",
                                verify.div_ceil(1_000)
                            ),
                            out,
                        )?;
                    }
                    *converged_since.insert((Instant::now(), verify))
                }
            };
            if since.elapsed() >= Duration::from_millis(verify) {
                display.finish();
                writeln!(out, "verify: Service converged")?;
                return Ok(());
            }
        } else if converged_since.take().is_some() {
            display.say("verify: Detected task failure", out)?;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
            _ = &mut interrupted => {
                display.finish();
                writeln!(out, "Operation continuing in background.")?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
}
