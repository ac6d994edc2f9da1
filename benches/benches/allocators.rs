//! The allocator benchmarks: every group, every contender, one binary, one run.
//!
//! Ids read `group/pattern/allocator/size`; see benches/README.md for what each group measures
//! and how to read the figures. Run with `cargo bench` from the workspace root.

use arenalab_benches::clock::{self, Clock};
use arenalab_benches::contender::Contender;
use arenalab_benches::{
    Visit, churn, each_contender, each_size_contender, order, ports, scaling, size, threads,
};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use std::hint::black_box;
use std::time::Duration;

/// The clock every benchmark is timed with (`ARENALAB_BENCH_CLOCK`, see `clock`), read and
/// recorded once per run.
fn clock() -> Clock {
    static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();
    *CLOCK.get_or_init(clock::for_bench_run)
}

/// The seed of every random input, so runs compare like with like.
const SEED: u64 = 0x5eed_a110c;

/// A group with its time budget: the whole `cargo bench` must stay within minutes on 2 cores.
fn group<'c>(
    c: &'c mut Criterion<Clock>,
    name: &str,
    warm_up_ms: u64,
    measure_ms: u64,
    samples: usize,
) -> BenchmarkGroup<'c, Clock> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(warm_up_ms))
        .measurement_time(Duration::from_millis(measure_ms))
        .sample_size(samples)
        // Fewer bootstrap resamples than criterion's 100000: the confidence intervals stay
        // usable and the analysis of 123 benchmarks no longer takes minutes of the run.
        .nresamples(20_000);
    g
}

fn id(pattern: &str, allocator: &str, size: usize) -> BenchmarkId {
    BenchmarkId::new(format!("{pattern}/{allocator}"), size)
}

struct SizeGroup<'a, 'c>(&'a mut BenchmarkGroup<'c, Clock>);

impl Visit for SizeGroup<'_, '_> {
    fn visit<C: Contender>(&mut self, name: &str, c: &mut C) {
        for s in size::SIZES {
            self.0.bench_function(id("pair", name, s), |b| b.iter(|| size::pair(c, black_box(s))));
        }
    }
}

fn size_group(c: &mut Criterion<Clock>) {
    let mut g = group(c, "size", 300, 800, 40);
    g.throughput(Throughput::Elements(1));
    each_size_contender(&mut SizeGroup(&mut g));
    g.finish();
}

struct OrderGroup<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, Clock>,
    order: order::Order,
    n: usize,
}

impl Visit for OrderGroup<'_, '_> {
    fn visit<C: Contender>(&mut self, name: &str, c: &mut C) {
        let mut batch = order::Batch::new(self.order, self.n, SEED);
        self.g.bench_function(id(self.order.name(), name, self.n), |b| b.iter(|| batch.run(c)));
    }
}

fn order_group(c: &mut Criterion<Clock>) {
    let mut g = group(c, "order", 500, 1500, 30);
    for n in order::BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        for o in order::Order::ALL {
            each_contender(&mut OrderGroup { g: &mut g, order: o, n });
        }
    }
    g.finish();
}

struct ChurnGroup<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, Clock>,
    plan: &'a churn::Plan,
}

impl Visit for ChurnGroup<'_, '_> {
    fn visit<C: Contender>(&mut self, name: &str, c: &mut C) {
        let plan = self.plan;
        self.g.bench_function(id("random", name, plan.initial.len()), |b| {
            b.iter_custom(|iters| {
                // Filling and draining the working set are not timed: only the steps are.
                let mut set = churn::WorkingSet::fill(&mut *c, plan);
                let t0 = clock().now();
                for _ in 0..iters {
                    set.churn(&plan.steps);
                }
                clock().now() - t0
            })
        });
    }
}

fn churn_group(c: &mut Criterion<Clock>) {
    let mut g = group(c, "churn", 500, 1500, 30);
    g.throughput(Throughput::Elements(churn::STEPS as u64));
    for w in churn::WORKING_SETS {
        let plan = churn::Plan::new(w, churn::STEPS, SEED);
        each_contender(&mut ChurnGroup { g: &mut g, plan: &plan });
    }
    g.finish();
}

struct ScalingGroup<'a, 'c> {
    g: &'a mut BenchmarkGroup<'c, Clock>,
    n: usize,
}

impl Visit for ScalingGroup<'_, '_> {
    fn visit<C: Contender>(&mut self, name: &str, c: &mut C) {
        let mut ptrs = vec![core::ptr::null_mut(); self.n];
        self.g.bench_function(id("alloc-all-free-all", name, self.n), |b| {
            b.iter(|| scaling::run(c, &mut ptrs))
        });
    }
}

fn scaling_group(c: &mut Criterion<Clock>) {
    let mut g = group(c, "scaling", 500, 2000, 15);
    for n in scaling::COUNTS {
        g.throughput(Throughput::Elements(n as u64));
        each_contender(&mut ScalingGroup { g: &mut g, n });
    }
    g.finish();
}

fn threads_group(c: &mut Criterion<Clock>) {
    // The bare pymalloc Heap is single-threaded (`&mut self`): only the four global allocators.
    let mut g = group(c, "threads", 500, 2000, 20);
    let sizes = threads::random_sizes(threads::PC_OBJECTS, SEED);
    g.throughput(Throughput::Elements(threads::PC_OBJECTS as u64));
    for a in lineup::Allocator::ALL {
        g.bench_function(id("producer-consumer", a.name(), threads::PC_OBJECTS), |b| {
            b.iter_custom(|iters| clock().threads(|| threads::producer_consumer(a, &sizes, iters)))
        });
    }
    let steps = [threads::larson_steps(SEED), threads::larson_steps(SEED + 1)];
    g.throughput(Throughput::Elements(2 * threads::LARSON_STEPS as u64));
    for a in lineup::Allocator::ALL {
        g.bench_function(id("larson", a.name(), threads::LARSON_SLOTS), |b| {
            b.iter_custom(|iters| {
                clock().threads(|| threads::larson(a, [&steps[0], &steps[1]], iters))
            })
        });
    }
    let per_round = (threads::CHURN_THREADS * threads::MSTRESS_STEPS) as u64;
    g.throughput(Throughput::Elements(per_round));
    for a in lineup::Allocator::ALL {
        g.bench_function(id("mstress", a.name(), threads::CHURN_THREADS), |b| {
            b.iter_custom(|iters| threads::mstress(a, iters, SEED))
        });
    }
    g.throughput(Throughput::Elements((threads::CHURN_THREADS * threads::MLEAK_BLOCKS) as u64));
    for a in lineup::Allocator::ALL {
        g.bench_function(id("mleak", a.name(), threads::CHURN_THREADS), |b| {
            b.iter_custom(|iters| threads::mleak(a, iters, SEED, |_| {}))
        });
    }
    g.finish();
    threads::write_rss_json(&criterion_dir().join("threads-rss.json"), SEED);
}

/// Where criterion writes: `$CARGO_TARGET_DIR/criterion`, else the workspace's target/criterion.
fn criterion_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => std::path::PathBuf::from(t).join("criterion"),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"),
    }
}

struct PortsGroup<'a, 'c>(&'a mut BenchmarkGroup<'c, Clock>);

impl Visit for PortsGroup<'_, '_> {
    fn visit<C: Contender>(&mut self, name: &str, c: &mut C) {
        let mut a = vec![core::ptr::null_mut(); ports::SIMPLE_SLOTS];
        let mut b = vec![core::ptr::null_mut(); ports::SH6_BATCH];
        self.0.throughput(Throughput::Elements(ports::SIMPLE_OPS as u64));
        for s in ports::SIMPLE_SIZES {
            self.0.bench_function(id("glibc-simple", name, s), |bench| {
                bench.iter(|| ports::glibc_simple(c, s, &mut a))
            });
        }
        self.0.throughput(Throughput::Elements(ports::SH6_OPS as u64));
        self.0.bench_function(id("sh6bench", name, ports::SH6_MAX), |bench| {
            bench.iter(|| ports::sh6bench(c, &mut a, &mut b))
        });
    }
}

fn ports_group(c: &mut Criterion<Clock>) {
    let mut g = group(c, "ports", 300, 800, 30);
    each_contender(&mut PortsGroup(&mut g));
    g.finish();
}

criterion_group!(
    name = benches;
    config = Criterion::default().with_measurement(clock());
    targets = size_group,
    order_group,
    churn_group,
    scaling_group,
    threads_group,
    ports_group
);
criterion_main!(benches);
