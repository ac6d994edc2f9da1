//! The `pool` experiment: memory held by worker-process pools, closed properly or not.
//!
//! A pool of worker processes (Python's `multiprocessing.Pool`, a job server, a prefork web
//! server) multiplies every worker's memory by the number of workers, and that memory comes
//! back only when the workers *end*: what the allocator inside each worker keeps or returns does
//! not matter once the process is gone, and nothing matters while it lives. So the question is
//! who ends the workers, and when:
//!
//! | scenario | what happens to the workers |
//! | --- | --- |
//! | `open-idle` | the pool is open and the parent idles: K × M MiB stay resident all along |
//! | `shutdown-join` | `shutdown` signals every worker and joins (waits for and reaps) it: back to zero |
//! | `drop-naive` | the handle is dropped and its `Drop` does nothing: the workers live on, holding memory |
//! | `drop-correct` | a `Drop` that signals, waits and reaps, like `shutdown` |
//! | `parent-killed-none` | the pool's parent is SIGKILLed mid-task: its orphans keep their memory until they end |
//! | `parent-killed-pdeathsig` | the fix: workers set `PR_SET_PDEATHSIG`, the kernel kills them with the parent |
//! | `parent-killed-pipe` | the other fix: workers watch a pipe from the parent; end of file means it died |
//!
//! Every scenario samples, every 10 ms, how many workers are alive (not zombies) and their summed
//! `VmRSS` (`/proc/PID/status`). The parent-killed scenarios need a pool parent that is itself a
//! child, `arenalab worker pool parent`, which prints its workers' pids. `arenalab` is a *child
//! subreaper* ([`crate::procs`]), so when the pool parent is killed its orphans are re-parented to
//! `arenalab` rather than to init: the experiment watches them live on (the "no fix" case), then
//! kills and reaps whatever is left. Every pool process joins `arenalab`'s lifeline
//! ([`crate::procs::join_lifeline`]), so even the deliberate orphans die with `arenalab` if it is
//! killed, and on Ctrl-C `arenalab` ends them with every other descendant: nothing outlives the
//! experiment.
//!
//! | item | is |
//! | --- | --- |
//! | [`Pool`] | a pool of worker processes with [`Pool::shutdown`] and a chosen [`OnDrop`] |
//! | [`measure()`] | runs the scenarios, returns [`PoolResults`] |
//! | [`run()`] | `arenalab pool`: `measure`, then a table or `--json` |
//! | [`worker::run_worker`] | `arenalab worker pool worker` and `... parent` |
//! | [`render()`] | `docs/process-pool.md` and its timelines, from saved results only |

pub(crate) mod page;
pub mod worker;

use crate::error::Result;
use crate::procs::{self, Child, Spawn};
use crate::results::Meta;
use lineup::Allocator;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use page::render;
pub use worker::{WorkerArgs, run_worker};

/// Default number of workers.
pub const DEFAULT_WORKERS: usize = 4;
/// Default MiB per worker.
pub const DEFAULT_MIB: u64 = 64;
/// Most workers accepted.
pub const MAX_WORKERS: usize = 64;
/// Sampling period of the timelines.
const STEP: Duration = Duration::from_millis(10);
/// How long a scenario is watched after its key event (the orphans, the dropped handle, ...).
const OBSERVE: Duration = Duration::from_millis(1000);
/// How long a pool is watched before its key event.
const BEFORE: Duration = Duration::from_millis(200);
/// How long a worker gets to end after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// What a pool handle does when it is dropped without `shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDrop {
    /// Nothing: the workers are forgotten and live on (what a handle holding only
    /// `std::process::Child`ren does: std neither kills nor waits on drop).
    Naive,
    /// Signal every worker, wait for it, reap it: the same as [`Pool::shutdown`].
    Correct,
}

/// How pool workers learn that their parent died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fix {
    /// They don't: orphans keep running (and holding memory) until something ends them.
    None,
    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)` between fork and exec: the kernel kills each worker
    /// when the thread that spawned it dies.
    Pdeathsig,
    /// Workers block reading a pipe whose write end only the parent holds; when the parent dies
    /// the kernel closes it, the read returns end of file, and the worker leaves.
    Pipe,
}

impl Fix {
    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Fix::None => "none",
            Fix::Pdeathsig => "pdeathsig",
            Fix::Pipe => "pipe",
        }
    }
}

/// What a pool worker watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Watch {
    /// Nothing: only a signal ends it.
    Nothing,
    /// Its stdin: end of file ends it.
    Stdin,
}

/// Handles the naive `Drop` forgot. They are still children of this process, so Ctrl-C ends them
/// with every other descendant ([`crate::procs`]), and [`clean_up_forgotten`] ends them at the end
/// of the scenario.
static FORGOTTEN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Kills and reaps the workers a naive `Drop` left behind; returns how many there were.
pub fn clean_up_forgotten() -> usize {
    let children: Vec<Child> =
        std::mem::take(&mut *FORGOTTEN.lock().unwrap_or_else(|p| p.into_inner()));
    let n = children.len();
    drop(children); // procs::Child's own Drop: SIGKILL, then wait4.
    n
}

/// A pool of worker processes, each holding `mib` MiB.
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Child>,
    on_drop: OnDrop,
}

impl Pool {
    /// Opens `workers` workers of `mib` MiB each (killed by the kernel if this thread dies) and
    /// waits until every one has allocated its memory.
    pub fn open(workers: usize, mib: u64, allocator: Allocator, on_drop: OnDrop) -> Result<Pool> {
        Pool::open_with(workers, mib, allocator, Fix::Pdeathsig, on_drop)
    }

    /// As [`Pool::open`], with the workers told about their parent's death by `fix`.
    pub fn open_with(
        workers: usize,
        mib: u64,
        allocator: Allocator,
        fix: Fix,
        on_drop: OnDrop,
    ) -> Result<Pool> {
        let watch = if fix == Fix::Pipe { "stdin" } else { "nothing" };
        let mut pool = Pool { workers: Vec::with_capacity(workers), on_drop: OnDrop::Correct };
        // Start them all first, so they allocate in parallel, then wait for each.
        for _ in 0..workers {
            let child = Spawn::worker("pool")
                .args(["worker", "--mib", &mib.to_string(), "--allocator", allocator.name()])
                .args(["--watch", watch])
                .die_with_parent(fix == Fix::Pdeathsig)
                .spawn()?;
            pool.workers.push(child);
        }
        for w in &mut pool.workers {
            let _ready: worker::WorkerReady = w.read_json()?;
        }
        // Until every worker is ready a failure drops the pool correctly; now take the policy.
        pool.on_drop = on_drop;
        Ok(pool)
    }

    /// The workers' pids.
    pub fn pids(&self) -> Vec<i32> {
        self.workers.iter().map(Child::pid).collect()
    }

    /// Ends every worker (SIGTERM, then SIGKILL after a grace period), waits for it and reaps
    /// it. Returns how many workers were joined.
    pub fn shutdown(mut self) -> Result<usize> {
        self.close()
    }

    fn close(&mut self) -> Result<usize> {
        let workers = std::mem::take(&mut self.workers);
        for w in &workers {
            let _ = w.signal(libc::SIGTERM);
        }
        let n = workers.len();
        for mut w in workers {
            if w.wait_timeout(GRACE)?.is_none() {
                w.kill()?;
            }
        }
        Ok(n)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        match self.on_drop {
            OnDrop::Correct => {
                let _ = self.close();
            }
            OnDrop::Naive => {
                let mut forgotten = FORGOTTEN.lock().unwrap_or_else(|p| p.into_inner());
                forgotten.append(&mut self.workers);
            }
        }
    }
}

/// The scenarios, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The pool open, the parent idle.
    OpenIdle,
    /// `shutdown` and join.
    ShutdownJoin,
    /// The handle dropped; `Drop` does nothing.
    DropNaive,
    /// The handle dropped; `Drop` signals, waits and reaps.
    DropCorrect,
    /// The pool parent SIGKILLed; workers without a fix.
    ParentKilledNone,
    /// The pool parent SIGKILLed; workers with `PR_SET_PDEATHSIG`.
    ParentKilledPdeathsig,
    /// The pool parent SIGKILLed; workers watching a pipe.
    ParentKilledPipe,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 7] = [
        Scenario::OpenIdle,
        Scenario::ShutdownJoin,
        Scenario::DropNaive,
        Scenario::DropCorrect,
        Scenario::ParentKilledNone,
        Scenario::ParentKilledPdeathsig,
        Scenario::ParentKilledPipe,
    ];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::OpenIdle => "open-idle",
            Scenario::ShutdownJoin => "shutdown-join",
            Scenario::DropNaive => "drop-naive",
            Scenario::DropCorrect => "drop-correct",
            Scenario::ParentKilledNone => "parent-killed-none",
            Scenario::ParentKilledPdeathsig => "parent-killed-pdeathsig",
            Scenario::ParentKilledPipe => "parent-killed-pipe",
        }
    }

    /// One sentence on what the scenario does.
    pub const fn description(self) -> &'static str {
        match self {
            Scenario::OpenIdle => "the pool is open and the parent idles",
            Scenario::ShutdownJoin => "shutdown: SIGTERM to every worker, then wait and reap",
            Scenario::DropNaive => "the handle is dropped and its Drop does nothing",
            Scenario::DropCorrect => "the handle is dropped and its Drop signals, waits and reaps",
            Scenario::ParentKilledNone => "the pool's parent is SIGKILLed; workers have no fix",
            Scenario::ParentKilledPdeathsig => {
                "the pool's parent is SIGKILLed; workers set PR_SET_PDEATHSIG"
            }
            Scenario::ParentKilledPipe => {
                "the pool's parent is SIGKILLed; workers watch a pipe for end of file"
            }
        }
    }
}

/// Arguments of `arenalab pool`. `Default` equals the command-line defaults.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct PoolArgs {
    /// Worker processes in each pool.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_WORKERS, allow_negative_numbers = true,
        value_parser = crate::cli::whole::<usize>("--workers", 1, Some(MAX_WORKERS)))]
    pub workers: usize,
    /// MiB of small objects each worker allocates and holds.
    #[arg(long, value_name = "M", default_value_t = DEFAULT_MIB, allow_negative_numbers = true,
        value_parser = crate::cli::whole::<u64>("--mib", 1, None))]
    pub mib: u64,
    /// The allocator inside the workers (it does not change when memory comes back: exit does).
    #[arg(long, value_name = "A", default_value_t = Allocator::System,
        value_parser = crate::cli::choice("--allocator", &Allocator::ALL, Allocator::name))]
    pub allocator: Allocator,
    /// Scenario to run (repeatable). Default: all.
    #[arg(long = "scenario", value_name = "S",
        value_parser = crate::cli::choice("--scenario", &Scenario::ALL, Scenario::name))]
    pub scenarios: Vec<Scenario>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Default for PoolArgs {
    fn default() -> Self {
        PoolArgs {
            workers: DEFAULT_WORKERS,
            mib: DEFAULT_MIB,
            allocator: Allocator::System,
            scenarios: Vec::new(),
            json: false,
        }
    }
}

/// Everything `arenalab pool` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolResults {
    /// Command, machine and date.
    pub meta: Meta,
    /// Workers per pool.
    pub workers: usize,
    /// MiB per worker.
    pub mib: u64,
    /// The workers' allocator.
    pub allocator: Allocator,
    /// Wall time of the whole measurement, seconds.
    pub elapsed_s: f64,
    /// One per scenario run.
    pub scenarios: Vec<ScenarioResult>,
}

/// One scenario's timeline and outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Which scenario.
    pub scenario: Scenario,
    /// What it does.
    pub description: String,
    /// The workers' pids (they are all gone when `arenalab pool` returns).
    pub worker_pids: Vec<i32>,
    /// Workers alive at the end of the observation (before the experiment's own clean-up).
    pub live_at_end: usize,
    /// Their summed RSS then, bytes.
    pub rss_at_end_bytes: u64,
    /// The most summed RSS seen, bytes.
    pub rss_peak_bytes: u64,
    /// From the key event until no worker was alive, ms (`None`: they outlived the observation).
    pub to_zero_ms: Option<f64>,
    /// Workers the experiment itself had to kill and reap afterwards.
    pub left_for_clean_up: usize,
    /// Timestamped events (`pool open`, `handle dropped`, `parent SIGKILLed`, ...).
    pub events: Vec<Event>,
    /// Samples every ~10 ms.
    pub timeline: Vec<PoolSample>,
}

/// Something that happened at a time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the scenario began.
    pub t_ms: f64,
    /// What happened.
    pub what: String,
}

/// One sample of the workers.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PoolSample {
    /// Milliseconds since the scenario began.
    pub t_ms: f64,
    /// Workers alive (running, not zombies).
    pub live: usize,
    /// Their summed VmRSS, bytes.
    pub rss_bytes: u64,
}

/// Records one scenario.
struct Recorder {
    t0: Instant,
    pids: Vec<i32>,
    timeline: Vec<PoolSample>,
    events: Vec<Event>,
    key: Option<Instant>,
    zero_at: Option<Instant>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            t0: Instant::now(),
            pids: Vec::new(),
            timeline: Vec::new(),
            events: Vec::new(),
            key: None,
            zero_at: None,
        }
    }

    fn ms(&self, at: Instant) -> f64 {
        at.duration_since(self.t0).as_secs_f64() * 1e3
    }

    fn event(&mut self, what: &str) {
        self.events.push(Event { t_ms: self.ms(Instant::now()), what: what.to_string() });
    }

    /// Marks the key event the time-to-zero is counted from.
    fn key_event(&mut self, what: &str) {
        self.key = Some(Instant::now());
        self.event(what);
    }

    fn sample(&mut self) -> PoolSample {
        let s = sample_of(&self.pids, self.t0);
        self.push(s);
        s
    }

    fn push(&mut self, s: PoolSample) {
        if s.live == 0 && self.key.is_some() && self.zero_at.is_none() {
            self.zero_at = Some(self.t0 + Duration::from_secs_f64(s.t_ms / 1e3));
        }
        self.timeline.push(s);
    }

    /// Runs `f` (a blocking shutdown, drop or kill) while a helper thread keeps sampling, so
    /// the timeline shows the workers ending one by one instead of a gap.
    fn during<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (pids, t0) = (self.pids.clone(), self.t0);
        let (r, samples) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                let mut v = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    v.push(sample_of(&pids, t0));
                    std::thread::sleep(STEP / 5);
                }
                v
            });
            let r = f();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (r, sampler.join().unwrap_or_default())
        });
        for s in samples {
            self.push(s);
        }
        r
    }

    /// Samples every [`STEP`] for `d`; stops early once no worker is left after the key event
    /// (a few more samples show the flat line).
    fn watch(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut zero_samples = 0;
        while Instant::now() < end {
            if self.sample().live == 0 && self.key.is_some() {
                zero_samples += 1;
                if zero_samples >= 10 {
                    break;
                }
            }
            std::thread::sleep(STEP);
        }
    }

    fn finish(self, scenario: Scenario, left_for_clean_up: usize) -> ScenarioResult {
        // The state at the end of the observation: the last sample before clean-up began.
        let cleanup_t = self
            .events
            .iter()
            .find(|e| e.what.starts_with("experiment cleans up"))
            .map_or(f64::MAX, |e| e.t_ms);
        let last = self.timeline.iter().rev().find(|s| s.t_ms < cleanup_t).copied();
        ScenarioResult {
            scenario,
            description: scenario.description().to_string(),
            worker_pids: self.pids.clone(),
            live_at_end: last.map_or(0, |s| s.live),
            rss_at_end_bytes: last.map_or(0, |s| s.rss_bytes),
            rss_peak_bytes: self.timeline.iter().map(|s| s.rss_bytes).max().unwrap_or(0),
            to_zero_ms: match (self.key, self.zero_at) {
                (Some(k), Some(z)) if self.ms(z) < cleanup_t => {
                    Some(z.duration_since(k).as_secs_f64() * 1e3)
                }
                _ => None,
            },
            left_for_clean_up,
            events: self.events,
            timeline: self.timeline,
        }
    }
}

/// Live workers among `pids` and their summed VmRSS, now.
fn sample_of(pids: &[i32], t0: Instant) -> PoolSample {
    let mut live = 0;
    let mut rss = 0;
    for &pid in pids {
        if procs::is_running(pid) {
            live += 1;
            rss += vm_rss(pid).unwrap_or(0);
        }
    }
    PoolSample { t_ms: Instant::now().duration_since(t0).as_secs_f64() * 1e3, live, rss_bytes: rss }
}

fn vm_rss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| {
        v.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib * 1024)
    })
}

/// Checks the arguments; a problem is [`Error::Usage`](crate::error::Error::Usage) naming the value.
pub fn validate(args: &PoolArgs) -> Result<()> {
    crate::cli::check_range("--workers", args.workers, 1, Some(MAX_WORKERS))?;
    crate::cli::check_range("--mib", args.mib, 1, None)?;
    crate::fit::check_fits(args.mib, args.workers as u64)
}

/// Runs the scenarios and returns their timelines.
pub fn measure(args: &PoolArgs) -> Result<PoolResults> {
    validate(args)?;
    let started = Instant::now();
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        Scenario::ALL.into_iter().filter(|s| args.scenarios.contains(s)).collect()
    };
    let bar = indicatif::ProgressBar::new(scenarios.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("pool {bar:30} {pos}/{len} {msg}")
            .expect("static template"),
    );
    let mut results = Vec::new();
    for s in scenarios {
        bar.set_message(s.name());
        results.push(run_scenario(s, args)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(PoolResults {
        meta: Meta::collect(&command_line(args)),
        workers: args.workers,
        mib: args.mib,
        allocator: args.allocator,
        elapsed_s: started.elapsed().as_secs_f64(),
        scenarios: results,
    })
}

fn command_line(args: &PoolArgs) -> String {
    let mut s = "arenalab pool".to_string();
    if args.workers != DEFAULT_WORKERS {
        s.push_str(&format!(" --workers {}", args.workers));
    }
    if args.mib != DEFAULT_MIB {
        s.push_str(&format!(" --mib {}", args.mib));
    }
    if args.allocator != Allocator::System {
        s.push_str(&format!(" --allocator {}", args.allocator));
    }
    for sc in &args.scenarios {
        s.push_str(&format!(" --scenario {}", sc.name()));
    }
    s
}

fn run_scenario(s: Scenario, args: &PoolArgs) -> Result<ScenarioResult> {
    let (k, m, a) = (args.workers, args.mib, args.allocator);
    let mut rec = Recorder::new();
    match s {
        Scenario::OpenIdle | Scenario::ShutdownJoin | Scenario::DropCorrect => {
            let pool = Pool::open(k, m, a, OnDrop::Correct)?;
            rec.pids = pool.pids();
            rec.event("pool open, every worker ready");
            match s {
                Scenario::OpenIdle => {
                    rec.watch(OBSERVE + BEFORE);
                    rec.event("experiment cleans up (shutdown)");
                    pool.shutdown()?;
                }
                Scenario::ShutdownJoin => {
                    rec.watch(BEFORE);
                    rec.key_event("shutdown: SIGTERM, wait, reap");
                    rec.during(|| pool.shutdown())?;
                    rec.event("shutdown returned");
                    rec.watch(OBSERVE / 2);
                }
                _ => {
                    rec.watch(BEFORE);
                    rec.key_event("handle dropped (correct Drop)");
                    rec.during(|| drop(pool));
                    rec.event("drop returned");
                    rec.watch(OBSERVE / 2);
                }
            }
            rec.sample();
            Ok(rec.finish(s, 0))
        }
        Scenario::DropNaive => {
            let pool = Pool::open(k, m, a, OnDrop::Naive)?;
            rec.pids = pool.pids();
            rec.event("pool open, every worker ready");
            rec.watch(BEFORE);
            rec.key_event("handle dropped (naive Drop)");
            drop(pool);
            rec.watch(OBSERVE);
            rec.event("experiment cleans up: SIGKILL and reap the forgotten workers");
            let n = clean_up_forgotten();
            rec.sample();
            Ok(rec.finish(s, n))
        }
        Scenario::ParentKilledNone
        | Scenario::ParentKilledPdeathsig
        | Scenario::ParentKilledPipe => {
            let fix = match s {
                Scenario::ParentKilledNone => Fix::None,
                Scenario::ParentKilledPdeathsig => Fix::Pdeathsig,
                _ => Fix::Pipe,
            };
            parent_killed(&mut rec, fix, k, m, a).map(|n| rec.finish(s, n))
        }
    }
}

/// The pool parent's workers, which become this process's children (it is a child subreaper)
/// when the pool parent dies; killed and reaped on drop whatever happens.
struct Orphans {
    adopted: Vec<i32>,
}

impl Orphans {
    /// Kills every adopted pid that still runs, reaps each, and forgets them; returns how many
    /// were still running.
    fn clean_up(&mut self) -> usize {
        let mut running = 0;
        for pid in std::mem::take(&mut self.adopted) {
            if procs::is_running(pid) {
                running += 1;
                let _ = procs::send_signal(pid, libc::SIGKILL);
            }
            // As subreaper we are their parent now; if not (no such process, or re-parented
            // elsewhere), wait until /proc shows it gone.
            if procs::wait4(pid, false).is_err() {
                let until = Instant::now() + GRACE;
                while procs::is_running(pid) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        running
    }
}

impl Drop for Orphans {
    fn drop(&mut self) {
        self.clean_up();
    }
}

fn parent_killed(rec: &mut Recorder, fix: Fix, k: usize, m: u64, a: Allocator) -> Result<usize> {
    let mut parent = Spawn::worker("pool")
        .args(["parent", "--workers", &k.to_string(), "--mib", &m.to_string()])
        .args(["--allocator", a.name(), "--fix", fix.name()])
        .spawn()?;
    let ready: worker::ParentReady = parent.read_json()?;
    // Kept from here on, so an error below still kills and reaps them (Ctrl-C needs no list: the
    // handler ends every descendant).
    let mut orphans = Orphans { adopted: ready.worker_pids.clone() };
    rec.pids = ready.worker_pids.clone();
    rec.event("pool parent up, every worker ready and busy");
    rec.watch(BEFORE);
    rec.key_event("pool parent SIGKILLed");
    rec.during(|| parent.kill())?;
    rec.watch(OBSERVE);
    rec.event("experiment cleans up: SIGKILL and reap what is left");
    let n = orphans.clean_up();
    rec.sample();
    Ok(n)
}

/// The table's header and rows (terminal and page share them).
pub fn table(results: &PoolResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "scenario",
        "peak RSS MiB",
        "live at end",
        "RSS at end MiB",
        "to zero workers ms",
        "left for clean-up",
    ]
    .map(str::to_string)
    .to_vec();
    let rows = results
        .scenarios
        .iter()
        .map(|s| {
            vec![
                s.scenario.name().to_string(),
                format!("{:.1}", crate::measure::mib(s.rss_peak_bytes)),
                s.live_at_end.to_string(),
                format!("{:.1}", crate::measure::mib(s.rss_at_end_bytes)),
                s.to_zero_ms.map_or("never".into(), |t| format!("{t:.0}")),
                s.left_for_clean_up.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

/// Runs `arenalab pool`.
pub fn run(args: &PoolArgs) -> Result<()> {
    let results = measure(args)?;
    if args.json {
        print!("{}", crate::results::to_json(&results)?);
        return Ok(());
    }
    println!(
        "Worker pools: {} workers × {} MiB ({}); 'end' is the end of the observation, before the \
         experiment cleans up after the naive cases.",
        results.workers, results.mib, results.allocator
    );
    let (header, rows) = table(&results);
    print!("{}", crate::render::text_table(&header, &rows));
    println!("Measured in {:.1} s.", results.elapsed_s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PoolArgs,
    }

    #[test]
    fn default_equals_the_command_line_defaults() {
        assert_eq!(Cli::parse_from(["pool"]).args, PoolArgs::default());
    }

    #[test]
    fn zero_workers_is_a_usage_error_naming_the_value() {
        let e = validate(&PoolArgs { workers: 0, ..PoolArgs::default() }).unwrap_err();
        assert!(
            matches!(&e, crate::error::Error::Usage(m)
                if m == "--workers must be between 1 and 64, got 0"),
            "{e}"
        );
    }
}
