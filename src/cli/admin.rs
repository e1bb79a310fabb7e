//! `tether admin ...`: the admin API from a terminal. Reads what the API answers and prints a
//! table (or the JSON itself with `-o json`); errors say what the API said
//! (`403: the admin token lacks grants:revoke`).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin API's base URL (admin.bind), e.g. http://tether-admin.auth:9091.
    #[arg(long, env = "TETHER_ADMIN_URL", default_value = "http://127.0.0.1:9091")]
    pub url: String,
    /// An admin token (admin.tokens.<id>); prefer the environment to the command line.
    #[arg(long, env = "TETHER_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Grants: who holds which delegation.
    Grants {
        #[command(subcommand)]
        command: GrantsCommand,
    },
    /// Users: their connections (upstream accounts) and grants.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Connections: a user's upstream sign-in at a provider, shared by their grants there.
    Connections {
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// The audit trail.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
}

#[derive(Debug, Args, Default)]
pub struct Filter {
    /// `provider:subject`.
    #[arg(long, allow_hyphen_values = true)]
    pub user: Option<String>,
    /// Dynamic client ids are random and may start with `-`.
    #[arg(long, allow_hyphen_values = true)]
    pub client_id: Option<String>,
    /// The MCP server's id.
    #[arg(long)]
    pub resource: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    /// The upstream login (`provider:login`, or the login with --provider).
    #[arg(long)]
    pub upstream_account: Option<String>,
    /// active, needs_reauth, expired or revoked.
    #[arg(long)]
    pub status: Option<String>,
}

impl Filter {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("user", &self.user),
            ("client_id", &self.client_id),
            ("resource", &self.resource),
            ("provider", &self.provider),
            ("upstream_account", &self.upstream_account),
            ("status", &self.status),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    fn json(&self) -> Value {
        Value::Object(self.pairs().into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect())
    }
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List grants, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many (pages are followed).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One grant in full.
    Show { id: String },
    /// End one grant, or every grant a filter matches.
    Revoke {
        /// The grant; without it, the filter says which.
        id: Option<String>,
        #[command(flatten)]
        filter: Filter,
        /// Every grant (needed when no filter is given).
        #[arg(long)]
        all: bool,
        /// Only say which grants would end.
        #[arg(long)]
        dry_run: bool,
        /// Leave the grants at the provider alone.
        #[arg(long)]
        no_upstream: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Ends a connection (its id from `users show`): every grant on it, then upstream.
    Revoke {
        id: String,
        /// Leave the upstream authorization alone.
        #[arg(long)]
        no_upstream: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// A user (`provider:subject`), their upstream accounts and grants.
    Show { user: String },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The newest events, oldest of them first; with --follow, then new ones as they come.
    Tail {
        /// Event types, comma-separated (grant.revoked,token.reuse_detected).
        #[arg(long = "type")]
        types: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        grant_id: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        follow: bool,
    },
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// The answer's JSON, or the error as people read it.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut request = self.http.request(method, &url).bearer_auth(&self.token).query(query);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach the admin API at {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| format!("{status}: the answer could not be read: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            let description = value["error_description"].as_str().map_or_else(|| text.trim().to_owned(), str::to_owned);
            return Err(format!("{status}: {description}"));
        }
        Ok(value)
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let api = Api { base: args.url.clone(), token: args.token.clone(), http };
    match command(&api, &args).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(message) => {
            eprintln!("tether admin: {message}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn command(api: &Api, args: &AdminArgs) -> Result<(), String> {
    use reqwest::Method;
    let json = args.output == Output::Json;
    match &args.command {
        AdminCommand::Grants { command: GrantsCommand::List { filter, limit } } => {
            let mut grants = Vec::new();
            let mut token: Option<String> = None;
            while grants.len() < *limit {
                let mut query = filter.pairs();
                query.push(("page_size", (*limit - grants.len()).min(500).to_string()));
                query.extend(token.take().map(|t| ("page_token", t)));
                let page = api.call(Method::GET, "/admin/v1/grants", &query, None).await?;
                grants.extend(page["grants"].as_array().cloned().unwrap_or_default());
                match page["next_page_token"].as_str() {
                    Some(next) => token = Some(next.to_owned()),
                    None => break,
                }
            }
            grants.truncate(*limit);
            print(json, &Value::Array(grants.clone()), || grants_table(&grants));
        }
        AdminCommand::Grants { command: GrantsCommand::Show { id } } => {
            let grant = api.call(Method::GET, &format!("/admin/v1/grants/{}", segment(id)), &[], None).await?;
            print(json, &grant, || grants_table(std::slice::from_ref(&grant)));
        }
        AdminCommand::Grants { command: GrantsCommand::Revoke { id, filter, all, dry_run, no_upstream } } => {
            let report = match id {
                Some(id) => {
                    let query = [("upstream", (!no_upstream).to_string())];
                    api.call(Method::DELETE, &format!("/admin/v1/grants/{}", segment(id)), &query, None).await?
                }
                None => {
                    let body =
                        json!({"filter": filter.json(), "all": all, "dry_run": dry_run, "upstream": !no_upstream});
                    api.call(Method::POST, "/admin/v1/grants:revoke", &[], Some(body)).await?
                }
            };
            print(json, &report, || revoke_table(&report));
        }
        AdminCommand::Connections { command: ConnectionsCommand::Revoke { id, no_upstream } } => {
            let query = [("upstream", (!no_upstream).to_string())];
            let report =
                api.call(Method::DELETE, &format!("/admin/v1/connections/{}", segment(id)), &query, None).await?;
            print(json, &report, || revoke_table(&report));
        }
        AdminCommand::Users { command: UsersCommand::Show { user } } => {
            let view = api.call(Method::GET, &format!("/admin/v1/users/{}", segment(user)), &[], None).await?;
            print(json, &view, || {
                let mut out = format!("user {}", view["id"].as_str().unwrap_or_default());
                for field in ["name", "email"] {
                    if let Some(v) = view[field].as_str() {
                        out.push_str(&format!("  {field}: {v}"));
                    }
                }
                out.push('\n');
                for c in view["connections"].as_array().into_iter().flatten() {
                    out.push_str(&format!(
                        "connection {} at {} as {} ({}): {} with {} active grant(s)\n",
                        c["id"].as_str().unwrap_or_default(),
                        c["provider"].as_str().unwrap_or_default(),
                        c["upstream_account"].as_str().or(c["subject"].as_str()).unwrap_or("account unknown"),
                        c["subject"].as_str().unwrap_or_default(),
                        c["status"].as_str().unwrap_or("active"),
                        c["active_grants"]
                    ));
                }
                out + &grants_table(view["grants"].as_array().map_or(&[][..], Vec::as_slice))
            });
        }
        AdminCommand::Events { command: EventsCommand::Tail { types, user, grant_id, limit, follow } } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            query.extend(types.clone().map(|t| ("type", t)));
            query.extend(user.clone().map(|u| ("user", u)));
            query.extend(grant_id.clone().map(|g| ("grant_id", g)));
            let mut first = query.clone();
            first.push(("page_size", (*limit).clamp(1, 500).to_string()));
            let page = api.call(Method::GET, "/admin/v1/events", &first, None).await?;
            let mut events: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
            events.reverse();
            let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
            show_events(json, &events, &mut seen);
            if !*follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let since = events.last().and_then(|e| e["time"].as_str()).map_or(0, seconds_of);
                let mut next = query.clone();
                next.push(("since", since.to_string()));
                next.push(("page_size", "500".to_owned()));
                let page = api.call(Method::GET, "/admin/v1/events", &next, None).await?;
                let mut fresh: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
                fresh.reverse();
                show_events(json, &fresh, &mut seen);
                if !fresh.is_empty() {
                    events = fresh;
                }
            }
        }
    }
    Ok(())
}

/// A path segment: ids and user ids go into the URL escaped.
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

/// Unix seconds of an RFC 3339 UTC time as events carry it (`2026-12-04T10:00:00.000Z`).
fn seconds_of(time: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| time.get(range).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hour * 3600 + minute * 60 + second
}

#[allow(clippy::print_stdout)] // the command's output
fn print(json: bool, value: &Value, table: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        print!("{}", table());
    }
}

#[allow(clippy::print_stdout)] // the command's output
fn show_events(json: bool, events: &[Value], seen: &mut std::collections::HashSet<String>) {
    for event in events {
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(id) {
            continue;
        }
        if json {
            println!("{event}");
            continue;
        }
        let data = &event["data"];
        let actor = match data["actor"]["id"].as_str() {
            Some(id) => format!("{}:{id}", data["actor"]["type"].as_str().unwrap_or_default()),
            None => data["actor"]["type"].as_str().unwrap_or_default().to_owned(),
        };
        println!(
            "{}  {:<32} {:<9} {:<24} {}{}",
            event["time"].as_str().unwrap_or_default(),
            event["type"].as_str().unwrap_or_default().trim_start_matches("dev.tether."),
            data["outcome"].as_str().unwrap_or_default(),
            actor,
            data["grant_id"].as_str().map(|g| format!("grant {g} ")).unwrap_or_default(),
            data["reason"].as_str().map(|r| format!("({r})")).unwrap_or_default(),
        );
    }
}

/// Grants as aligned columns.
fn grants_table(grants: &[Value]) -> String {
    let rows: Vec<[String; 7]> = grants
        .iter()
        .map(|g| {
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            let time = |v: &Value| {
                v.as_i64().map_or_else(|| "-".to_owned(), |t| crate::audit::rfc3339(t * 1000)[..16].to_owned())
            };
            let user = g["user"]["upstream_account"].as_str().map_or_else(|| text(&g["user"]["id"]), str::to_owned);
            let client = g["client"]["name"].as_str().map_or_else(|| text(&g["client"]["client_id"]), str::to_owned);
            let registration = text(&g["client"]["registration"]);
            [
                text(&g["id"]),
                text(&g["status"]),
                format!("{}@{user}", text(&g["provider"])),
                format!("{client} ({registration})"),
                text(&g["resource"]["id"]),
                time(&g["created_at"]),
                time(&g["last_used_at"]),
            ]
        })
        .collect();
    table(&["GRANT", "STATUS", "ACCOUNT", "CLIENT", "MCP SERVER", "CREATED", "LAST USED"], &rows)
}

fn revoke_table(report: &Value) -> String {
    if report.get("matched").is_some() {
        let verb = if report["dry_run"] == true { "would end" } else { "ended" };
        let ids: Vec<&str> = report["grants"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let upstream = report["upstream"].as_str().map(|u| format!("; upstream: {u}")).unwrap_or_default();
        format!("{verb} {} grant(s){upstream}\n{}\n", report["matched"], ids.join("\n"))
    } else {
        let ids: Vec<&str> = report["revoked"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        format!("revoked: {}; upstream: {}\n", ids.join(", "), report["upstream"]["result"].as_str().unwrap_or("-"))
    }
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_read_back_to_their_seconds() {
        for at in [0_i64, 951_782_400, 1_796_342_400, 1_796_387_045] {
            assert_eq!(seconds_of(&crate::audit::rfc3339(at * 1000)), at);
        }
    }

    #[test]
    fn ids_that_start_with_a_hyphen_are_values() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "tether",
            "admin",
            "--token",
            "t",
            "grants",
            "list",
            "--client-id",
            "-MzYx",
            "--user",
            "-dev:1",
        ]);
        let text = format!("{cli:?}");
        assert!(cli.is_ok(), "{text}");
        assert!(text.contains("\"-MzYx\"") && text.contains("\"-dev:1\""), "{text}");
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = [["a".to_owned(), "long value".to_owned()], ["bbb".to_owned(), "x".to_owned()]];
        assert_eq!(table(&["ONE", "TWO"], &rows), "ONE  TWO\na    long value\nbbb  x\n");
    }
}
