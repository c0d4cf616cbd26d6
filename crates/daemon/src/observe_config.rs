//! `[admin]` (the admin HTTP listener: /metrics and the call ladder) and `[hep]` (HEPv3
//! export of every SIP message) of the daemon's configuration. Errors name the line and
//! the key, as every section's do.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use toml::Spanned;

/// `[admin]`: Prometheus metrics and the call ladder over HTTP. Without `listen` it is
/// off.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `address:port` it serves HTTP on.
    pub listen: Option<Spanned<SocketAddr>>,
    /// A bearer token every request must carry; `TANDEM_ADMIN_TOKEN` overrides it.
    pub token: Option<Spanned<String>>,
    /// How many recent calls the ladder keeps [200].
    pub ladder_calls: Option<Spanned<usize>>,
    /// How many messages of each call it keeps [200].
    pub ladder_messages: Option<Spanned<usize>>,
}

/// `[hep]`: HEPv3 export to a collector (Homer, sngrep -L). Without `collector` it is off.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HepSection {
    /// `udp:address:port` of the collector.
    pub collector: Option<Spanned<String>>,
    /// The capture agent id sent in every packet [2001].
    pub capture_id: Option<Spanned<u32>>,
    /// The collector's password (the HEP auth key); `TANDEM_HEP_PASSWORD` overrides it.
    pub password: Option<Spanned<String>>,
    /// Packets queued for sending before new ones are dropped [4096].
    pub queue: Option<Spanned<usize>>,
}

/// `[admin]` and `[hep]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveSettings {
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    pub ladder_calls: usize,
    pub ladder_messages: usize,
    pub hep: Option<runtime::observe::HepConfig>,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            admin_listen: None,
            admin_token: None,
            ladder_calls: 200,
            ladder_messages: 200,
            hep: None,
        }
    }
}

/// Builds and checks both sections; `env` reads the environment (secrets override the
/// file). `line_of` maps a byte offset to its line and text.
pub fn settings(
    admin: &AdminSection,
    hep: &HepSection,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    line_of: impl Fn(&str, usize) -> (usize, &str),
) -> Result<ObserveSettings, String> {
    let at = |section: &str,
              key: &str,
              span: Option<std::ops::Range<usize>>,
              problem: &dyn fmt::Display| {
        let offset = span.map_or_else(
            || text.find(&format!("[{section}]")).unwrap_or_default(),
            |s| s.start,
        );
        let (line, content) = line_of(text, offset);
        format!("line {line}: key `{section}.{key}`: {problem} (in `{content}`)")
    };
    let mut s = ObserveSettings {
        admin_listen: admin.listen.as_ref().map(|l| *l.get_ref()),
        admin_token: admin.token.as_ref().map(|t| t.get_ref().clone()),
        ..ObserveSettings::default()
    };
    if let Some(token) = env("TANDEM_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
        s.admin_token = Some(token);
    }
    if let Some(token) = &s.admin_token
        && (token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(at(
            "admin",
            "token",
            admin.token.as_ref().map(Spanned::span),
            &"must be at least 16 characters, with no spaces or control characters",
        ));
    }
    for (key, value, target) in [
        ("ladder_calls", &admin.ladder_calls, &mut s.ladder_calls),
        (
            "ladder_messages",
            &admin.ladder_messages,
            &mut s.ladder_messages,
        ),
    ] {
        if let Some(v) = value {
            if !(1..=10_000).contains(v.get_ref()) {
                return Err(at("admin", key, Some(v.span()), &"must be 1 to 10000"));
            }
            *target = *v.get_ref();
        }
    }
    let Some(collector) = &hep.collector else {
        if let Some((key, span)) = hep
            .capture_id
            .as_ref()
            .map(|v| ("capture_id", v.span()))
            .or(hep.password.as_ref().map(|v| ("password", v.span())))
            .or(hep.queue.as_ref().map(|v| ("queue", v.span())))
        {
            return Err(at("hep", key, Some(span), &"needs `hep.collector`"));
        }
        return Ok(s);
    };
    let addr = collector
        .get_ref()
        .strip_prefix("udp:")
        .and_then(|a| a.parse::<SocketAddr>().ok());
    let Some(addr) = addr else {
        return Err(at(
            "hep",
            "collector",
            Some(collector.span()),
            &format!(
                "`{}` is not `udp:address:port` (HEP is sent over UDP)",
                collector.get_ref()
            ),
        ));
    };
    let queue = match &hep.queue {
        Some(q) if !(1..=1_000_000).contains(q.get_ref()) => {
            return Err(at("hep", "queue", Some(q.span()), &"must be 1 to 1000000"));
        }
        Some(q) => *q.get_ref(),
        None => 4096,
    };
    let password = env("TANDEM_HEP_PASSWORD")
        .filter(|p| !p.is_empty())
        .or_else(|| hep.password.as_ref().map(|p| p.get_ref().clone()));
    if let (Some(p), Some(spanned)) = (&password, &hep.password)
        && p.len() > 1024
    {
        return Err(at(
            "hep",
            "password",
            Some(spanned.span()),
            &"is longer than 1024 bytes",
        ));
    }
    s.hep = Some(runtime::observe::HepConfig {
        collector: addr,
        capture_id: hep.capture_id.as_ref().map_or(2001, |c| *c.get_ref()),
        auth_key: password,
        queue,
    });
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use crate::config::Config;

    #[test]
    fn off_by_default_and_parsed_when_set() {
        let config = Config::parse("", "t.toml").unwrap();
        assert_eq!(config.observe_settings.admin_listen, None);
        assert_eq!(config.observe_settings.hep, None);
        let text = "[admin]\nlisten = \"127.0.0.1:9091\"\ntoken = \"0123456789abcdef\"\n\
                    ladder_calls = 50\n\n[hep]\ncollector = \"udp:127.0.0.1:9060\"\n\
                    capture_id = 7\npassword = \"pw\"\n";
        let s = Config::parse(text, "t.toml").unwrap().observe_settings;
        assert_eq!(s.admin_listen, Some("127.0.0.1:9091".parse().unwrap()));
        assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!((s.ladder_calls, s.ladder_messages), (50, 200));
        let hep = s.hep.unwrap();
        assert_eq!(hep.collector, "127.0.0.1:9060".parse().unwrap());
        assert_eq!(hep.capture_id, 7);
        assert_eq!(hep.auth_key.as_deref(), Some("pw"));
        assert_eq!(hep.queue, 4096);
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        for (text, line, key) in [
            (
                "[admin]\nlisten = \"127.0.0.1:9091\"\ntoken = \"short\"\n",
                3,
                "admin.token",
            ),
            ("[admin]\nladder_calls = 0\n", 2, "admin.ladder_calls"),
            (
                "\n[hep]\ncollector = \"tcp:127.0.0.1:9060\"\n",
                3,
                "hep.collector",
            ),
            ("[hep]\ncollector = \"udp:nowhere\"\n", 2, "hep.collector"),
            ("[hep]\ncapture_id = 3\n", 2, "hep.capture_id"),
            (
                "[hep]\ncollector = \"udp:127.0.0.1:1\"\nqueue = 0\n",
                3,
                "hep.queue",
            ),
        ] {
            let err = Config::parse(text, "t.toml").unwrap_err().to_string();
            assert!(err.contains(&format!("line {line}:")), "{text:?}: {err}");
            assert!(err.contains(&format!("`{key}`")), "{text:?}: {err}");
        }
        let err = Config::parse("[admin]\nport = 1\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("port"), "{err}");
        let err = Config::parse("[hep]\ncollector = 5\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_examples_keys_parse_once_uncommented() {
        let text = include_str!("../../../config/tandem.example.toml");
        let wanted = [
            "listen = \"127.0.0.1:9091\"",
            "token = ",
            "collector = ",
            "capture_id = ",
        ];
        let lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# [admin]"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
            .collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        let toml = format!(
            "[admin]\n{}\n{}\n[hep]\n{}\n{}\n",
            lines[0], lines[1], lines[2], lines[3]
        );
        let s = Config::parse(&toml, "example").unwrap().observe_settings;
        assert!(s.admin_listen.is_some() && s.admin_token.is_some() && s.hep.is_some());
    }
}
