//! Route-engine benchmarks: lookups/s of the indexed table vs the naive linear scan, memory
//! per route, and the cost of applying one change to a 100k-route table.
//!
//! Run: `cargo bench -p vpnroute-engine`. Before divan's own tables, a summary is printed with
//! lookups/s, speed-up over the naive baseline, bytes/route and update cost, measured with a
//! plain timing loop over the same tables and queries.
//!
//! Tables are "realistic" for a VPN gateway: destination prefixes are on-premises networks
//! (10/8, 172.16/12, 192.168/16; mostly /24s, some /16, /20, /28 and /32), about one in five
//! destinations has an active/standby pair, policy routes come from a pool of VPC-side source
//! prefixes with a handful of priorities. 90% of queries hit a route (random addresses inside a
//! random route's prefixes), 10% are random addresses.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use divan::counter::ItemsCount;
use divan::{AllocProfiler, Bencher};
use vpnroute_engine::naive::NaiveTable;
use vpnroute_engine::{Ipv4Net, LinkState, Route, RouteTable};

// ---------------------------------------------------------------------------------------
// Allocation accounting: divan's profiler (per-bench allocation counts, which shows lookups
// allocate nothing) on top of a live-bytes counter (bytes per route).

struct LiveBytes;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: AllocProfiler<LiveBytes> = AllocProfiler::new(LiveBytes);

fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// Workloads.

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Sizes with a divan benchmark of the naive scan (at 100,000 routes a round of 4,096 naive
/// lookups takes seconds; the summary still measures it, on fewer queries).
const NAIVE_SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Queries per naive round in the summary at 100,000 routes.
const NAIVE_QUERIES_100K: usize = 256;
const QUERIES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    DestinationOnly,
    PolicyOnly,
    Mixed,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::DestinationOnly => "dbr",
            Mix::PolicyOnly => "pbr",
            Mix::Mixed => "mixed",
        }
    }
}

/// SplitMix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn on_prem_prefix(rng: &mut Rng) -> Ipv4Net {
    let (base, base_len): (u32, u8) = match rng.below(100) {
        0..=59 => (0x0a00_0000, 8),
        60..=84 => (0xac10_0000, 12),
        _ => (0xc0a8_0000, 16),
    };
    let len = match rng.below(100) {
        0..=69 => 24,
        70..=74 => 16,
        75..=79 => 20,
        80..=84 => 28,
        _ => 32,
    }
    .max(base_len);
    let random = rng.next() as u32 & (u32::MAX >> base_len);
    Ipv4Net::new(Ipv4Addr::from(base | random), len)
        .expect("len <= 32")
        .trunc()
}

fn vpc_sources(rng: &mut Rng) -> Vec<Ipv4Net> {
    // VPC vSwitch CIDRs in 100.100/16-ish space kept apart from on-prem space, plus a catch-all.
    let mut sources: Vec<Ipv4Net> = (0..48)
        .map(|_| {
            let len = *[16u8, 20, 24, 24, 24].get(rng.below(5) as usize).unwrap_or(&24);
            let random = rng.next() as u32 & 0x00ff_ffff;
            Ipv4Net::new(Ipv4Addr::from(0x2f00_0000 | random), len)
                .expect("len")
                .trunc()
        })
        .collect();
    sources.push("0.0.0.0/0".parse().expect("prefix"));
    sources
}

fn connection(rng: &mut Rng) -> String {
    format!("vco-{:02}", rng.below(10))
}

fn generate_routes(mix: Mix, count: usize, seed: u64) -> Vec<Route> {
    let mut rng = Rng(seed);
    let sources = vpc_sources(&mut rng);
    let mut routes = Vec::with_capacity(count);
    let mut seen = std::collections::HashSet::new();
    while routes.len() < count {
        let id = routes.len() as u64;
        let policy = match mix {
            Mix::DestinationOnly => false,
            Mix::PolicyOnly => true,
            Mix::Mixed => rng.below(2) == 0,
        };
        let dest = on_prem_prefix(&mut rng);
        let source = rng.pick(&sources);
        if !seen.insert((policy, policy.then_some(source), dest)) {
            continue;
        }
        let priority = rng.pick(&[1u8, 5, 10, 10, 10, 20, 50]);
        let pair = rng.below(5) == 0 && routes.len() + 2 <= count;
        let make = |id: u64, hop: String, weight: u8| {
            if policy {
                Route::policy(id, source, dest, hop, weight, priority, id)
            } else {
                Route::destination(id, dest, hop, weight, id)
            }
        };
        routes.push(make(id, connection(&mut rng), 100));
        if pair {
            routes.push(make(id + 1, connection(&mut rng), 0));
        }
    }
    routes
}

fn random_inside(rng: &mut Rng, net: Ipv4Net) -> Ipv4Addr {
    let host_bits = u32::MAX.checked_shr(u32::from(net.prefix_len())).unwrap_or(0);
    Ipv4Addr::from(u32::from(net.network()) | (rng.next() as u32 & host_bits))
}

fn generate_queries(routes: &[Route], seed: u64) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let mut rng = Rng(seed);
    let sources = vpc_sources(&mut Rng(seed ^ 1));
    (0..QUERIES)
        .map(|_| {
            if rng.below(10) == 0 || routes.is_empty() {
                let source = rng.pick(&sources);
                let src = random_inside(&mut rng, source);
                return (src, Ipv4Addr::from(rng.next() as u32));
            }
            let route = &routes[rng.below(routes.len() as u64) as usize];
            let src = match route.source {
                Some(source) => random_inside(&mut rng, source),
                None => {
                    let source = rng.pick(&sources);
                    random_inside(&mut rng, source)
                }
            };
            (src, random_inside(&mut rng, route.dest))
        })
        .collect()
}

struct Workload {
    routes: Vec<Route>,
    table: RouteTable,
    naive: NaiveTable,
    queries: Vec<(Ipv4Addr, Ipv4Addr)>,
}

fn workload(mix: Mix, size: usize) -> &'static Workload {
    static CACHE: OnceLock<Vec<(Mix, usize, OnceLock<Workload>)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        [Mix::DestinationOnly, Mix::PolicyOnly, Mix::Mixed]
            .into_iter()
            .flat_map(|mix| SIZES.into_iter().map(move |size| (mix, size, OnceLock::new())))
            .collect()
    });
    let slot = cache
        .iter()
        .find(|(m, s, _)| *m == mix && *s == size)
        .map(|(_, _, slot)| slot)
        .expect("known workload");
    slot.get_or_init(|| {
        let seed = 0x5eed ^ (size as u64) << 8 ^ mix as u64;
        let routes = generate_routes(mix, size, seed);
        Workload {
            table: RouteTable::from_routes(routes.clone()).expect("valid routes"),
            naive: NaiveTable::from_routes(routes.clone()).expect("valid routes"),
            queries: generate_queries(&routes, seed ^ 0xabcd),
            routes,
        }
    })
}

fn run_fast(w: &Workload, links: &LinkState) -> usize {
    let mut found = 0usize;
    for &(src, dst) in &w.queries {
        if let Some(d) = w.table.lookup(black_box(src), black_box(dst), links) {
            found += d.route_id as usize & 1;
        }
    }
    found
}

fn run_naive(w: &Workload) -> usize {
    run_naive_first(w, w.queries.len())
}

/// The naive scan over the first `n` queries.
fn run_naive_first(w: &Workload, n: usize) -> usize {
    let mut found = 0usize;
    for &(src, dst) in &w.queries[..n.min(w.queries.len())] {
        if let Some(d) = w.naive.lookup(black_box(src), black_box(dst), |_| true) {
            found += d.route_id as usize & 1;
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// divan benchmarks.

macro_rules! lookup_benches {
    ($module:ident, $mix:expr) => {
        mod $module {
            use super::*;

            #[divan::bench(args = SIZES, max_time = 1.5)]
            fn fast(bencher: Bencher, size: usize) {
                let w = workload($mix, size);
                let links = LinkState::new();
                bencher
                    .counter(ItemsCount::new(w.queries.len()))
                    .bench(|| run_fast(w, &links));
            }

            #[divan::bench(args = NAIVE_SIZES, max_time = 1.5, sample_count = 20)]
            fn naive(bencher: Bencher, size: usize) {
                let w = workload($mix, size);
                bencher
                    .counter(ItemsCount::new(w.queries.len()))
                    .bench(|| run_naive(w));
            }
        }
    };
}

lookup_benches!(lookup_dbr, Mix::DestinationOnly);
lookup_benches!(lookup_pbr, Mix::PolicyOnly);
lookup_benches!(lookup_mixed, Mix::Mixed);

/// A tunnel flap: lookups with a third of the connections down (standby takeovers).
#[divan::bench(args = [10_000], max_time = 1.5)]
fn lookup_mixed_links_down(bencher: Bencher, size: usize) {
    let w = workload(Mix::Mixed, size);
    let mut links = LinkState::new();
    for hop in ["vco-00", "vco-03", "vco-07"] {
        w.table.set_link_up(&mut links, hop, false);
    }
    bencher
        .counter(ItemsCount::new(w.queries.len()))
        .bench(|| run_fast(w, &links));
}

fn change_routes() -> [Route; 3] {
    [
        Route::destination(
            u64::MAX - 1,
            "10.250.7.0/24".parse().expect("net"),
            "vco-01",
            100,
            u64::MAX - 1,
        ),
        Route::policy(
            u64::MAX - 2,
            "47.1.2.0/24".parse().expect("net"),
            "10.250.8.0/24".parse().expect("net"),
            "vco-02",
            100,
            10,
            u64::MAX - 2,
        ),
        Route::destination(
            u64::MAX - 3,
            "10.0.0.0/8".parse().expect("net"),
            "vco-03",
            0,
            u64::MAX - 3,
        ),
    ]
}

/// One insert + one remove on a 100k-route mixed table (index 0: DBR /24, 1: PBR /24,
/// 2: DBR /8 joining an existing short prefix's neighbourhood).
#[divan::bench(args = [0, 1, 2], max_time = 1.5)]
fn update_insert_remove_100k(bencher: Bencher, which: usize) {
    let mut table = workload(Mix::Mixed, 100_000).table.clone();
    let route = change_routes()[which].clone();
    bencher.bench_local(|| {
        let id = route.id;
        let _ = table.insert(route.clone());
        black_box(table.remove(id))
    });
}

/// For comparison with incremental updates: building a 100k-route table from scratch.
#[divan::bench(max_time = 3.0, sample_count = 10)]
fn rebuild_100k(bencher: Bencher) {
    let routes = &workload(Mix::Mixed, 100_000).routes;
    bencher.bench(|| RouteTable::from_routes(routes.iter().cloned()).map(|t| t.len()));
}

// ---------------------------------------------------------------------------------------
// Summary (ratios, bytes/route, update cost) printed before divan's tables.

/// Nanoseconds per lookup: the fastest of many rounds over the query set (the machine is
/// shared; the minimum is the least disturbed estimate).
fn time_per_lookup(mut run: impl FnMut() -> usize, queries: usize, min_time: Duration) -> f64 {
    black_box(run()); // warm-up
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut rounds = 0u32;
    while start.elapsed() < min_time || rounds < 3 {
        let round = Instant::now();
        black_box(run());
        best = best.min(round.elapsed().as_secs_f64());
        rounds += 1;
    }
    best * 1e9 / queries as f64
}

fn summary() {
    println!("== vpnroute-engine summary (one core, {QUERIES} queries per round) ==");
    println!(
        "{:<6} {:>7} {:>10} {:>12} {:>12} {:>10} {:>11} {:>11}",
        "mix", "routes", "fast ns", "fast Mlook/s", "naive ns", "speed-up", "bytes/route", "est. b/r"
    );
    for mix in [Mix::DestinationOnly, Mix::PolicyOnly, Mix::Mixed] {
        for size in SIZES {
            let w = workload(mix, size);
            let links = LinkState::new();
            let fast = time_per_lookup(|| run_fast(w, &links), w.queries.len(), Duration::from_millis(300));
            let naive_queries = if NAIVE_SIZES.contains(&size) {
                w.queries.len()
            } else {
                NAIVE_QUERIES_100K
            };
            let naive = time_per_lookup(
                || run_naive_first(w, naive_queries),
                naive_queries,
                Duration::from_millis(300),
            );
            let before = live_bytes();
            let table = RouteTable::from_routes(w.routes.iter().cloned()).expect("valid");
            let bytes = live_bytes() - before;
            let estimate = table.memory_usage();
            drop(table);
            println!(
                "{:<6} {:>7} {:>10.1} {:>12.1} {:>12} {:>10} {:>11.0} {:>11.0}",
                mix.name(),
                size,
                fast,
                1e3 / fast,
                format!("{naive:.1}"),
                format!("{:.0}x", naive / fast),
                bytes as f64 / size as f64,
                estimate as f64 / size as f64,
            );
        }
    }

    let base = workload(Mix::Mixed, 100_000).table.clone();
    for (label, route) in ["dbr /24", "pbr /24", "dbr /8"].into_iter().zip(change_routes()) {
        let mut table = base.clone();
        let mut best = f64::INFINITY;
        for _ in 0..20 {
            let rounds = 1_000u32;
            let start = Instant::now();
            for _ in 0..rounds {
                let _ = table.insert(route.clone());
                black_box(table.remove(route.id));
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e9 / f64::from(rounds));
        }
        println!("update on 100k mixed table, insert+remove {label}: {best:.0} ns");
    }
    let start = Instant::now();
    let rebuilt = RouteTable::from_routes(workload(Mix::Mixed, 100_000).routes.iter().cloned());
    println!(
        "full rebuild of the 100k mixed table: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    drop(rebuilt);
    println!();
}

fn main() {
    // `cargo test --benches` runs this binary with `--test`; keep that fast. Set
    // VPNROUTE_BENCH_NO_SUMMARY=1 to run divan only.
    let skip_summary = std::env::args().any(|a| a == "--test" || a == "--list")
        || std::env::var_os("VPNROUTE_BENCH_NO_SUMMARY").is_some();
    if !skip_summary {
        summary();
    }
    divan::main();
}
