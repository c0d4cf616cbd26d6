//! Relay capacity on loopback: N relayed G.711 calls (100 packets/s each through the
//! relay), every relay on ONE thread, stepping N up. Prints, per step, the packets relayed
//! per second, the share of packets late (> 20 ms after their schedule), the share lost,
//! and the relay thread's CPU; then the highest N with < 1 % late and no loss.
//!
//! `cargo bench -p media-transport --bench relay [-- --secs 2 --steps 250,500]`, or the
//! environment: RELAY_BENCH_SECS (default 5), RELAY_BENCH_STEPS (comma-separated).
//! Bounded: at most 8 steps, a step at most 10 s; stops after two saturated steps in a row
//! (> 10 % late or > 5 % lost) or after 150 s.
//!
//! On loopback the kernel's receive path of every packet runs in its sender's thread, so
//! the relay thread's CPU includes the phones' receive work and the phones' threads the
//! relay's; on a machine with few cores the load generator competes with the relay. The
//! relay CPU and "relayed/CPU-s" columns say which side ran out first.

#[path = "support/relay_load.rs"]
mod relay_load;

use std::time::{Duration, Instant};

use media_transport::PortRange;
use relay_load::{FDS_PER_STREAM, RelayThread, StepConfig};

const DEFAULT_STEPS: [usize; 8] = [250, 500, 1000, 1500, 2000, 2500, 3000, 4000];
/// Relay ports: 4 per call, below the ephemeral range the phones take theirs from.
const RELAY_PORTS: PortRange = PortRange {
    first: 10000,
    last: 29999,
};
const TOTAL_BUDGET: Duration = Duration::from_secs(150);

fn main() {
    let (secs, steps) = relay_load::bench_settings("RELAY_BENCH", &DEFAULT_STEPS);
    // Four relay ports per call; six file descriptors per call, within the soft limit.
    let by_ports = (usize::from(RELAY_PORTS.last - RELAY_PORTS.first) + 1) / 4;
    let by_fds = relay_load::open_files_limit().map_or(usize::MAX, |limit| {
        usize::try_from(limit.saturating_sub(200) / FDS_PER_STREAM).unwrap_or(usize::MAX)
    });
    let max_streams = by_ports.min(by_fds);

    println!("relay benchmark: {}", relay_load::machine_description());
    println!(
        "G.711 20 ms, 172-byte packets, both directions; all relays on one current_thread runtime; \
         {secs} s per step; at most {max_streams} calls (ports {by_ports}, open files {by_fds})"
    );
    println!(
        "{:>7} {:>12} {:>8} {:>8} {:>10} {:>14} {:>10} {:>12}",
        "calls",
        "relayed/s",
        "late %",
        "lost %",
        "relay CPU",
        "relayed/CPU-s",
        "send fail",
        "gen max lag"
    );
    let relays = match RelayThread::start(RELAY_PORTS) {
        Ok(relays) => relays,
        Err(e) => {
            eprintln!("relay thread: {e}");
            std::process::exit(1);
        }
    };
    let begun = Instant::now();
    let mut best = None;
    let mut saturated = 0;
    for streams in steps.into_iter().take(8) {
        if streams > max_streams {
            println!("{streams:>7} skipped: over the limit of {max_streams} calls");
            continue;
        }
        if begun.elapsed() > TOTAL_BUDGET {
            println!("stopping: time budget spent");
            break;
        }
        let config = StepConfig {
            streams,
            duration: Duration::from_secs_f64(secs),
        };
        let result = match relay_load::run_step(&relays, &config) {
            Ok(result) => result,
            Err(e) => {
                println!("{streams:>7} failed: {e}");
                break;
            }
        };
        println!(
            "{:>7} {:>12.0} {:>8.2} {:>8.3} {:>9.1}% {:>14.0} {:>10} {:>9.1} ms",
            result.streams,
            result.relayed_per_second(),
            result.late_percent(),
            result.lost_percent(),
            result.relay_cpu_percent(),
            result.relayed_per_cpu_second(),
            result.send_failed,
            result.generator_max_lag.as_secs_f64() * 1000.0,
        );
        if result.late_percent() < 1.0 && result.sent > 0 && result.received == result.sent {
            best = Some(streams);
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
        Some(n) => println!(
            "highest calls with < 1 % late and no loss: {n} ({} packets/s through the relay)",
            n * 100
        ),
        None => println!("no step had < 1 % late and no loss"),
    }
}
