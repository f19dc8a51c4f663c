//! Allocation benchmarks for `PoolSpace`, against a plain bitmap baseline.
//!
//! Besides criterion's timings, `cargo bench` first prints a memory report
//! measured with a counting global allocator, and a bitmap/interval time
//! ratio from a quick manual run, since criterion cannot compare benchmarks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use ipnet::IpNet;
use prefix_operator::alloc::PoolSpace;
use prefix_operator::alloc::cidr::{self, Family};

/// Counts live heap bytes so the report can attribute memory to the index.
/// Every benchmark pays the same small atomic overhead per heap operation.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` unchanged and only adjusts a
// counter, so `System`'s guarantees carry over.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

const SLASH48_SLOTS: usize = 1 << 16;
const HELD_IN_32: usize = 1_000_000;

fn pool_48() -> PoolSpace {
    PoolSpace::new(&[net("2001:db8:42::/48")], 64).expect("valid pool")
}

fn pool_32() -> PoolSpace {
    PoolSpace::new(&[net("2001:db8::/32")], 64).expect("valid pool")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("literal CIDR")
}

fn allocate(space: &mut PoolSpace) -> IpNet {
    let slot = space.first_free().expect("pool has room");
    space.mark(&slot);
    slot
}

fn fill(space: &mut PoolSpace, count: usize) -> Vec<IpNet> {
    (0..count).map(|_| allocate(space)).collect()
}

/// The baseline: one bit per slot, lowest free slot found by scanning for the
/// first word that is not full.
struct Bitmap {
    base: u128,
    words: Vec<u64>,
}

impl Bitmap {
    fn new(prefix: &IpNet, slots: usize) -> Bitmap {
        Bitmap {
            base: cidr::range(prefix).0,
            words: vec![0; slots.div_ceil(64)],
        }
    }

    fn allocate(&mut self) -> Option<IpNet> {
        let (i, word) = self
            .words
            .iter_mut()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)?;
        let bit = word.trailing_ones();
        *word |= 1 << bit;
        let slot = (i as u128) * 64 + u128::from(bit);
        Some(cidr::net_from(Family::V6, self.base + (slot << 64), 64))
    }

    fn release(&mut self, net: &IpNet) {
        let slot = ((cidr::range(net).0 - self.base) >> 64) as usize;
        self.words[slot / 64] &= !(1 << (slot % 64));
    }
}

/// Deterministic xorshift so runs are comparable without a RNG dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn memory_report() {
    println!("== memory (live heap bytes, counting allocator) ==");
    let before = live();
    let mut space = pool_48();
    let held = fill(&mut space, SLASH48_SLOTS);
    let space_bytes = live() - before - held.capacity() * size_of::<IpNet>();
    let bitmap_bytes = SLASH48_SLOTS / 8;
    println!(
        "/48 -> /64, full ({} allocations): interval index {} bytes ({:.1} B/allocation); bitmap {} bytes ({:.3} B/slot)",
        held.len(),
        space_bytes,
        space_bytes as f64 / held.len() as f64,
        bitmap_bytes,
        bitmap_bytes as f64 / SLASH48_SLOTS as f64,
    );
    drop((space, held));

    let mut space = pool_32();
    let before = live();
    let mut held = fill(&mut space, HELD_IN_32);
    let after = live();
    // The lists of held nets belong to the benchmark, not the index.
    let held_list = held.capacity() * size_of::<IpNet>();
    let index = after - before - held_list;
    println!(
        "/32 -> /64, {HELD_IN_32} sequential allocations: index grew {} bytes = {:.1} MiB ({:.1} B/allocation)",
        index,
        mib(index),
        index as f64 / HELD_IN_32 as f64,
    );
    // Worst case for the interval map: every other slot released, so every
    // remaining allocation is its own interval.
    let kept = held.len() / 2;
    for slot in held.iter().skip(1).step_by(2) {
        space.unmark(slot);
    }
    held.truncate(kept);
    let fragmented = live() - before - held_list;
    println!(
        "/32 -> /64, then every other one released ({kept} held, fully fragmented): {} bytes = {:.1} MiB ({:.1} B/allocation)",
        fragmented,
        mib(fragmented),
        fragmented as f64 / kept as f64,
    );
    let bitmap_32: u64 = (1u64 << 32) / 8;
    println!(
        "/32 -> /64 as a bitmap: 2^32 bits = {bitmap_32} bytes = {} MiB, whatever the occupancy",
        bitmap_32 / (1024 * 1024)
    );
}

/// Fill a /48 then release everything in random order, `rounds` times, and
/// return the best (allocate, release) time per operation.
fn time_fill_and_drain<S>(
    rounds: usize,
    mut new: impl FnMut() -> S,
    mut alloc: impl FnMut(&mut S) -> IpNet,
    mut release: impl FnMut(&mut S, &IpNet),
) -> (Duration, Duration) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let mut state = new();
        let start = Instant::now();
        let mut held: Vec<IpNet> = (0..SLASH48_SLOTS).map(|_| alloc(&mut state)).collect();
        let allocating = start.elapsed();
        rng.shuffle(&mut held);
        let start = Instant::now();
        for slot in &held {
            release(&mut state, slot);
        }
        let releasing = start.elapsed();
        best.0 = best.0.min(allocating / SLASH48_SLOTS as u32);
        best.1 = best.1.min(releasing / SLASH48_SLOTS as u32);
    }
    best
}

fn ratio_report() {
    println!("== /48 -> /64 fill then random drain, best of 5, per operation ==");
    let (sa, sr) = time_fill_and_drain(5, pool_48, allocate, |s, n| {
        s.unmark(n);
    });
    let prefix = net("2001:db8:42::/48");
    let (ba, br) = time_fill_and_drain(
        5,
        || Bitmap::new(&prefix, SLASH48_SLOTS),
        |b| b.allocate().expect("bitmap has room"),
        Bitmap::release,
    );
    let ns = |d: Duration| d.as_secs_f64() * 1e9;
    println!(
        "allocate: interval index {:.0} ns, bitmap {:.0} ns, index/bitmap = {:.2}",
        ns(sa),
        ns(ba),
        ns(sa) / ns(ba)
    );
    println!(
        "release:  interval index {:.0} ns, bitmap {:.0} ns, index/bitmap = {:.2}",
        ns(sr),
        ns(br),
        ns(sr) / ns(br)
    );
}

fn bench_48(c: &mut Criterion) {
    let mut g = c.benchmark_group("slash48_65536_slots");
    let prefix = net("2001:db8:42::/48");

    // Allocation cost averaged over filling an empty pool to full.
    g.bench_function("space_allocate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(SLASH48_SLOTS);
                let mut space = pool_48();
                let start = Instant::now();
                for _ in 0..batch {
                    black_box(allocate(&mut space));
                }
                total += start.elapsed();
                left -= batch;
            }
            total
        })
    });
    g.bench_function("bitmap_allocate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(SLASH48_SLOTS);
                let mut bitmap = Bitmap::new(&prefix, SLASH48_SLOTS);
                let start = Instant::now();
                for _ in 0..batch {
                    black_box(bitmap.allocate());
                }
                total += start.elapsed();
                left -= batch;
            }
            total
        })
    });

    // Release cost in random order, from full to empty.
    let mut rng = Rng(42);
    let mut order: Vec<IpNet> = fill(&mut pool_48(), SLASH48_SLOTS);
    rng.shuffle(&mut order);
    g.bench_function("space_release", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(SLASH48_SLOTS);
                let mut space = pool_48();
                fill(&mut space, SLASH48_SLOTS);
                let start = Instant::now();
                for slot in &order[..batch] {
                    black_box(space.unmark(slot));
                }
                total += start.elapsed();
                left -= batch;
            }
            total
        })
    });
    g.bench_function("bitmap_release", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(SLASH48_SLOTS);
                let mut bitmap = Bitmap::new(&prefix, SLASH48_SLOTS);
                bitmap.words.fill(u64::MAX);
                let start = Instant::now();
                for slot in &order[..batch] {
                    bitmap.release(slot);
                }
                black_box(&bitmap.words);
                total += start.elapsed();
                left -= batch;
            }
            total
        })
    });

    // Steady state: half full with random holes; one operation is a release
    // of a random holder followed by an allocation.
    g.bench_function("space_churn_half_full", |b| {
        let mut space = pool_48();
        let mut held = fill(&mut space, SLASH48_SLOTS);
        let mut rng = Rng(7);
        rng.shuffle(&mut held);
        for slot in held.drain(SLASH48_SLOTS / 2..) {
            space.unmark(&slot);
        }
        b.iter(|| {
            let i = rng.below(held.len());
            space.unmark(&held[i]);
            held[i] = allocate(&mut space);
        })
    });
    g.bench_function("bitmap_churn_half_full", |b| {
        let mut bitmap = Bitmap::new(&prefix, SLASH48_SLOTS);
        let mut held: Vec<IpNet> = (0..SLASH48_SLOTS)
            .map(|_| bitmap.allocate().expect("room"))
            .collect();
        let mut rng = Rng(7);
        rng.shuffle(&mut held);
        for slot in held.drain(SLASH48_SLOTS / 2..) {
            bitmap.release(&slot);
        }
        b.iter(|| {
            let i = rng.below(held.len());
            bitmap.release(&held[i]);
            held[i] = bitmap.allocate().expect("room");
        })
    });
    g.finish();
}

fn bench_32(c: &mut Criterion) {
    let mut g = c.benchmark_group("slash32_holding_1M");
    let mut space = pool_32();
    let mut held = fill(&mut space, HELD_IN_32);

    // Each timed batch allocates past the 1M held, then is released untimed
    // so every batch starts from the same state.
    g.bench_function("space_allocate", |b| {
        b.iter_custom(|iters| {
            let mut batch = Vec::with_capacity(iters as usize);
            let start = Instant::now();
            for _ in 0..iters {
                batch.push(allocate(&mut space));
            }
            let elapsed = start.elapsed();
            for slot in &batch {
                space.unmark(slot);
            }
            elapsed
        })
    });

    // Release random holders (splitting the merged run of used slots), then
    // re-mark them untimed.
    let mut rng = Rng(1);
    rng.shuffle(&mut held);
    let mut cursor = 0;
    g.bench_function("space_release", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let batch = left.min(held.len() - cursor);
                let victims = &held[cursor..cursor + batch];
                let start = Instant::now();
                for slot in victims {
                    black_box(space.unmark(slot));
                }
                total += start.elapsed();
                for slot in victims {
                    space.mark(slot);
                }
                cursor = (cursor + batch) % held.len();
                left -= batch;
            }
            total
        })
    });
    g.finish();
}

fn main() {
    // `cargo test --benches` runs this binary without `--bench`; criterion
    // then only smoke-tests each routine, and the reports would be slow noise.
    if std::env::args().any(|a| a == "--bench") {
        memory_report();
        ratio_report();
    }
    let mut c = Criterion::default().configure_from_args();
    bench_48(&mut c);
    bench_32(&mut c);
    c.final_summary();
}
