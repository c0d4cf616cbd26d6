"""Helpers shared by the robustness scripts beside the harness (bench/lost, bench/flood,
bench/soak): the Tandem binary, the daemon and SIPp processes, the admin /metrics scrape.

Python 3 standard library only. Every process is started here and ended here, by its own
PID (never by name: other people run SIPp and Tandem on the same machine), and all traffic
stays on the loopback addresses the caller names.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUFFER = 4 * 1024 * 1024


def log(*args):
    print(*args, flush=True)


def fail(script, message):
    """Ends the script with `message` and a non-zero exit."""
    print(f"{script}: FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---------------------------------------------------------------- the binary


def tandem_binary(script, given=None, profile="release"):
    """The `tandem` binary: `given` as it is, else built (`cargo build -p tandem`) in `profile`."""
    if given:
        binary = pathlib.Path(given).resolve()
        if not os.access(binary, os.X_OK):
            fail(script, f"no executable {binary}")
        return binary
    log(f"building tandem ({profile})")
    args = ["cargo", "build", "-q", "-p", "tandem"] + (["--release"] if profile == "release" else [])
    subprocess.run(args, cwd=ROOT, check=True)
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    binary = pathlib.Path(json.loads(meta)["target_directory"]) / profile / "tandem"
    if not binary.exists():
        fail(script, f"no {binary}")
    return binary


def require_sipp(script):
    """SIPp (Debian sip-tester) is needed: a missing tool is a failure, never a skip."""
    import shutil

    if not shutil.which("sipp"):
        fail(script, "sipp not found; install: sudo apt-get install -y sip-tester")


# ---------------------------------------------------------------- processes


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def udp_drops():
    """The kernel's UDP receive errors and buffer drops so far (all sockets)."""
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    row = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return row.get("InErrors", 0) + row.get("RcvbufErrors", 0)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_udp_bound(script, ip, port, proc, what, timeout=20):
    """Waits until something listens on ip:port (UDP), or the process died."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            fail(script, f"{what} exited ({proc.returncode}) before binding {ip}:{port}")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((ip, port))
        except OSError:
            return
        finally:
            s.close()
        time.sleep(0.05)
    fail(script, f"{what} did not bind {ip}:{port}")


class Processes:
    """The processes a script started; all ended at exit (SIGTERM, then SIGKILL), by PID."""

    def __init__(self):
        self.procs = []
        self.signals = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()

    def start(self, args, work, log_name=None, env=None, stop_signal=signal.SIGTERM):
        err = open(work / log_name, "w") if log_name else subprocess.DEVNULL
        proc = subprocess.Popen(args, cwd=work, stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, **(env or {})})
        self.procs.append(proc)
        self.signals[proc.pid] = stop_signal
        return proc

    def stop(self, proc, timeout=10):
        if proc.poll() is None:
            proc.send_signal(self.signals.get(proc.pid, signal.SIGTERM))
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc)


# ---------------------------------------------------------------- Tandem


def b2bua_config(sip, uas, admin, rate_limit=None, allow=None, extra="", ladder_calls=None):
    """A signalling-only B2BUA (like bench/tandem-b2bua.toml) on `sip` bridging every call
    to `uas`, with its admin endpoint on `admin`. `rate_limit`: (requests, window_s) of
    [security]; `allow`: its networks never rate-limited (None: the default, loopback)."""
    lines = [
        "# Written by bench/common.py: a signalling-only bridge to the SIPp uas.",
        "[sip]",
        f'listen = ["udp:{sip[0]}:{sip[1]}"]',
        "[sip.session_timer]",
        "enabled = false",
        "",
        "[log]",
        'level = "warn"',
        "",
        "[admin]",
        f'listen = "{admin[0]}:{admin[1]}"',
    ] + ([f"ladder_calls = {ladder_calls}"] if ladder_calls else []) + [
        "",
    ]
    if rate_limit is not None or allow is not None:
        lines.append("[security]")
        if rate_limit is not None:
            lines.append(f"rate_limit = {{ requests = {rate_limit[0]}, window_s = {rate_limit[1]} }}")
        if allow is not None:
            lines.append("allow = [" + ", ".join(f'"{a}"' for a in allow) + "]")
        lines.append("")
    if extra:
        lines += [extra, ""]
    lines += [
        "[[route]]",
        'name = "bench"',
        'action = "bridge"',
        'media = "signaling"',
        "[[route.targets]]",
        f'uri = "sip:${{user}}@{uas[0]}:{uas[1]}"',
        "",
    ]
    return "\n".join(lines)


def start_tandem(script, procs, binary, config_text, work, sip, admin):
    """Starts `tandem run` on `config_text` (written into `work`); waits for its SIP
    socket and its admin endpoint."""
    config = work / "tandem.toml"
    config.write_text(config_text)
    # SIGINT: the daemon stops at once (SIGTERM would drain the flooder's unacknowledged
    # calls for [daemon] drain_grace_s).
    proc = procs.start([str(binary), "run", "--config", str(config)], work, "tandem.log",
                       env={"RUST_LOG": "warn"}, stop_signal=signal.SIGINT)
    wait_udp_bound(script, sip[0], sip[1], proc, "tandem")
    deadline = time.time() + 20
    while True:
        try:
            scrape(admin)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                fail(script, f"tandem's admin endpoint {admin[0]}:{admin[1]} did not answer "
                             f"(log: {work / 'tandem.log'})")
            time.sleep(0.1)
    return proc


def scrape(admin, timeout=5):
    """GET /metrics of the admin endpoint: {"name{labels}": value}."""
    with urllib.request.urlopen(f"http://{admin[0]}:{admin[1]}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values


def metric(values, name):
    """A metric's value, summed over its label sets (0 when absent)."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


GAUGES = [
    ("client_invite", 'tandem_transactions_active{kind="client_invite"}'),
    ("client_non_invite", 'tandem_transactions_active{kind="client_non_invite"}'),
    ("server_invite", 'tandem_transactions_active{kind="server_invite"}'),
    ("server_non_invite", 'tandem_transactions_active{kind="server_non_invite"}'),
    ("dialogs", "tandem_dialogs_active"),
    ("calls", "tandem_calls_active"),
]


def gauges(values):
    return {short: int(values.get(name, 0)) for short, name in GAUGES}


def wait_gauges_zero(script, admin, proc, limit_s, every_s=2.0):
    """Polls /metrics until every transaction, dialog and call gauge is 0, printing them
    over time; `limit_s` bounds the wait. Returns (at zero, seconds waited, last gauges)."""
    start = time.time()
    header = "  t(s) " + " ".join(f"{short:>17}" for short, _ in GAUGES)
    log(header)
    last = None
    while True:
        if proc.poll() is not None:
            fail(script, f"tandem exited ({proc.returncode}) while the gauges were polled")
        now = gauges(scrape(admin))
        waited = time.time() - start
        if now != last or all(v == 0 for v in now.values()):
            log(f"  {waited:4.0f} " + " ".join(f"{now[short]:>17}" for short, _ in GAUGES))
        last = now
        if all(v == 0 for v in now.values()):
            return True, waited, now
        if waited >= limit_s:
            return False, waited, now
        time.sleep(every_s)


# ---------------------------------------------------------------- SIPp


def stat_last(path):
    """The last row of a SIPp -trace_stat file as a dict."""
    try:
        rows = [line.rstrip("\n").split(";") for line in open(path) if line.strip()]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def count(row, key):
    try:
        return int(row.get(key, 0) or 0)
    except ValueError:
        return 0
