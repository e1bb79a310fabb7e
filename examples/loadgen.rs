//! `loadgen`: a closed-loop HTTP/1.1 load generator for `make bench`, in the manner of `wrk`.
//!
//! `concurrency` connections, each sending its next request as soon as the previous answer
//! is read (keep-alive, no pipelining), for `duration` seconds after `warmup` seconds. Request
//! bodies come round-robin from a file (one per line), so every request can carry another
//! token. Prints one JSON object: requests, errors (transport, non-2xx, or an answer without
//! `--expect`), requests/s and latency percentiles.
//!
//! `--chain refresh_token` is for rotating credentials: each connection owns its own bodies
//! (form bodies carrying `refresh_token=...`) and, after every 2xx answer, replaces the value
//! with the one the answer's JSON names; an answer that does not rotate it is an error.
//! `--chain-out FILE` writes the final bodies, so the next run continues the chains.
//!
//! `--requests N` makes each connection send exactly N requests (no warm-up) and the run end
//! when all have, or at `duration`: with `--chain` and one body per connection, each chain is
//! rotated N times.
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080/introspect --method POST \
//!   --header 'authorization: Basic ...' --header 'content-type: application/x-www-form-urlencoded' \
//!   --bodies tokens.txt --expect '"active":true' --concurrency 32 --duration 10 --warmup 2
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
struct Args {
    host: String,
    port: u16,
    path: String,
    method: String,
    headers: Vec<String>,
    bodies: Vec<String>,
    expect: Option<String>,
    chain: Option<String>,
    chain_out: Option<String>,
    /// Requests per connection, then it stops.
    requests: Option<u64>,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut method, mut headers, mut bodies, mut expect) = (None, "GET".to_owned(), vec![], vec![], None);
    let (mut concurrency, mut duration, mut warmup) = (32, 10.0, 1.0);
    let (mut chain, mut chain_out, mut requests) = (None, None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--method" => method = value()?,
            "--header" => headers.push(value()?),
            "--bodies" => {
                let path = value()?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                bodies = text.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
            }
            "--body" => bodies.push(value()?),
            "--expect" => expect = Some(value()?),
            "--chain" => chain = Some(value()?),
            "--chain-out" => chain_out = Some(value()?),
            "--requests" => requests = Some(value()?.parse().map_err(|e| format!("--requests: {e}"))?),
            "--concurrency" => concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--duration" => duration = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--warmup" => warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let url = url::Url::parse(&url.ok_or("--url is required")?).map_err(|e| e.to_string())?;
    if url.scheme() != "http" {
        return Err("only http:// URLs".into());
    }
    Ok(Args {
        host: url.host_str().ok_or("no host")?.to_owned(),
        port: url.port_or_known_default().unwrap_or(80),
        path: match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        },
        method,
        headers,
        bodies,
        expect,
        chain,
        chain_out,
        requests,
        concurrency: concurrency.max(1),
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
    })
}

/// The request bytes for one body (or a bodiless request).
fn request(args: &Args, body: Option<&str>) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.1\r\nhost: {}:{}\r\n", args.method, args.path, args.host, args.port);
    for h in &args.headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if let Some(body) = body {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or_default());
    head.into_bytes()
}

/// The request bytes for each body (or one bodiless request).
fn requests(args: &Args) -> Vec<Vec<u8>> {
    if args.bodies.is_empty() {
        return vec![request(args, None)];
    }
    args.bodies.iter().map(|b| request(args, Some(b))).collect()
}

/// The value of `field` in a form body.
fn form_value<'a>(body: &'a str, field: &str) -> Option<&'a str> {
    body.split('&').find_map(|pair| pair.strip_prefix(field)?.strip_prefix('='))
}

/// The string value of `field` in a JSON answer (tokens need no unescaping).
fn json_value<'a>(answer: &'a [u8], field: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(answer).ok()?;
    let start = text.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// Replaces the chained value in `body` with the one `answer` names.
fn rotate(body: &str, answer: &[u8], field: &str) -> Result<String, String> {
    let old = form_value(body, field).ok_or_else(|| format!("a body without {field}="))?;
    let new = json_value(answer, field).ok_or_else(|| format!("an answer without {field}"))?;
    if new == old {
        return Err(format!("{field} was not rotated"));
    }
    Ok(body.replacen(&format!("{field}={old}"), &format!("{field}={new}"), 1))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    /// Chain mode: this connection's bodies, as they stand at the end.
    chained: Vec<(usize, String)>,
}

/// Reads one response; returns (status, body).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, Vec<u8>), String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|e| e.to_string())?;
            let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
            let length = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .ok_or("no content-length")?;
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            return Ok((status, body));
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// What one connection sends: shared prebuilt requests, or its own chained bodies.
enum Work {
    Shared { requests: Arc<Vec<Vec<u8>>>, offset: usize },
    Chained { field: String, bodies: Vec<(usize, String)> },
}

async fn connection(args: Arc<Args>, mut work: Work, measuring: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut next = match &work {
        Work::Shared { offset, .. } => *offset,
        Work::Chained { .. } => 0,
    };
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(32 * 1024);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && args.requests.is_none_or(|limit| sent < limit) {
        if stream.is_none() {
            match TcpStream::connect((args.host.as_str(), args.port)).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                    buf.clear();
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let (request, chained) = match &work {
            Work::Shared { requests, .. } => (requests[next % requests.len()].clone(), None),
            Work::Chained { bodies, .. } => {
                let index = next % bodies.len();
                (request(&args, Some(&bodies[index].1)), Some(index))
            }
        };
        next += 1;
        sent += 1;
        let started = Instant::now();
        let mut outcome = match s.write_all(&request).await {
            Ok(()) => read_response(s, &mut buf).await,
            Err(e) => Err(e.to_string()),
        };
        let elapsed = started.elapsed();
        if let (Work::Chained { field, bodies }, Some(index), Ok((200..=299, answer))) = (&mut work, chained, &outcome)
        {
            match rotate(&bodies[index].1, answer, field) {
                Ok(body) => bodies[index].1 = body,
                Err(e) => outcome = Ok((599, e.into_bytes())),
            }
        }
        if !measuring.load(Ordering::Relaxed) {
            if outcome.is_err() {
                stream = None;
            }
            continue;
        }
        match outcome {
            Ok((status, body)) if (200..300).contains(&status) => {
                let expected = args.expect.as_ref().is_none_or(|e| body.windows(e.len()).any(|w| w == e.as_bytes()));
                if expected {
                    tally.latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                } else {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(format!("unexpected answer: {}", String::from_utf8_lossy(&body)));
                }
            }
            Ok((status, body)) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                stream = None;
            }
        }
    }
    if let Work::Chained { bodies, .. } = work {
        tally.chained = bodies;
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse() {
        Ok(args) => Arc::new(args),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.chain.is_some() && args.bodies.len() < args.concurrency {
        eprintln!(
            "loadgen: --chain needs at least one body per connection ({} < {})",
            args.bodies.len(),
            args.concurrency
        );
        return std::process::ExitCode::from(2);
    }
    let requests = Arc::new(requests(&args));
    // With a fixed number of requests every one is measured, from the first.
    let measuring = Arc::new(AtomicBool::new(args.requests.is_some()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let work = match &args.chain {
                // Connection i owns bodies i, i + c, i + 2c, ...: no two connections rotate one chain.
                Some(field) => Work::Chained {
                    field: field.clone(),
                    bodies: args.bodies.iter().cloned().enumerate().skip(i).step_by(args.concurrency).collect(),
                },
                None => Work::Shared { requests: requests.clone(), offset: i * requests.len() / args.concurrency },
            };
            tokio::spawn(connection(args.clone(), work, measuring.clone(), stop.clone()))
        })
        .collect();
    let started = if args.requests.is_some() {
        // A fixed amount of work: measured from the first request until the last connection
        // is done (or the duration runs out).
        let started = Instant::now();
        while !tasks.iter().all(tokio::task::JoinHandle::is_finished) && started.elapsed() < args.duration {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started
    } else {
        tokio::time::sleep(args.warmup).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(args.duration).await;
        started
    };
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let (mut errors, mut first_error, mut chained) = (0, None, Vec::new());
    for task in tasks {
        if let Ok(t) = task.await {
            latencies.extend(t.latencies_us);
            errors += t.errors;
            first_error = first_error.or(t.first_error);
            chained.extend(t.chained);
        }
    }
    if let Some(path) = &args.chain_out {
        chained.sort();
        let text: String = chained.into_iter().map(|(_, body)| body + "\n").collect();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("loadgen: {path}: {e}");
            return std::process::ExitCode::from(1);
        }
    }
    latencies.sort_unstable();
    let report = serde_json::json!({
        "requests": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "rps": latencies.len() as f64 / elapsed,
        "p50_ms": percentile(&latencies, 50.0),
        "p99_ms": percentile(&latencies, 99.0),
        "max_ms": percentile(&latencies, 100.0),
        "concurrency": args.concurrency,
        "seconds": elapsed,
    });
    // The report is the program's output (stdout), not a log line.
    use std::io::Write as _;
    if writeln!(std::io::stdout(), "{report}").is_err() {
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}
