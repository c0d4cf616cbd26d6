//! The systemd notification protocol (`sd_notify(3)`), hand-rolled: one datagram of
//! `KEY=value` lines to the AF_UNIX socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name written with a leading `@`). No libsystemd.
//!
//! - `READY=1` once every socket is bound; `RELOADING=1` then `READY=1` around a reload;
//!   `STOPPING=1` when a drain or a stop begins;
//! - `WATCHDOG=1` at half of `$WATCHDOG_USEC`, sent only when the driver's loop answered
//!   a status request (so a stuck loop stops the pings and systemd restarts us);
//! - `STATUS=...`: active calls and trunk states, every few seconds.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go; `None` inside when not run by systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a socket that cannot be used is logged and ignored (the
    /// daemon runs on without notifications).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            match open(path.to_string_lossy().as_ref()) {
                Ok(target) => Some(target),
                Err(error) => {
                    tracing::warn!(%error, socket = ?path, "NOTIFY_SOCKET not usable");
                    None
                }
            }
        });
        Notifier { target }
    }

    /// Notifications to the socket at `path` (as `$NOTIFY_SOCKET` would name it).
    #[cfg(test)]
    pub fn to(path: &str) -> io::Result<Notifier> {
        Ok(Notifier {
            target: Some(open(path)?),
        })
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`state` is one or more `KEY=value` lines).
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(error) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!(%error, "sd_notify not sent");
        }
    }
}

fn open(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None if path.starts_with('/') => SocketAddr::from_pathname(path)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a path nor an abstract name (@...)",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is set and
/// `$WATCHDOG_PID` (if set) is ours (`sd_watchdog_enabled(3)`).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// `STATUS=` text: one line, no newline (a newline would start another key).
pub fn status_line(text: &str) -> String {
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn notifies_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("tandem-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let (socket, addr) = open(path.to_str().unwrap()).unwrap();
        let notifier = Notifier {
            target: Some((socket, addr)),
        };
        notifier.notify("READY=1\nSTATUS=0 active calls");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=0 active calls");
    }

    #[test]
    fn notifies_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tandem-sd-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let (socket, addr) = open(&format!("@{name}")).unwrap();
        Notifier {
            target: Some((socket, addr)),
        }
        .notify("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn a_relative_path_is_refused_and_status_is_one_line() {
        assert!(open("notify").is_err());
        assert_eq!(status_line("a\nb"), "STATUS=a b");
    }
}
