//! The blocking client in a plain program: put, get (three consistencies), compare-and-swap,
//! scan, delete, and a pipelined batch.
//!
//! Run against the local cluster (`make start-cluster`):
//! `cargo run --release --example client_blocking -- 127.0.0.1:9081,127.0.0.1:9082`
//! (endpoints optional; default: the three nodes of `config/`, or `RINGRAFT_ENDPOINTS`).

use std::process::ExitCode;

use ringraft::client::{Client, ClientConfig, ClientOp, Consistency, Reply};

fn run() -> ringraft::client::Result<()> {
    let mut cfg = ClientConfig::default();
    if let Some(list) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("RINGRAFT_ENDPOINTS").ok())
    {
        cfg.endpoints = list.split(',').map(str::to_string).collect();
    }
    let mut client = Client::connect(cfg)?;
    println!(
        "client {:#x}: {} shard(s), nodes {:?}",
        client.client_id(),
        client.topology().shard_count().unwrap_or(0),
        client.topology().addresses()
    );

    let version = client.put("example:greeting", "hello")?;
    println!("put example:greeting = hello at version {version}");
    for c in [
        Consistency::Linearizable,
        Consistency::Lease,
        Consistency::Eventual,
    ] {
        let v = client.get_with("example:greeting", c)?;
        println!(
            "get ({c:?}) -> {:?}",
            v.map(|v| String::from_utf8_lossy(&v.value).into_owned())
        );
    }

    let r = client.cas("example:greeting", Some(b"hello"), "goodbye")?;
    println!("cas hello -> goodbye: swapped = {}", r.swapped);
    let r = client.cas("example:greeting", Some(b"hello"), "again")?;
    println!(
        "cas hello -> again: swapped = {} (value is no longer hello)",
        r.swapped
    );

    // Pipelined: every put is sent before any answer is awaited.
    let ops: Vec<ClientOp> = (0..100)
        .map(|i| ClientOp::Put {
            key: format!("example:item:{i:03}").into_bytes(),
            value: format!("{i}").into_bytes(),
            session: None,
        })
        .collect();
    let ok = client
        .execute_many(ops)
        .into_iter()
        .filter(|r| matches!(r, Ok(Reply::Written { .. })))
        .count();
    println!("pipelined 100 puts: {ok} ok");

    let (items, more) = client.scan("example:item:", Some(5), Consistency::Linearizable)?;
    println!(
        "scan example:item: (limit 5): {:?}, more = {more}",
        items
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect::<Vec<_>>()
    );

    println!(
        "delete example:greeting: existed = {}",
        client.delete("example:greeting")?
    );
    println!("get after delete -> {:?}", client.get("example:greeting")?);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client_blocking: {e}");
            ExitCode::FAILURE
        }
    }
}
