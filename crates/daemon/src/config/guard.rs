//! `[limits]` and `[security]`: overload and abuse protection (sip-core's guard).
//! Checked when the file is read; every error names the line and the key.

use super::{CidrText, line_of};
use runtime::sip_core::guard::DEFAULT_SCANNERS;
use runtime::sip_core::{GuardConfig, RateLimit};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use toml::Spanned;

/// `[limits]`: call admission. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Concurrent inbound calls; 0: no limit [0].
    pub max_calls: Option<Spanned<u32>>,
    /// New inbound calls per second, sustained; 0: no limit [0].
    pub max_calls_per_second: Option<Spanned<u32>>,
    /// Initial INVITEs that may arrive at once [= max_calls_per_second].
    pub burst: Option<Spanned<u32>>,
    /// The Retry-After of a 503, in seconds [5].
    pub retry_after_s: Option<Spanned<u64>>,
}

/// `[security]`: per-source rate limit and ban list, scanners. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// `{ requests = N, window_s = S }`; `requests = 0`: off [60 per 2 s].
    pub rate_limit: Option<Spanned<RateLimitText>>,
    /// How long a source over the limit is banned, in seconds [300].
    pub ban_s: Option<Spanned<u64>>,
    /// Networks never rate-limited ["127.0.0.0/8", "::1"].
    pub allow: Option<Vec<Spanned<CidrText>>>,
    /// The most sources tracked at once [65536].
    pub max_sources: Option<Spanned<usize>>,
    /// Drop scanners' requests without an answer [true].
    pub drop_scanners: Option<bool>,
    /// User-Agent substrings of scanners, case-insensitive [the built-in list].
    pub scanner_user_agents: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitText {
    pub requests: u32,
    #[serde(default = "default_window")]
    pub window_s: u64,
}

fn default_window() -> u64 {
    2
}

/// The defaults of `[security]`, as documented in the example file.
pub const DEFAULT_RATE: RateLimit = RateLimit {
    requests: 60,
    window: Duration::from_secs(2),
};

/// The guard's settings from `[limits]` and `[security]`.
pub fn guard_settings(
    limits: &LimitsSection,
    security: &SecuritySection,
    text: &str,
) -> Result<GuardConfig, String> {
    let at = |table: &str,
              key: &str,
              span: Option<std::ops::Range<usize>>,
              problem: &dyn fmt::Display| {
        let section = text.find(&format!("[{table}]")).unwrap_or_default();
        let (line, content) = line_of(text, span.map_or(section, |s| s.start));
        format!("line {line}: key `{table}.{key}`: {problem} (in `{content}`)")
    };
    let mut g = GuardConfig {
        rate_limit: Some(DEFAULT_RATE),
        allow: ["127.0.0.0/8", "::1"]
            .iter()
            .filter_map(|c| runtime::sip_core::Cidr::parse(c))
            .collect(),
        ..GuardConfig::default()
    };
    let nonzero = |v: &Option<Spanned<u32>>| v.as_ref().map(|v| *v.get_ref()).filter(|v| *v > 0);
    g.max_calls = nonzero(&limits.max_calls);
    g.max_calls_per_second = nonzero(&limits.max_calls_per_second);
    g.burst = g.max_calls_per_second.unwrap_or(1);
    if let Some(burst) = &limits.burst {
        if *burst.get_ref() == 0 {
            return Err(at(
                "limits",
                "burst",
                Some(burst.span()),
                &"must be at least 1",
            ));
        }
        g.burst = *burst.get_ref();
    }
    if let Some(retry) = &limits.retry_after_s {
        if !(1..=86_400).contains(retry.get_ref()) {
            return Err(at(
                "limits",
                "retry_after_s",
                Some(retry.span()),
                &"must be 1 to 86400",
            ));
        }
        g.retry_after = Duration::from_secs(*retry.get_ref());
    }
    if let Some(rate) = &security.rate_limit {
        let r = rate.get_ref();
        if r.window_s == 0 || r.window_s > 3600 {
            return Err(at(
                "security",
                "rate_limit.window_s",
                Some(rate.span()),
                &"must be 1 to 3600",
            ));
        }
        g.rate_limit = (r.requests > 0).then(|| RateLimit {
            requests: r.requests,
            window: Duration::from_secs(r.window_s),
        });
    }
    if let Some(ban) = &security.ban_s {
        if *ban.get_ref() == 0 {
            return Err(at(
                "security",
                "ban_s",
                Some(ban.span()),
                &"must be at least 1",
            ));
        }
        g.ban = Duration::from_secs(*ban.get_ref());
    }
    if let Some(allow) = &security.allow {
        g.allow = allow.iter().map(|c| c.get_ref().0).collect();
    }
    if let Some(max) = &security.max_sources {
        if !(16..=10_000_000).contains(max.get_ref()) {
            return Err(at(
                "security",
                "max_sources",
                Some(max.span()),
                &"must be 16 to 10000000",
            ));
        }
        g.max_sources = *max.get_ref();
    }
    if let Some(drop) = security.drop_scanners {
        g.drop_scanners = drop;
    }
    if let Some(list) = &security.scanner_user_agents {
        for ua in list {
            if ua.get_ref().trim().is_empty() {
                return Err(at(
                    "security",
                    "scanner_user_agents",
                    Some(ua.span()),
                    &"an empty entry would match every request",
                ));
            }
        }
        g.scanner_user_agents = list.iter().map(|s| s.get_ref().clone()).collect();
    } else {
        g.scanner_user_agents = DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect();
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::super::Config;
    use super::*;

    #[test]
    fn defaults_without_the_sections() {
        let config = Config::parse("", "t.toml").unwrap();
        let g = &config.guard_settings;
        assert_eq!((g.max_calls, g.max_calls_per_second), (None, None));
        assert_eq!(g.rate_limit, Some(DEFAULT_RATE));
        assert_eq!(g.ban, Duration::from_secs(300));
        assert!(g.drop_scanners);
        assert!(
            g.scanner_user_agents
                .iter()
                .any(|s| s == "friendly-scanner")
        );
        assert_eq!(g.allow.len(), 2);
    }

    #[test]
    fn the_example_documents_the_defaults() {
        let text = include_str!("../../../../config/tandem.example.toml");
        let example = Config::parse(text, "tandem.example.toml").unwrap();
        let default = Config::parse("", "t.toml").unwrap();
        assert_eq!(example.guard_settings, default.guard_settings);
    }

    #[test]
    fn sections_parse() {
        let config = Config::parse(
            "[limits]\nmax_calls = 5\nmax_calls_per_second = 20\nburst = 40\nretry_after_s = 9\n\
             [security]\nrate_limit = { requests = 30, window_s = 4 }\nban_s = 60\n\
             allow = [\"10.0.0.0/8\"]\nmax_sources = 1000\ndrop_scanners = false\n\
             scanner_user_agents = [\"EvilDialer\"]\n",
            "t.toml",
        )
        .unwrap();
        let g = &config.guard_settings;
        assert_eq!(g.max_calls, Some(5));
        assert_eq!(g.max_calls_per_second, Some(20));
        assert_eq!(g.burst, 40);
        assert_eq!(g.retry_after, Duration::from_secs(9));
        assert_eq!(
            g.rate_limit,
            Some(RateLimit {
                requests: 30,
                window: Duration::from_secs(4)
            })
        );
        assert_eq!(g.ban, Duration::from_secs(60));
        assert_eq!(g.allow[0].to_string(), "10.0.0.0/8");
        assert_eq!(g.max_sources, 1000);
        assert!(!g.drop_scanners);
        assert_eq!(g.scanner_user_agents, ["EvilDialer"]);
        let off = Config::parse("[security]\nrate_limit = { requests = 0 }\n", "t.toml").unwrap();
        assert_eq!(off.guard_settings.rate_limit, None);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        for (text, line, key) in [
            ("[sip]\n[limits]\nburst = 0\n", 3, "limits.burst"),
            ("[limits]\n\nretry_after_s = 0\n", 3, "limits.retry_after_s"),
            (
                "[security]\nrate_limit = { requests = 5, window_s = 0 }\n",
                2,
                "security.rate_limit.window_s",
            ),
            ("[security]\nban_s = 0\n", 2, "security.ban_s"),
            ("[security]\nmax_sources = 1\n", 2, "security.max_sources"),
            (
                "[security]\nscanner_user_agents = [\"a\", \" \"]\n",
                2,
                "security.scanner_user_agents",
            ),
        ] {
            let error = Config::parse(text, "t.toml").unwrap_err();
            assert!(error.message.contains(&format!("line {line}:")), "{error}");
            assert!(error.message.contains(key), "{error}");
        }
        let error =
            Config::parse("[security]\n\nallow = [\"10.0.0.300/8\"]\n", "t.toml").unwrap_err();
        assert!(error.message.contains("line 3"), "{error}");
        let error = Config::parse("[limits]\nmax_cals = 3\n", "t.toml").unwrap_err();
        assert!(
            error.message.contains("line 2") && error.message.contains("max_cals"),
            "{error}"
        );
    }
}
