//! SIPp conformance with RTP: the daemon's `echo` user answers an audio call and sends back
//! the audio it receives, on the address the peer really sends from (symmetric RTP); a call
//! without RTP is hung up with a BYE after the media timeout.
//!
//! - `uac_rtp_echo.xml`: SIPp calls `echo` offering PCMA and plays a pcap the test writes
//!   (the audio of Debian sip-tester's `g711a.pcap`, repacketized into 20 ms frames). The
//!   loopback traffic of the daemon's RTP port is captured with `dumpcap` (Debian
//!   wireshark-common, which tshark pulls in; scripts/test installs it) and parsed here.
//! - `uac_media_timeout.xml`: SIPp calls `echo` and sends no RTP; the daemon, with a 2 s
//!   media timeout, must send a BYE with `Reason: ... No RTP for 2 s` 2 to 4 s after the ACK.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Daemon, SippRun, free_port, repo_root, scratch_dir, sipp_at_in};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The audio SIPp plays: Debian sip-tester's sample (PCMA, 30 ms frames).
const SAMPLE_PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
/// Frames of 20 ms (160 PCMA samples) the test plays: 3 s.
const FRAMES: usize = 150;
const FRAME_BYTES: usize = 160;
/// RTP payload type 8: PCMA (RFC 3551 §6).
const PCMA: u8 = 8;
/// G.711 A-law's code for a zero sample: what the daemon sends while it has nothing to echo.
const ALAW_SILENCE: u8 = 0xD5;

// ---------------------------------------------------------------------------------------
// pcap (libpcap format): read the capture and the sample, write the file SIPp plays.
// ---------------------------------------------------------------------------------------

/// One captured IPv4 UDP datagram.
#[derive(Debug, Clone)]
struct Datagram {
    /// Capture time since the first packet of the file.
    time: Duration,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

fn u16_be(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The IPv4 UDP datagrams of a libpcap file (Ethernet, Linux cooked v1/v2, BSD loopback or
/// raw IP link types); other packets are left out.
fn read_pcap(path: &Path) -> Vec<Datagram> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(data.len() >= 24, "{}: no pcap header", path.display());
    let magic = [data[0], data[1], data[2], data[3]];
    let (little, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => panic!(
            "{}: not a libpcap file (magic {magic:02x?})",
            path.display()
        ),
    };
    let u32_at = |at: usize| {
        let b = [data[at], data[at + 1], data[at + 2], data[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link_type = u32_at(20);
    let mut out = Vec::new();
    let mut first: Option<Duration> = None;
    let mut at = 24;
    while at + 16 <= data.len() {
        let seconds = u64::from(u32_at(at));
        let fraction = u64::from(u32_at(at + 4));
        let captured = u32_at(at + 8) as usize;
        let frame = &data[at + 16..(at + 16 + captured).min(data.len())];
        at += 16 + captured;
        let stamp = Duration::from_secs(seconds)
            + if nanos {
                Duration::from_nanos(fraction)
            } else {
                Duration::from_micros(fraction)
            };
        let first = *first.get_or_insert(stamp);
        // Where the IPv4 header starts, for IPv4 frames.
        let ip = match link_type {
            // Ethernet: EtherType 0x0800.
            1 if frame.len() >= 14 && u16_be(frame, 12) == 0x0800 => 14,
            // BSD loopback: address family 2 (AF_INET), host order.
            0 if frame.len() >= 4 && (frame[0] == 2 || frame[3] == 2) => 4,
            // Linux cooked capture v1: protocol at 14.
            113 if frame.len() >= 16 && u16_be(frame, 14) == 0x0800 => 16,
            // Linux cooked capture v2: protocol at 0.
            276 if frame.len() >= 20 && u16_be(frame, 0) == 0x0800 => 20,
            // Raw IP.
            101 | 228 => 0,
            _ => continue,
        };
        let Some(packet) = frame.get(ip..) else {
            continue;
        };
        if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != 17 {
            continue;
        }
        let header = usize::from(packet[0] & 0x0f) * 4;
        let Some(udp) = packet.get(header..) else {
            continue;
        };
        if udp.len() < 8 {
            continue;
        }
        let length = usize::from(u16_be(udp, 4)).clamp(8, udp.len());
        let src_ip = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst_ip = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        out.push(Datagram {
            time: stamp.saturating_sub(first),
            src: SocketAddrV4::new(src_ip, u16_be(udp, 0)),
            dst: SocketAddrV4::new(dst_ip, u16_be(udp, 2)),
            payload: udp[8..length].to_vec(),
        });
    }
    out
}

/// An RTP packet's payload type and payload (RFC 3550 §5.1), for version 2 packets.
fn rtp(datagram: &[u8]) -> Option<(u8, &[u8])> {
    if datagram.len() < 12 || datagram[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(datagram[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if datagram[0] & 0x10 != 0 {
        let words = usize::from(u16_be(datagram.get(start..start + 4)?, 2));
        start += 4 + 4 * words;
    }
    let mut end = datagram.len();
    if datagram[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*datagram.last()?))?;
    }
    Some((datagram[1] & 0x7f, datagram.get(start..end)?))
}

/// Writes `frames` as a libpcap file of RTP/UDP/IPv4/Ethernet packets 20 ms apart, payload
/// type PCMA, which SIPp's `play_pcap_audio` plays (it rewrites the addresses and ports).
fn write_rtp_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut file = Vec::new();
    // Global header: magic, version 2.4, zone, accuracy, snaplen, Ethernet.
    file.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        file.extend_from_slice(&word.to_le_bytes());
    }
    let ssrc = 0x5449_4e44_u32;
    for (i, payload) in frames.iter().enumerate() {
        let mut rtp = vec![0x80, PCMA];
        rtp.extend_from_slice(&(1000 + i as u16).to_be_bytes());
        rtp.extend_from_slice(&(160 * i as u32).to_be_bytes());
        rtp.extend_from_slice(&ssrc.to_be_bytes());
        rtp.extend_from_slice(payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        let checksum = !ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .fold(0u32, |sum, w| {
                let sum = sum + w;
                (sum & 0xffff) + (sum >> 16)
            }) as u16;
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut packet = vec![0u8; 12];
        packet.extend_from_slice(&[0x08, 0x00]);
        packet.extend_from_slice(&ip);
        packet.extend_from_slice(&5000u16.to_be_bytes());
        packet.extend_from_slice(&6000u16.to_be_bytes());
        packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
        packet.extend_from_slice(&0u16.to_be_bytes());
        packet.extend_from_slice(&rtp);
        let at = Duration::from_millis(20 * i as u64);
        let header = [
            1_000_000_000 + at.as_secs() as u32,
            at.subsec_micros(),
            packet.len() as u32,
            packet.len() as u32,
        ];
        for word in header {
            file.extend_from_slice(&word.to_le_bytes());
        }
        file.extend_from_slice(&packet);
    }
    std::fs::write(path, file).unwrap();
}

/// [`FRAMES`] frames of 20 ms of the sample's audio, in its order, from its first frame
/// that is not pure silence (the echo starts with silence: it would match those).
fn sample_frames() -> Vec<Vec<u8>> {
    let audio: Vec<u8> = read_pcap(Path::new(SAMPLE_PCAP))
        .iter()
        .filter_map(|d| rtp(&d.payload))
        .filter(|(pt, _)| *pt == PCMA)
        .flat_map(|(_, payload)| payload.to_vec())
        .collect();
    let frames: Vec<Vec<u8>> = audio
        .chunks_exact(FRAME_BYTES)
        .skip_while(|f| f.iter().all(|&b| b == ALAW_SILENCE))
        .take(FRAMES)
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(
        frames.len(),
        FRAMES,
        "{SAMPLE_PCAP} (Debian sip-tester) holds too little PCMA audio"
    );
    frames
}

// ---------------------------------------------------------------------------------------
// The capture.
// ---------------------------------------------------------------------------------------

/// `dumpcap` capturing the loopback traffic that passes a filter, into a pcap file.
struct Capture {
    child: Child,
    file: PathBuf,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Capture {
    /// Starts capturing on `lo` and waits until dumpcap says it captures.
    fn start(name: &str, filter: &str) -> Capture {
        let file = scratch_dir(name).join("capture.pcap");
        let _ = std::fs::remove_file(&file);
        let mut child = Command::new("dumpcap")
            // -P: libpcap format; -q: no packet counts; stops by itself after 60 s at most.
            .args([
                "-i",
                "lo",
                "-P",
                "-q",
                "-a",
                "duration:60",
                "-f",
                filter,
                "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dumpcap runs (Debian wireshark-common, installed with tshark)");
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut capture = Capture {
            child,
            file,
            stderr,
            log: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(line) = capture.stderr.recv_timeout(Duration::from_millis(50)) {
                let started = line.contains("Capturing on");
                capture.log.push(line);
                if started {
                    break;
                }
            }
            if let Some(status) = capture.child.try_wait().unwrap() {
                panic!("dumpcap exited ({status}): {}", capture.log.join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "dumpcap did not start: {}",
                capture.log.join("\n")
            );
        }
        capture
    }

    /// Stops the capture (SIGINT: dumpcap writes out what it holds) and reads it.
    fn finish(mut self) -> Vec<Datagram> {
        // What was sent last is in the kernel's buffer: give dumpcap a moment to take it.
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "dumpcap did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log.extend(self.stderr.try_iter());
        read_pcap(&self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An even port that is free on 127.0.0.1, with the odd one after it (RTP and RTCP).
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port.is_multiple_of(2)
            && port < u16::MAX
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
}

fn report(run: &SippRun) -> String {
    format!(
        "SIPp exit {}\nstdout:\n{}\nstderr:\n{}",
        run.exit_code, run.stdout, run.stderr
    )
}

// ---------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------

#[test]
fn echo_sends_back_the_audio_sipp_plays_to_where_sipp_sends_from() {
    let rtp_port = free_port_pair();
    let sipp_media_port = free_port_pair();
    let daemon = Daemon::start_with(
        "media-echo",
        "",
        &format!(
            "[media]\naddress = \"127.0.0.1\"\nrtp_port_first = {rtp_port}\n\
             rtp_port_last = {}\n",
            rtp_port + 1
        ),
    );
    let dir = scratch_dir("media-echo-sipp");
    let frames = sample_frames();
    write_rtp_pcap(&dir.join("rtp_echo.pcap"), &frames);
    let capture = Capture::start("media-echo", &format!("udp port {rtp_port}"));

    let scenario = repo_root().join("tests/sipp/uac_rtp_echo.xml");
    let started = Instant::now();
    let run = sipp_at_in(
        "media-echo",
        SocketAddr::from(([127, 0, 0, 1], daemon.port)),
        &dir,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "1",
            "-mp",
            &sipp_media_port.to_string(),
            "-timeout",
            "20s",
        ],
    );
    let elapsed = started.elapsed();
    let datagrams = capture.finish();
    assert_eq!(
        (run.exit_code, run.successful, run.failed),
        (0, 1, 0),
        "{}",
        report(&run)
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "the call took {elapsed:?}"
    );

    // What SIPp played: the RTP sent to the daemon's port.
    let daemon_rtp = SocketAddrV4::new(Ipv4Addr::LOCALHOST, rtp_port);
    let played: Vec<&Datagram> = datagrams.iter().filter(|d| d.dst == daemon_rtp).collect();
    let sources: Vec<SocketAddrV4> = played.iter().map(|d| d.src).fold(Vec::new(), |mut v, s| {
        if !v.contains(&s) {
            v.push(s);
        }
        v
    });
    assert_eq!(
        sources.len(),
        1,
        "SIPp's RTP came from {sources:?} ({} datagrams captured)",
        datagrams.len()
    );
    let sipp_source = sources[0];
    let played_payloads: Vec<&[u8]> = played
        .iter()
        .filter_map(|d| rtp(&d.payload))
        .filter(|(pt, _)| *pt == PCMA)
        .map(|(_, payload)| payload)
        .collect();
    // SIPp played the file: every frame, as written.
    assert!(
        played_payloads.len() >= FRAMES * 9 / 10,
        "SIPp played {} of {FRAMES} frames",
        played_payloads.len()
    );
    assert!(
        played_payloads
            .iter()
            .zip(&frames)
            .all(|(played, written)| *played == written.as_slice()),
        "SIPp did not play the frames of the file in order"
    );
    let first_played = played[0].time;

    // Symmetric RTP: the SDP offered 127.0.0.2, SIPp sends from 127.0.0.1. Once SIPp's
    // first packet has arrived (and some time for a loaded machine), the daemon sends
    // there only.
    let sent: Vec<&Datagram> = datagrams.iter().filter(|d| d.src == daemon_rtp).collect();
    assert!(!sent.is_empty(), "the daemon sent no RTP");
    let latched_by = first_played + Duration::from_millis(200);
    let elsewhere: Vec<SocketAddrV4> = sent
        .iter()
        .filter(|d| d.time > latched_by && d.dst != sipp_source)
        .map(|d| d.dst)
        .collect();
    assert!(
        elsewhere.is_empty(),
        "after SIPp's first RTP from {sipp_source} the daemon still sent {} packets \
         elsewhere: {:?}",
        elsewhere.len(),
        &elsewhere[..elsewhere.len().min(5)]
    );
    let echoed: Vec<&[u8]> = sent
        .iter()
        .filter(|d| d.dst == sipp_source)
        .filter_map(|d| rtp(&d.payload))
        .map(|(pt, payload)| {
            assert_eq!(pt, PCMA, "the daemon answered PCMA and must send PCMA");
            payload
        })
        .collect();
    assert!(
        echoed.len() >= played_payloads.len() * 9 / 10,
        "the daemon sent {} packets to {sipp_source}, SIPp played {}",
        echoed.len(),
        played_payloads.len()
    );

    // The echo: each frame SIPp played comes back, whole and in order, after some
    // leading silence; the delay may grow by a frame now and then (the echo buffer
    // fills a frame when a packet comes just after its send tick), never by much.
    let mut cursor = 0;
    let mut shifts = Vec::new();
    let mut missing = Vec::new();
    let mut first_echo = None;
    for (i, frame) in played_payloads.iter().enumerate() {
        let window = echoed.len().min(cursor + 20);
        match (cursor..window).find(|&j| echoed[j] == *frame) {
            Some(j) => {
                first_echo.get_or_insert(j);
                shifts.push(j as i64 - i as i64);
                cursor = j + 1;
            }
            None => missing.push(i),
        }
    }
    let matched = played_payloads.len() - missing.len();
    eprintln!(
        "SIPp played {} frames from {sipp_source}; the daemon sent {} packets (the first to \
         {}), {} of them to {sipp_source}; {matched} frames came back, delays {:?} frames, \
         the first echo in packet {first_echo:?}",
        played_payloads.len(),
        sent.len(),
        sent[0].dst,
        echoed.len(),
        shifts.iter().min().zip(shifts.iter().max()),
    );
    assert!(
        matched * 10 >= played_payloads.len() * 9,
        "only {matched} of {} frames came back; missing: {missing:?}",
        played_payloads.len()
    );
    let (min_shift, max_shift) = (*shifts.iter().min().unwrap(), *shifts.iter().max().unwrap());
    assert!(
        min_shift >= 0 && max_shift - min_shift <= 10,
        "the echo's delay (in frames after the first to {sipp_source}) drifted from \
         {min_shift} to {max_shift}"
    );
    // Before the echo: silence.
    assert!(
        echoed[..first_echo.unwrap()]
            .iter()
            .all(|p| p.iter().all(|&b| b == ALAW_SILENCE)),
        "the daemon sent something else than silence before the echo"
    );
    daemon.stop();
}

/// The value of `key=` in SIPp's log (written by the scenario's `<log>` actions).
fn logged_ms(log: &str, key: &str) -> u64 {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in SIPp's log:\n{log}"))
}

#[test]
fn a_call_without_rtp_is_hung_up_after_the_media_timeout() {
    let daemon = Daemon::start_with(
        "media-timeout",
        "",
        "[media]\naddress = \"127.0.0.1\"\ntimeout_s = 2\nhangup_on_timeout = true\n",
    );
    let dir = scratch_dir("media-timeout-sipp");
    let log = dir.join("sipp.log");
    let _ = std::fs::remove_file(&log);
    let scenario = repo_root().join("tests/sipp/uac_media_timeout.xml");
    let started = Instant::now();
    let run = sipp_at_in(
        "media-timeout",
        SocketAddr::from(([127, 0, 0, 1], daemon.port)),
        &dir,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "1",
            "-mp",
            &free_port_pair().to_string(),
            "-timeout",
            "15s",
            "-trace_logs",
            "-log_file",
            log.to_str().unwrap(),
        ],
    );
    let elapsed = started.elapsed();
    assert_eq!(
        (run.exit_code, run.successful, run.failed),
        (0, 1, 0),
        "SIPp got no BYE with `No RTP for 2 s`:\n{}",
        report(&run)
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let ack = logged_ms(&log, "ack_sent_ms=");
    let bye = logged_ms(&log, "bye_received_ms=");
    let delay = Duration::from_millis(bye.saturating_sub(ack));
    assert!(
        bye >= ack && delay >= Duration::from_secs(2) && delay <= Duration::from_secs(4),
        "the BYE came {delay:?} after the ACK (ack at {ack} ms, BYE at {bye} ms): \
         the media timeout is 2 s"
    );
    assert!(
        elapsed < Duration::from_secs(15),
        "the call took {elapsed:?}"
    );
    daemon.stop();
}
