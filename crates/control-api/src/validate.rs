//! Checks of request fields that serde cannot make: identifiers, custom context limits,
//! callback URIs, tones. A limit broken is a 400 naming the field; something that
//! cannot be done (a URI that is not SIP) a 422 naming it.

use crate::error::{ApiResult, Problem};
use crate::model::{CustomContext, Identifier};
use crate::server::ApiConfig;
use calls::SignalingHeader;

/// The longest `operationContext`, in bytes.
pub const MAX_OPERATION_CONTEXT: usize = 1024;
/// The longest `operationCallbackUri`, in bytes.
pub const MAX_CALLBACK_URI: usize = 2048;
/// The most DTMF tones in one `sendDtmf`.
pub const MAX_TONES: usize = 32;

/// Where a call goes: a SIP URI, or a number through a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dial {
    /// The SIP URI, or the bare number when `trunk` is set.
    pub(crate) target: String,
    pub(crate) trunk: Option<String>,
}

/// The identifier's single value.
fn one_of<'a>(id: &'a Identifier, field: &str) -> ApiResult<Either<'a>> {
    match (&id.sip_uri, &id.phone_number) {
        (Some(uri), None) => Ok(Either::Sip(uri)),
        (None, Some(number)) => Ok(Either::Phone(number)),
        _ => Err(Problem::unprocessable(
            Some(field),
            format!("`{field}` needs exactly one of `sipUri` and `phoneNumber`"),
        )),
    }
}

enum Either<'a> {
    Sip(&'a str),
    Phone(&'a str),
}

fn sip_uri(uri: &str, field: &str) -> ApiResult<String> {
    let uri = uri.trim();
    match sip_message::Uri::parse(uri.as_bytes()) {
        Ok(parsed) if parsed.as_sip().is_some() => Ok(uri.to_owned()),
        Ok(_) => Err(Problem::unprocessable(
            Some(field),
            format!("`{uri}` is not a sip: or sips: URI"),
        )),
        Err(error) => Err(Problem::unprocessable(
            Some(field),
            format!("`{uri}` is not a valid SIP URI: {}", error.reason_phrase()),
        )),
    }
}

fn phone_number(number: &str, field: &str) -> ApiResult<String> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::unprocessable(
            Some(field),
            format!("`{number}` is not a phone number (digits, an optional leading +, at most 20)"),
        ));
    }
    Ok(number.to_owned())
}

/// Where to place a call to `id`: a SIP URI as it is, a phone number through the
/// default trunk.
pub(crate) fn dial(id: &Identifier, field: &str, config: &ApiConfig) -> ApiResult<Dial> {
    match one_of(id, field)? {
        Either::Sip(uri) => Ok(Dial {
            target: sip_uri(uri, &format!("{field}.sipUri"))?,
            trunk: None,
        }),
        Either::Phone(number) => {
            let field = format!("{field}.phoneNumber");
            let number = phone_number(number, &field)?;
            match &config.default_trunk {
                Some(trunk) => Ok(Dial {
                    target: number,
                    trunk: Some(trunk.clone()),
                }),
                None => Err(Problem::unprocessable(
                    Some(&field),
                    "phone numbers need a default trunk, and none is configured",
                )),
            }
        }
    }
}

/// A URI naming `id` (a Refer-To, a Contact): the SIP URI, or `tel:` for a number
/// (RFC 3966).
pub(crate) fn uri_of(id: &Identifier, field: &str) -> ApiResult<String> {
    match one_of(id, field)? {
        Either::Sip(uri) => sip_uri(uri, &format!("{field}.sipUri")),
        Either::Phone(number) => {
            let number = phone_number(number, &format!("{field}.phoneNumber"))?;
            Ok(format!("tel:{number}"))
        }
    }
}

/// Checks an identifier used to name a participant (its shape only).
pub(crate) fn identifier(id: &Identifier, field: &str) -> ApiResult<()> {
    uri_of(id, field).map(drop)
}

/// The custom context as SIP headers, within the configured limits.
pub(crate) fn custom_context(
    context: Option<&CustomContext>,
    field: &str,
    config: &ApiConfig,
) -> ApiResult<Vec<SignalingHeader>> {
    let Some(context) = context else {
        return Ok(Vec::new());
    };
    if context.sip_headers.len() > config.max_custom_headers {
        return Err(Problem::invalid_field(
            format!("{field}.sipHeaders"),
            format!(
                "at most {} custom headers, not {}",
                config.max_custom_headers,
                context.sip_headers.len()
            ),
        ));
    }
    let mut headers = Vec::with_capacity(context.sip_headers.len() + 1);
    for (name, value) in &context.sip_headers {
        let at = format!("{field}.sipHeaders.{name}");
        let x = name
            .get(..2)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("x-"));
        let token = name.len() > 2
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
        if !x || !token {
            return Err(Problem::invalid_field(
                at,
                format!(
                    "header `{name}`: only X- headers (token names) may be set; User-to-User goes in userToUser"
                ),
            ));
        }
        check_value(value, &at, name, config.max_header_value)?;
        headers.push(SignalingHeader::new(name.clone(), value.clone()));
    }
    if let Some(uui) = &context.user_to_user {
        let at = format!("{field}.userToUser");
        check_value(uui, &at, "User-to-User", config.max_uui_bytes)?;
        headers.push(SignalingHeader::new("User-to-User", uui.clone()));
    }
    Ok(headers)
}

fn check_value(value: &str, at: &str, name: &str, limit: usize) -> ApiResult<()> {
    if value.len() > limit {
        return Err(Problem::invalid_field(
            at,
            format!(
                "header `{name}`: the value is {} bytes, more than {limit}",
                value.len()
            ),
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Problem::invalid_field(
            at,
            format!("header `{name}`: the value contains CR, LF or NUL"),
        ));
    }
    Ok(())
}

/// `operationContext` within its limit.
pub(crate) fn operation_context(context: Option<&String>) -> ApiResult<()> {
    match context {
        Some(c) if c.len() > MAX_OPERATION_CONTEXT => Err(Problem::invalid_field(
            "operationContext",
            format!("at most {MAX_OPERATION_CONTEXT} bytes"),
        )),
        _ => Ok(()),
    }
}

/// `operationCallbackUri`: an absolute http URL (the hub has no TLS client: an https
/// receiver goes behind a local TLS proxy, as the daemon's `callback_uri` does).
pub(crate) fn callback_uri(uri: Option<&String>) -> ApiResult<()> {
    let Some(uri) = uri else {
        return Ok(());
    };
    const FIELD: &str = "operationCallbackUri";
    if uri.len() > MAX_CALLBACK_URI {
        return Err(Problem::invalid_field(
            FIELD,
            format!("at most {MAX_CALLBACK_URI} bytes"),
        ));
    }
    if uri.starts_with("https://") {
        return Err(Problem::unprocessable(
            Some(FIELD),
            "https callback URIs are not supported (no TLS client is built in): use an http:// \
             URL, a local TLS proxy in front of a remote receiver",
        ));
    }
    let rest = uri.strip_prefix("http://");
    let host = rest.and_then(|r| r.split(['/', '?', '#']).next());
    let printable = uri.bytes().all(|b| b.is_ascii_graphic());
    match host {
        Some(host) if !host.is_empty() && printable => Ok(()),
        _ => Err(Problem::unprocessable(
            Some(FIELD),
            format!("`{uri}` is not an absolute http URL"),
        )),
    }
}

/// Both operation fields.
pub(crate) fn operation(context: Option<&String>, callback: Option<&String>) -> ApiResult<()> {
    operation_context(context)?;
    callback_uri(callback)
}

/// DTMF tones: `0-9`, `*`, `#`, `A-D`.
pub(crate) fn tones(tones: &str) -> ApiResult<()> {
    if tones.is_empty() || tones.chars().count() > MAX_TONES {
        return Err(Problem::unprocessable(
            Some("tones"),
            format!("1 to {MAX_TONES} tones"),
        ));
    }
    if let Some(bad) = tones
        .chars()
        .find(|c| !(c.is_ascii_digit() || "*#ABCDabcd".contains(*c)))
    {
        return Err(Problem::unprocessable(
            Some("tones"),
            format!("`{bad}` is not a DTMF tone (0-9, *, #, A-D)"),
        ));
    }
    Ok(())
}

/// Seconds within `1..=max`.
pub(crate) fn seconds(
    value: Option<u32>,
    field: &str,
    max: u32,
) -> ApiResult<Option<std::time::Duration>> {
    match value {
        None => Ok(None),
        Some(s) if (1..=max).contains(&s) => Ok(Some(std::time::Duration::from_secs(u64::from(s)))),
        Some(s) => Err(Problem::unprocessable(
            Some(field),
            format!("{s} is not within 1-{max} seconds"),
        )),
    }
}

/// The file to play: under the media directory when one is configured.
pub(crate) fn media_file(file: &str, config: &ApiConfig) -> ApiResult<std::path::PathBuf> {
    let path = std::path::Path::new(file);
    match &config.media_dir {
        None => Ok(path.to_owned()),
        Some(dir) => {
            let inside = !file.is_empty()
                && path.is_relative()
                && path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if inside {
                Ok(dir.join(path))
            } else {
                Err(Problem::unprocessable(
                    Some("file"),
                    "the file must be a relative path inside the media directory (no `..`)",
                ))
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn config() -> ApiConfig {
        ApiConfig::default()
    }

    fn context(headers: &[(&str, &str)], uui: Option<&str>) -> CustomContext {
        CustomContext {
            sip_headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            user_to_user: uui.map(str::to_owned),
        }
    }

    #[test]
    fn custom_context_limits_name_the_header() {
        let c = config();
        let ok = custom_context(
            Some(&context(&[("X-Ticket", "42")], Some("abc"))),
            "customContext",
            &c,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let field = |ctx: CustomContext| {
            let p = custom_context(Some(&ctx), "customContext", &c).unwrap_err();
            assert_eq!(p.status, 400);
            p.field.unwrap()
        };
        assert_eq!(
            field(context(&[("Via", "x")], None)),
            "customContext.sipHeaders.Via"
        );
        assert_eq!(
            field(context(&[("X-", "x")], None)),
            "customContext.sipHeaders.X-"
        );
        assert_eq!(
            field(context(&[("X-A", "a\r\nVia: evil")], None)),
            "customContext.sipHeaders.X-A"
        );
        let long = "v".repeat(c.max_header_value + 1);
        assert_eq!(
            field(context(&[("X-Long", &long)], None)),
            "customContext.sipHeaders.X-Long"
        );
        let uui = "u".repeat(c.max_uui_bytes + 1);
        assert_eq!(field(context(&[], Some(&uui))), "customContext.userToUser");
        let names: Vec<String> = (0..=c.max_custom_headers)
            .map(|i| format!("X-H{i}"))
            .collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert_eq!(field(context(&many, None)), "customContext.sipHeaders");
    }

    #[test]
    fn identifiers() {
        let c = config();
        let sip = Identifier {
            sip_uri: Some("sip:bob@127.0.0.1:5070".into()),
            phone_number: None,
        };
        assert_eq!(
            dial(&sip, "targets[0]", &c).unwrap().target,
            "sip:bob@127.0.0.1:5070"
        );
        let bad = Identifier {
            sip_uri: Some("http://x".into()),
            phone_number: None,
        };
        let p = dial(&bad, "targets[0]", &c).unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (422, Some("targets[0].sipUri"))
        );
        let phone = Identifier {
            sip_uri: None,
            phone_number: Some("+4930123".into()),
        };
        let p = dial(&phone, "targets[0]", &c).unwrap_err();
        assert_eq!(p.status, 422, "no trunk");
        let mut with_trunk = config();
        with_trunk.default_trunk = Some("carrier".into());
        let d = dial(&phone, "targets[0]", &with_trunk).unwrap();
        assert_eq!(
            (d.target.as_str(), d.trunk.as_deref()),
            ("+4930123", Some("carrier"))
        );
        assert_eq!(uri_of(&phone, "t").unwrap(), "tel:+4930123");
        let both = Identifier {
            sip_uri: Some("sip:a@1.2.3.4".into()),
            phone_number: Some("1".into()),
        };
        assert_eq!(dial(&both, "t", &c).unwrap_err().status, 422);
        assert_eq!(
            dial(&Identifier::default(), "t", &c).unwrap_err().status,
            422
        );
    }

    #[test]
    fn callbacks_tones_and_files() {
        assert!(callback_uri(Some(&"https://example.com/hook".to_owned())).is_err());
        assert!(callback_uri(Some(&"ftp://example.com".to_owned())).is_err());
        assert!(callback_uri(Some(&"http://".to_owned())).is_err());
        assert!(callback_uri(Some(&"http://a b".to_owned())).is_err());
        assert!(tones("0123456789*#ABCD").is_ok());
        assert!(tones("").is_err());
        assert!(tones("12x").is_err());
        let mut c = config();
        assert!(media_file("/tmp/a.wav", &c).is_ok());
        c.media_dir = Some("/srv/media".into());
        assert_eq!(
            media_file("prompts/a.wav", &c).unwrap(),
            std::path::PathBuf::from("/srv/media/prompts/a.wav")
        );
        assert!(media_file("../etc/passwd", &c).is_err());
        assert!(media_file("/etc/passwd", &c).is_err());
    }
}
