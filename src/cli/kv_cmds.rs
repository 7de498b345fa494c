//! The `txn`, `lease`, `members remove` and `transfer-leader` commands of the `ringraft`
//! binary. `txn` and `lease` run through the client library; `members remove` and
//! `transfer-leader` post to a node's HTTP API (the same client port), whose handler moves
//! leadership and forwards per shard (see [`crate::node::http_ops`]). Owned by the client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::{fail, EXIT_FAILURE, EXIT_NO};
use crate::client::{Client, TxnOpResult};
use crate::node::http::{parse_response, write_request};
use crate::node::http_kv::parse_txn;

/// Largest transaction file read (the node refuses larger commands anyway).
const MAX_TXN_FILE_BYTES: u64 = 64 << 20;
/// Largest HTTP answer read from a node.
const MAX_HTTP_ANSWER_BYTES: usize = 1 << 20;
/// How long an HTTP admin call may take (membership calls wait for leadership to move).
const HTTP_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `lease` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease of TTL seconds; prints its id.
    Grant {
        /// Time to live, seconds.
        ttl: u64,
        /// Put the lease in this key's shard (a lease holds keys of its own shard).
        #[arg(long)]
        key: Option<String>,
    },
    /// Restart lease ID's time to live.
    Keepalive {
        /// Lease id.
        id: u64,
    },
    /// Revoke lease ID, deleting every key attached to it.
    Revoke {
        /// Lease id.
        id: u64,
    },
    /// Every lease: id, TTL, remaining time, keys attached.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn text(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

/// `ringraft txn [FILE]`: the `/txn` JSON from FILE (or stdin, or `-`); prints the result as
/// JSON; exit 1 when the compares did not hold (the failure branch ran).
pub(crate) fn txn(client: &mut Client, file: Option<String>) -> ExitCode {
    let mut raw = Vec::new();
    let read = match file.as_deref() {
        None | Some("-") => std::io::stdin()
            .take(MAX_TXN_FILE_BYTES)
            .read_to_end(&mut raw),
        Some(p) => {
            std::fs::File::open(p).and_then(|f| f.take(MAX_TXN_FILE_BYTES).read_to_end(&mut raw))
        }
    };
    if let Err(e) = read {
        eprintln!("ringraft: txn: cannot read the transaction: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    let (t, _, _) = match parse_txn(&raw) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "ringraft: txn: {e}\nringraft: expected {{\"compare\": [{{\"key\": \"k\", \
                 \"value\": \"v\"}}], \"success\": [{{\"op\": \"put\", \"key\": \"k\", \
                 \"value\": \"w\"}}], \"failure\": [{{\"op\": \"get\", \"key\": \"k\"}}]}}"
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match client.txn(t) {
        Ok(r) => {
            let results: Vec<Value> = r
                .results
                .iter()
                .map(|x| match x {
                    TxnOpResult::Put { version } => json!({ "op": "put", "version": version }),
                    TxnOpResult::Deleted { existed } => {
                        json!({ "op": "delete", "existed": existed })
                    }
                    TxnOpResult::Get(None) => json!({ "op": "get", "found": false }),
                    TxnOpResult::Get(Some(v)) => json!({
                        "op": "get", "found": true, "value": text(&v.value), "version": v.version,
                    }),
                    TxnOpResult::GetOmitted { version } => json!({
                        "op": "get", "found": true, "omitted": true, "version": version,
                    }),
                })
                .collect();
            println!(
                "{}",
                json!({ "succeeded": r.succeeded, "version": r.version, "results": results })
            );
            if r.succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NO)
            }
        }
        Err(e) => fail("txn", &e),
    }
}

/// `ringraft lease …`.
pub(crate) fn lease(client: &mut Client, cmd: LeaseCommand) -> ExitCode {
    match cmd {
        LeaseCommand::Grant { ttl, key } => {
            match client.lease_grant(ttl.saturating_mul(1_000), key.as_deref().map(str::as_bytes)) {
                Ok(id) => {
                    println!("{id}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("lease grant", &e),
            }
        }
        LeaseCommand::Keepalive { id } => match client.lease_keepalive(id) {
            Ok(ttl) => {
                println!("lease {id} kept alive for {} s", ttl / 1_000);
                ExitCode::SUCCESS
            }
            Err(e) => fail("lease keepalive", &e),
        },
        LeaseCommand::Revoke { id } => match client.lease_revoke(id) {
            Ok(keys) => {
                println!("lease {id} revoked; {keys} keys deleted");
                ExitCode::SUCCESS
            }
            Err(e) => fail("lease revoke", &e),
        },
        LeaseCommand::List { json } => match client.lease_list() {
            Ok(l) if json => {
                let v: Vec<Value> = l
                    .iter()
                    .map(|i| {
                        json!({"id": i.id, "ttl_s": i.ttl_ms / 1_000,
                               "remaining_ms": i.remaining_ms, "keys": i.keys})
                    })
                    .collect();
                println!("{}", json!({ "leases": v }));
                ExitCode::SUCCESS
            }
            Ok(l) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{:<20} {:>8} {:>12} {:>6}",
                    "ID", "TTL_S", "REMAINING_MS", "KEYS"
                );
                for i in &l {
                    let _ = writeln!(
                        out,
                        "{:<20} {:>8} {:>12} {:>6}",
                        i.id,
                        i.ttl_ms / 1_000,
                        i.remaining_ms,
                        i.keys
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail("lease list", &e),
        },
    }
}

/// Posts `body` to `path` on the first endpoint that answers; prints the JSON answer. Exit 0
/// on a 200, 2 otherwise (the answer says, per shard, what became of the call).
pub(crate) fn http_post(endpoints: &[String], path: &str, body: Value) -> ExitCode {
    let body = body.to_string().into_bytes();
    let mut last = String::from("no endpoint given");
    for ep in endpoints {
        match post_one(ep, path, &body) {
            Ok((status, answer)) => {
                println!("{}", String::from_utf8_lossy(&answer));
                return if status == 200 {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("ringraft: {path}: the node answered {status}");
                    ExitCode::from(EXIT_FAILURE)
                };
            }
            Err(e) => last = format!("{ep}: {e}"),
        }
    }
    eprintln!(
        "ringraft: {path} failed: no node answered ({last})\nringraft: is the cluster running? \
         Point --endpoints (or RINGRAFT_ENDPOINTS) at its nodes."
    );
    ExitCode::from(EXIT_FAILURE)
}

fn post_one(endpoint: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let addr = crate::client::blocking::resolve(endpoint)?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(HTTP_CALL_TIMEOUT));
    let mut out = Vec::new();
    write_request(&mut out, "POST", path, endpoint, &[], body);
    s.write_all(&out).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the node closed the connection before answering".into());
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(p) = parse_response(&raw, MAX_HTTP_ANSWER_BYTES)? {
            return Ok((p.status, p.body));
        }
    }
}
