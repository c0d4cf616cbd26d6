//! The operator's client of the control API: `tandem calls list`, `tandem call create`,
//! `tandem call hangup`. It talks HTTP to a running daemon (`--api URL` or
//! `TANDEM_API_URL`, default `http://127.0.0.1:8088`) with the bearer token from
//! `--token` or `TANDEM_API_TOKEN`.

use std::process::ExitCode;

pub const USAGE: &str = "\
       tandem calls list                                   list the calls (JSON)
       tandem call create --application NAME --to TARGET [--caller-id ID] [--context TEXT]
       tandem call hangup ID [--for-everyone]
         (each takes --api URL (TANDEM_API_URL, default http://127.0.0.1:8088)
          and --token TOKEN (TANDEM_API_TOKEN))";

/// One request to the API, from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub api: String,
    pub token: Option<String>,
    pub method: &'static str,
    pub path: String,
    pub body: Option<serde_json::Value>,
}

/// Reads `calls list` / `call create ...` / `call hangup ID` (the words after
/// `tandem`), with `env` for the defaults.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Request, String> {
    let mut api = env("TANDEM_API_URL").unwrap_or_else(|| "http://127.0.0.1:8088".to_owned());
    let mut token = env("TANDEM_API_TOKEN").filter(|t| !t.is_empty());
    let mut words = Vec::new();
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--api" => api = iter.next().ok_or("--api needs a URL")?.clone(),
            "--token" => token = Some(iter.next().ok_or("--token needs a value")?.clone()),
            "--for-everyone" => options.push((arg.clone(), None)),
            flag if flag.starts_with("--") => {
                let value = iter.next().ok_or(format!("{flag} needs a value"))?;
                options.push((flag.to_owned(), Some(value.clone())));
            }
            word => words.push(word.to_owned()),
        }
    }
    let option = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    };
    let known = |allowed: &[&str]| {
        options
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
            .map_or(Ok(()), |(n, _)| Err(format!("unknown option {n}")))
    };
    let api = api.trim_end_matches('/').to_owned();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (method, path, body) = match words.as_slice() {
        ["calls", "list"] | ["calls"] => {
            known(&[])?;
            ("GET", "/v1/calls".to_owned(), None)
        }
        ["call", "create"] => {
            known(&["--application", "--to", "--caller-id", "--context"])?;
            let application = option("--application").ok_or("call create needs --application")?;
            let to = option("--to").ok_or("call create needs --to")?;
            let target = identifier(&to);
            let mut body = serde_json::Map::new();
            body.insert("application".into(), application.into());
            body.insert("targets".into(), serde_json::Value::Array(vec![target]));
            if let Some(caller) = option("--caller-id") {
                body.insert("callerId".into(), identifier(&caller));
            }
            if let Some(context) = option("--context") {
                body.insert("operationContext".into(), context.into());
            }
            ("POST", "/v1/calls".to_owned(), Some(body.into()))
        }
        ["call", "hangup", id] => {
            known(&["--for-everyone"])?;
            if !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!("`{id}` is not a call connection id"));
            }
            let everyone = options.iter().any(|(n, _)| n == "--for-everyone");
            (
                "POST",
                format!("/v1/calls/{id}:hangup"),
                Some(serde_json::json!({ "forEveryone": everyone })),
            )
        }
        _ => return Err("unknown command".to_owned()),
    };
    Ok(Request {
        api,
        token,
        method,
        path,
        body,
    })
}

/// Runs the command: prints the JSON answer, or the problem's detail and exits 1.
pub fn run(args: &[String]) -> ExitCode {
    let request = match parse(args, |name| std::env::var(name).ok()) {
        Ok(request) => request,
        Err(problem) => {
            eprintln!("tandem: {problem}\nusage: {}", USAGE.trim_start());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(send(&request)) {
        Ok((status, text)) if (200..300).contains(&status) => {
            println!("{}", pretty(&text));
            ExitCode::SUCCESS
        }
        Ok((status, text)) => {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("detail")
                        .or_else(|| v.get("title"))
                        .and_then(|d| d.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or(text);
            eprintln!("tandem: {status}: {detail}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tandem: cannot reach the API at {}: {e}", request.api);
            ExitCode::FAILURE
        }
    }
}

async fn send(request: &Request) -> Result<(u16, String), reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let url = format!("{}{}", request.api, request.path);
    let mut builder = match request.method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    };
    if let Some(token) = &request.token {
        builder = builder.bearer_auth(token);
    }
    if let Some(body) = &request.body {
        builder = builder.json(body);
    }
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, text))
}

fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// An API `Identifier`: a SIP URI as `sipUri`, anything else as `phoneNumber`.
fn identifier(text: &str) -> serde_json::Value {
    if text.starts_with("sip:") || text.starts_with("sips:") {
        serde_json::json!({ "sipUri": text })
    } else {
        serde_json::json!({ "phoneNumber": text })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_become_requests() {
        let none = |_: &str| None;
        let list = parse(&args("calls list"), none).unwrap();
        assert_eq!((list.method, list.path.as_str()), ("GET", "/v1/calls"));
        assert_eq!(list.api, "http://127.0.0.1:8088");
        let create = parse(
            &args("call create --application sales --to +15551234567 --caller-id +15550000000 --api http://10.0.0.1:9/"),
            none,
        )
        .unwrap();
        assert_eq!(create.api, "http://10.0.0.1:9");
        let body = create.body.unwrap();
        assert_eq!(body["targets"][0]["phoneNumber"], "+15551234567");
        assert_eq!(body["callerId"]["phoneNumber"], "+15550000000");
        let sip = parse(&args("call create --application a --to sip:bob@h"), none).unwrap();
        assert_eq!(sip.body.unwrap()["targets"][0]["sipUri"], "sip:bob@h");
        let hangup = parse(&args("call hangup c-42 --for-everyone"), none).unwrap();
        assert_eq!(hangup.path, "/v1/calls/c-42:hangup");
        assert_eq!(hangup.body.unwrap()["forEveryone"], true);
        // The environment gives the defaults; flags win.
        let env = |name: &str| match name {
            "TANDEM_API_URL" => Some("http://api:1".to_owned()),
            "TANDEM_API_TOKEN" => Some("t0k3n".to_owned()),
            _ => None,
        };
        let listed = parse(&args("calls list"), env).unwrap();
        assert_eq!(
            (listed.api.as_str(), listed.token.as_deref()),
            ("http://api:1", Some("t0k3n"))
        );
        let flagged = parse(&args("calls list --token other"), env).unwrap();
        assert_eq!(flagged.token.as_deref(), Some("other"));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let none = |_: &str| None;
        assert!(
            parse(&args("call create --to sip:x@y"), none)
                .unwrap_err()
                .contains("--application")
        );
        assert!(
            parse(&args("call hangup a/../b"), none)
                .unwrap_err()
                .contains("not a call")
        );
        assert!(
            parse(&args("calls list --bogus 1"), none)
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(
            parse(&args("call frobnicate"), none)
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(
            parse(&args("calls list --api"), none)
                .unwrap_err()
                .contains("--api")
        );
    }
}
