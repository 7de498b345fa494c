//! The async client on a glommio executor: 1,000 puts from 100 concurrent tasks sharing one
//! client (pipelined on one connection per node), then reads them back.
//!
//! Run against the local cluster (`make start-cluster`):
//! `cargo run --release --example client_async -- 127.0.0.1:9081,127.0.0.1:9082`
//! (endpoints optional; default: the three nodes of `config/`, or `RINGRAFT_ENDPOINTS`).

use std::process::ExitCode;
use std::time::Instant;

use ringraft::client::{AsyncClient, ClientConfig, Consistency};

const TASKS: usize = 100;
const PUTS_PER_TASK: usize = 10;

async fn run(cfg: ClientConfig) -> ringraft::client::Result<()> {
    let client = AsyncClient::connect(cfg).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let c = client.clone();
            glommio::spawn_local(async move {
                for i in 0..PUTS_PER_TASK {
                    c.put(format!("async:{t}:{i}"), format!("{}", t * i))
                        .await?;
                }
                Ok::<(), ringraft::client::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    println!(
        "{} puts from {TASKS} tasks in {:.1} ms ({:.0} puts/s)",
        TASKS * PUTS_PER_TASK,
        elapsed.as_secs_f64() * 1e3,
        (TASKS * PUTS_PER_TASK) as f64 / elapsed.as_secs_f64()
    );
    let v = client.get("async:7:3", Consistency::Linearizable).await?;
    println!(
        "get async:7:3 -> {:?}",
        v.map(|v| String::from_utf8_lossy(&v.value).into_owned())
    );
    client.close();
    Ok(())
}

fn main() -> ExitCode {
    let mut cfg = ClientConfig::default();
    if let Some(list) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("RINGRAFT_ENDPOINTS").ok())
    {
        cfg.endpoints = list.split(',').map(str::to_string).collect();
    }
    let ex = match glommio::LocalExecutorBuilder::default().make() {
        Ok(ex) => ex,
        Err(e) => {
            eprintln!("client_async: cannot start a glommio executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match ex.run(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client_async: {e}");
            ExitCode::FAILURE
        }
    }
}
