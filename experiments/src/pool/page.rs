//! `docs/process-pool.md` and its timelines, written from saved results only.

use super::{PoolResults, table};
use crate::error::Result;
use crate::render::timeline::{Line, timeline_svg};
use crate::render::{markdown_table, page_header, write_file};
use std::path::Path;

/// The page's title.
pub const TITLE: &str = "Worker pools: who gives the memory back";

impl crate::results::Checked for PoolResults {
    /// At least one worker of at least 1 MiB; each scenario once; no more workers alive than
    /// the pool had.
    fn check(&self) -> std::result::Result<(), String> {
        if self.workers == 0 || self.mib == 0 {
            return Err(format!("{} workers of {} MiB were measured", self.workers, self.mib));
        }
        let mut seen = Vec::new();
        for s in &self.scenarios {
            let name = s.scenario.name();
            if seen.contains(&s.scenario) {
                return Err(format!("scenario {name} appears twice"));
            }
            seen.push(s.scenario);
            let most = s.timeline.iter().map(|p| p.live).max().unwrap_or(0).max(s.live_at_end);
            if most > self.workers {
                return Err(format!(
                    "scenario {name} counts {most} live workers in a pool of {}",
                    self.workers
                ));
            }
        }
        Ok(())
    }
}

/// Writes `docs/process-pool.md` and `docs/process-pool/<scenario>.svg`.
pub fn render(results: &PoolResults, docs: &Path) -> Result<()> {
    let mut md = page_header(TITLE, &results.meta);
    md.push_str(INTRO);
    md.push_str(&format!(
        "\n## The measurements\n\nEach pool had **{} workers**, each holding **{} MiB** of small \
         objects allocated through {} and written. Every scenario was sampled every 10 ms: \
         workers alive (not zombies) and their summed `VmRSS`. \"At end\" is the last sample \
         before the experiment cleaned up after the naive cases. Measuring took {:.1} s.\n\n",
        results.workers, results.mib, results.allocator, results.elapsed_s
    ));
    if results.scenarios.is_empty() {
        md.push_str(
            "_No data: the results file holds no scenario, so there is nothing to show._\n\n",
        );
    }
    let (header, rows) = table(results);
    md.push_str(&markdown_table(&header, &rows));
    let peak = results.scenarios.iter().map(|s| s.rss_peak_bytes).max().unwrap_or(0);
    md.push_str(&format!(
        "\n_to zero workers_: from the key event (shutdown, drop, the parent's SIGKILL) until no \
         worker was alive; `never` means they outlived the observation. _left for clean-up_: \
         workers arenalab itself had to SIGKILL and reap afterwards, because nothing else \
         would have. A worker's RSS is more than the {mib} MiB of objects it holds: it also \
         counts the program's own code and libraries, the allocator's headers and rounding, and \
         its bookkeeping, so {workers} workers of {mib} MiB sum to more than {total} MiB (here \
         up to {peak:.0} MiB, {each:.0} MiB a worker).\n\n\
         ## Timelines\n\nThick line: the workers' summed `VmRSS`; thin line: live workers × \
         {mib} MiB (the objects each worker holds), for comparison. While a shutdown, a drop or a kill is under way a second thread \
         keeps sampling. The summed RSS can fall before the live count does: a worker's address \
         space is torn down (its `VmRSS` shrinking as pages are unmapped) before it becomes a \
         zombie, and a zombie no longer counts as live.\n\n",
        mib = results.mib,
        workers = results.workers,
        total = results.mib * results.workers as u64,
        peak = crate::measure::mib(peak),
        each = crate::measure::mib(peak) / results.workers as f64,
    ));
    for s in &results.scenarios {
        let per_worker = results.mib as f64;
        let lines = vec![
            Line {
                label: "summed worker RSS".into(),
                points: s
                    .timeline
                    .iter()
                    .map(|p| (p.t_ms, crate::measure::mib(p.rss_bytes)))
                    .collect(),
                thin: false,
            },
            Line {
                label: format!("live workers × {} MiB", results.mib),
                points: s.timeline.iter().map(|p| (p.t_ms, p.live as f64 * per_worker)).collect(),
                thin: true,
            },
        ];
        let svg = timeline_svg(
            &format!("{}: {}", s.scenario.name(), s.description),
            "ms since the scenario began",
            "MiB",
            &lines,
            &s.events.iter().skip(1).map(|e| (e.t_ms, short(&e.what))).collect::<Vec<_>>(),
        )?;
        let file = format!("process-pool/{}.svg", s.scenario.name());
        write_file(&docs.join(&file), &svg)?;
        md.push_str(&format!("### {}\n\n{}.\n\n", s.scenario.name(), capitalise(&s.description)));
        for e in &s.events {
            md.push_str(&format!("- {:.0} ms: {}\n", e.t_ms, e.what));
        }
        md.push_str(&format!("\n![{}]({file})\n\n", s.scenario.name()));
    }
    write_file(&docs.join("process-pool.md"), &md)
}

/// An event's text up to its first colon or bracket, for a chart marker.
fn short(what: &str) -> String {
    what.split([':', '(']).next().unwrap_or(what).trim().to_string()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().collect::<String>() + c.as_str())
}

const INTRO: &str = "\
A pool of worker processes multiplies one worker's memory by the number of workers, and none \
of it comes back until the workers end: whatever the allocator inside a worker keeps or \
returns, the kernel takes the whole address space back at exit (see \
[process-exit.md](process-exit.md)), and not a page before. So the memory question for a pool \
is a lifetime question: who ends the workers, and when?

- **Shut down and joined**: every worker is signalled, waited for and reaped; the memory comes
  back as each worker ends.
- **A handle dropped without shutdown**: a pool handle that only holds `std::process::Child` \
  values does nothing on drop (std neither kills nor waits), so the workers live on, each \
  holding its memory, with nobody left who knows their pids. A correct `Drop` does what \
  `shutdown` does: signal, wait, reap.
- **The parent killed while workers are busy**: nobody runs any `Drop`. The orphans are \
  re-parented (here to arenalab, which makes itself the child subreaper so it can find and reap \
  them; normally to init) and keep their memory until they end by themselves, which a worker \
  waiting for its next task never does. Two fixes: `PR_SET_PDEATHSIG` (the kernel sends each \
  worker a signal when the thread that spawned it dies; set between fork and exec, and beware \
  that it follows the spawning *thread*), or a pipe whose write end only the parent holds: when \
  the parent dies the kernel closes it, and the worker's blocking read returns end of file.
";
