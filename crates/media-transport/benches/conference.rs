//! Conference capacity on loopback: M three-party G.711 conferences (each participant
//! sends a frame every 20 ms and gets back the mix of the two others every 20 ms), every
//! conference on ONE thread, stepping M up. Prints, per step, the mixed packets sent per
//! second, the share of mixed packets late (> 20 ms after their frame was due on the
//! conference's own 20 ms clock), the share lost (mixed frames not received of those the
//! conference's packet rate promises), the 99th percentile and worst delay, and the
//! conference thread's CPU; then the highest M with < 1 % late (and the highest with
//! < 1 % late and no loss). See benches/support/conference_load.rs for the definitions.
//!
//! `cargo bench -p media-transport --bench conference [-- --secs 2 --steps 50,100]`, or
//! the environment: CONFERENCE_BENCH_SECS (default 5), CONFERENCE_BENCH_STEPS
//! (comma-separated). Bounded: at most 8 steps, a step at most 10 s; stops after two
//! saturated steps in a row (> 10 % late or > 5 % lost) or once 100 s are spent.
//!
//! As in the relay benchmark, on loopback the kernel's receive path of every packet runs in
//! its sender's thread, and on a machine with few cores the phones' threads compete with
//! the conference thread: the "conf CPU" and "conf/core" columns say which side ran out.

#[path = "support/conference_load.rs"]
mod conference_load;
#[path = "support/relay_load.rs"]
mod relay_load;

use std::time::{Duration, Instant};

use conference_load::{
    ConferenceThread, FDS_PER_CONFERENCE, PARTIES, PORTS_PER_CONFERENCE, StepConfig,
};
use media_transport::PortRange;

const DEFAULT_STEPS: [usize; 8] = [50, 100, 200, 300, 400, 600, 800, 1000];
/// Conference ports: six per conference, below the ephemeral range the phones take theirs
/// from.
const CONFERENCE_PORTS: PortRange = PortRange {
    first: 10000,
    last: 29999,
};
const TOTAL_BUDGET: Duration = Duration::from_secs(100);

fn main() {
    let (secs, steps) = relay_load::bench_settings("CONFERENCE_BENCH", &DEFAULT_STEPS);
    let by_ports =
        (usize::from(CONFERENCE_PORTS.last - CONFERENCE_PORTS.first) + 1) / PORTS_PER_CONFERENCE;
    let by_fds = relay_load::open_files_limit().map_or(usize::MAX, |limit| {
        usize::try_from(limit.saturating_sub(200) / FDS_PER_CONFERENCE).unwrap_or(usize::MAX)
    });
    let max_conferences = by_ports.min(by_fds);

    println!(
        "conference benchmark: {}",
        relay_load::machine_description()
    );
    println!(
        "{PARTIES}-party conferences, G.711 20 ms, 172-byte packets each way; all conferences on one \
         current_thread runtime; {secs} s per step; at most {max_conferences} conferences \
         (ports {by_ports}, open files {by_fds})"
    );
    println!(
        "late: a mixed packet > 20 ms after its frame was due on its conference's 20 ms clock; \
         lost: mixed frames not received of {PARTIES} per conference per 20 ms"
    );
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "confs",
        "mixed/s",
        "late %",
        "lost %",
        "p99 ms",
        "max ms",
        "conf CPU",
        "conf/core",
        "send fail",
        "gen lag ms"
    );
    let conferences = match ConferenceThread::start(CONFERENCE_PORTS) {
        Ok(conferences) => conferences,
        Err(e) => {
            eprintln!("conference thread: {e}");
            std::process::exit(1);
        }
    };
    let begun = Instant::now();
    let mut best = None;
    let mut best_lossless = None;
    // Steps over 1 % late, to say when a higher step passed after a lower one failed.
    let mut failed_steps = Vec::new();
    let mut saturated = 0;
    for m in steps.into_iter().take(8) {
        if m > max_conferences {
            println!("{m:>6} skipped: over the limit of {max_conferences} conferences");
            continue;
        }
        if begun.elapsed() > TOTAL_BUDGET {
            println!("stopping: time budget spent");
            break;
        }
        let config = StepConfig {
            conferences: m,
            duration: Duration::from_secs_f64(secs),
        };
        let result = match conference_load::run_step(&conferences, &config) {
            Ok(result) => result,
            Err(e) => {
                println!("{m:>6} failed: {e}");
                break;
            }
        };
        println!(
            "{:>6} {:>10.0} {:>8.2} {:>8.3} {:>8} {:>9.1} {:>8.1}% {:>10.0} {:>10} {:>10.1}",
            result.conferences,
            result.mixed_per_second(),
            result.late_percent(),
            result.lost_percent(),
            result.delay_p99.as_millis(),
            result.delay_max.as_secs_f64() * 1000.0,
            result.conference_cpu_percent(),
            result.conferences_per_core(),
            result.send_failed,
            result.generator_max_lag.as_secs_f64() * 1000.0,
        );
        let on_time = result.received > 0 && result.late_percent() < 1.0;
        if on_time {
            best = Some(m);
            if result.received == result.expected {
                best_lossless = Some(m);
            }
        } else {
            failed_steps.push(m);
        }
        if result.late_percent() > 10.0 || result.lost_percent() > 5.0 {
            saturated += 1;
            if saturated == 2 {
                println!("stopping: saturated twice in a row");
                break;
            }
        } else {
            saturated = 0;
        }
    }
    match best {
        Some(m) => println!(
            "highest conferences with < 1 % late: {m} ({} participants, {} mixed packets/s)",
            m * PARTIES,
            m * PARTIES * 50
        ),
        None => println!("no step had < 1 % late"),
    }
    if let Some(m) = best {
        let below: Vec<String> = failed_steps
            .iter()
            .filter(|f| **f < m)
            .map(|f| f.to_string())
            .collect();
        if !below.is_empty() {
            println!(
                "note: lower steps ({}) were over 1 % late: the machine is noisy, run again",
                below.join(", ")
            );
        }
    }
    match best_lossless {
        Some(m) => println!("highest conferences with < 1 % late and no loss: {m}"),
        None => println!("no step had < 1 % late and no loss"),
    }
}
