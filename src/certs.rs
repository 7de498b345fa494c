//! `ringraft certs`: generates a cluster's TLS material into a directory: a CA, one
//! certificate per node (server and client usage, naming `ringraft://cluster/<c>/node/<n>`,
//! valid for the given hosts), and one per client (client usage, naming
//! `ringraft://cluster/<c>/client/<name>/role/<role>`).
//!
//! Files: `ca.crt`, `ca.key`, `node-<id>.crt`, `node-<id>.key`, `client-<name>.crt`,
//! `client-<name>.key`. Every key is created with mode 0600 (owner only), which is what the
//! TLS loader insists on. Existing files are never overwritten without `--force`, so an
//! existing CA cannot be replaced by accident. Generation itself lives in
//! `ringraft_net::tls::certgen`; this module parses the arguments and writes the files.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringraft_net::tls::certgen::{CertAuthority, CertGenError, DEFAULT_VALIDITY_DAYS};
use ringraft_net::tls::identity::valid_client_name;
use ringraft_net::tls::{CertIdentity, Role};

/// Mode of every private key file.
pub const KEY_FILE_MODE: u32 = 0o600;
/// Mode of every certificate file (public).
pub const CERT_FILE_MODE: u32 = 0o644;

/// Arguments of `ringraft certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Cluster id the certificates are for (the nodes' `cluster.cluster_id`).
    #[arg(long, default_value_t = 1)]
    pub cluster_id: u64,
    /// Node ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<u64>,
    /// Clients as name:role, comma-separated; role is read, write or admin
    /// (e.g. admin:admin,writer:write,reader:read).
    #[arg(long, value_delimiter = ',')]
    pub clients: Vec<String>,
    /// Host names and IP addresses every node certificate is valid for, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    pub hosts: Vec<String>,
    /// Validity of every certificate, in days.
    #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// Why `ringraft certs` failed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// An argument that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// Generation failed.
    #[error(transparent)]
    Gen(#[from] CertGenError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Parses `name:role` client specs; names must be valid and distinct.
pub fn parse_clients(specs: &[String]) -> Result<Vec<(String, Role)>, CertsError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, role) = spec
            .split_once(':')
            .ok_or_else(|| CertsError::Usage(format!("client {spec:?}: expected name:role")))?;
        if !valid_client_name(name) {
            return Err(CertsError::Usage(format!(
                "client name {name:?}: 1 to 64 characters of A-Z a-z 0-9 . _ -"
            )));
        }
        let role = Role::parse(role).ok_or_else(|| {
            CertsError::Usage(format!(
                "client {name:?}: role {role:?} is not read, write or admin"
            ))
        })?;
        if !seen.insert(name.to_string()) {
            return Err(CertsError::Usage(format!("client {name:?} given twice")));
        }
        out.push((name.to_string(), role));
    }
    Ok(out)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` with `mode` (the mode is set at creation, so a key is never
/// readable by others even for a moment, and reset when overwriting).
fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), CertsError> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(mode);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Generates everything `args` asks for into `args.out`; returns the files written.
pub fn generate(args: &CertsArgs) -> Result<Vec<PathBuf>, CertsError> {
    if args.cluster_id == 0 {
        return Err(CertsError::Usage("cluster ids start at 1".into()));
    }
    let mut nodes = BTreeSet::new();
    for &n in &args.nodes {
        if n == 0 {
            return Err(CertsError::Usage("node ids start at 1".into()));
        }
        if !nodes.insert(n) {
            return Err(CertsError::Usage(format!("node {n} given twice")));
        }
    }
    let clients = parse_clients(&args.clients)?;
    let files: Vec<PathBuf> = ["ca.crt", "ca.key"]
        .into_iter()
        .map(String::from)
        .chain(
            nodes
                .iter()
                .flat_map(|n| [format!("node-{n}.crt"), format!("node-{n}.key")]),
        )
        .chain(
            clients
                .iter()
                .flat_map(|(c, _)| [format!("client-{c}.crt"), format!("client-{c}.key")]),
        )
        .map(|f| args.out.join(f))
        .collect();
    if !args.force {
        if let Some(existing) = files.iter().find(|p| p.exists()) {
            return Err(CertsError::Usage(format!(
                "{} exists; pass --force to overwrite",
                existing.display()
            )));
        }
    }
    fs::create_dir_all(&args.out).map_err(io_err(&args.out))?;

    let ca = CertAuthority::generate(&format!("ringraft cluster {}", args.cluster_id), args.days)?;
    let mut written = Vec::with_capacity(files.len());
    let mut put = |name: String, contents: &str, mode: u32| -> Result<(), CertsError> {
        let path = args.out.join(name);
        write_file(&path, contents, mode, args.force)?;
        written.push(path);
        Ok(())
    };
    put("ca.crt".into(), &ca.cert_pem(), CERT_FILE_MODE)?;
    put("ca.key".into(), &ca.key_pem(), KEY_FILE_MODE)?;
    for &n in &nodes {
        let c = ca.issue_node(args.cluster_id, n, &args.hosts)?;
        put(format!("node-{n}.crt"), &c.cert_pem, CERT_FILE_MODE)?;
        put(format!("node-{n}.key"), &c.key_pem, KEY_FILE_MODE)?;
    }
    for (name, role) in clients {
        let id = CertIdentity::Client {
            cluster_id: args.cluster_id,
            name: name.clone(),
            role,
        };
        let c = ca.issue(&id, &[])?;
        put(format!("client-{name}.crt"), &c.cert_pem, CERT_FILE_MODE)?;
        put(format!("client-{name}.key"), &c.key_pem, KEY_FILE_MODE)?;
    }
    Ok(written)
}

/// Runs `ringraft certs`.
pub fn main(args: CertsArgs) -> ExitCode {
    match generate(&args) {
        Ok(files) => {
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!(
                "ca.key signs every identity of cluster {}: keep it offline.",
                args.cluster_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringraft certs: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use glommio::{LocalExecutorBuilder, Placement};
    use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
    use ringraft_net::listener::{self, Connection, ConnectionConfig, Handler, ListenerConfig};
    use ringraft_net::message::{LocalIdentity, Message, MessageRef, PeerRole, Ping, Pong};
    use ringraft_net::metrics::NetMetrics;
    use ringraft_net::tls::TlsConfig;
    use ringraft_net::Frame;

    use super::*;

    const CLUSTER: u64 = 5;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            TempDir(
                std::env::temp_dir().join(format!("ringraft-certs-{}-{nanos}", std::process::id())),
            )
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn args(out: &Path) -> CertsArgs {
        CertsArgs {
            out: out.to_path_buf(),
            cluster_id: CLUSTER,
            nodes: vec![1, 2, 3],
            clients: vec![
                "admin:admin".into(),
                "writer:write".into(),
                "reader:read".into(),
            ],
            hosts: vec!["127.0.0.1".into(), "localhost".into()],
            days: 2,
            force: false,
        }
    }

    #[test]
    fn client_specs_are_checked() {
        assert!(parse_clients(&["a:read".into(), "b:admin".into()]).is_ok());
        for bad in ["a", "a:root", ":read", "a b:read"] {
            assert!(parse_clients(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_clients(&["a:read".into(), "a:write".into()]).is_err());
    }

    /// Records the identity of every connection that opens, answers Ping.
    struct Echo(Arc<Mutex<Vec<Option<CertIdentity>>>>);

    impl Handler for Echo {
        fn on_open(&self, conn: &Rc<Connection>) {
            if let Ok(mut v) = self.0.lock() {
                v.push(conn.peer_identity().cloned());
            }
        }

        fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
            if let MessageRef::Ping(p) = frame.message {
                let _ = conn.respond(
                    frame.header.request_id,
                    &Pong {
                        nonce: p.nonce.to_native(),
                        data: vec![],
                    },
                );
            }
        }
    }

    #[test]
    fn generated_certificates_work_end_to_end() {
        let dir = TempDir::new();
        let files = generate(&args(&dir.0)).unwrap();
        assert_eq!(files.len(), 2 + 2 * 3 + 2 * 3);
        for f in &files {
            let mode = fs::metadata(f).unwrap().permissions().mode() & 0o777;
            let is_key = f.extension().is_some_and(|e| e == "key");
            assert_eq!(mode, if is_key { 0o600 } else { 0o644 }, "{}", f.display());
        }
        // A second run refuses to overwrite the CA.
        assert!(matches!(generate(&args(&dir.0)), Err(CertsError::Usage(_))));

        let load = |name: &str| {
            let d = &dir.0;
            TlsConfig::from_pem_files(
                CLUSTER,
                &d.join("ca.crt"),
                Some((
                    &d.join(format!("{name}.crt")),
                    &d.join(format!("{name}.key")),
                )),
                false,
            )
            .unwrap()
        };
        let (node1, node2, reader) = (load("node-1"), load("node-2"), load("client-reader"));
        // A key readable by others is refused at load.
        let key = dir.0.join("node-3.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let r = TlsConfig::from_pem_files(
            CLUSTER,
            &dir.0.join("ca.crt"),
            Some((&dir.0.join("node-3.crt"), &key)),
            false,
        );
        assert!(
            matches!(r, Err(ringraft_net::tls::TlsError::KeyFileMode { .. })),
            "{r:?}"
        );

        // Node 1 serves; node 2 dials it by id; the reader connects with the blocking client.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s, sn) = (stop.clone(), seen.clone());
        let server = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let mut cfg = ListenerConfig::new(LocalIdentity {
                    cluster_id: CLUSTER,
                    role: PeerRole::Node { node_id: 1 },
                });
                cfg.connection.tls = Some(node1);
                let l =
                    listener::bind("127.0.0.1:0".parse().unwrap(), &cfg.connection.socket).unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let shutdown = async {
                    while !s.load(Ordering::Relaxed) {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                };
                let m = Arc::new(NetMetrics::new());
                listener::serve(l, Rc::new(cfg), Rc::new(Echo(sn)), m, shutdown).await;
            })
            .unwrap();
        let addr = rx.recv_timeout(Duration::from_secs(5)).unwrap();

        let dialed = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let mut cfg = ConnectionConfig::new(LocalIdentity {
                    cluster_id: CLUSTER,
                    role: PeerRole::Node { node_id: 2 },
                });
                cfg.tls = Some(node2);
                let h = Rc::new(Echo(Arc::new(Mutex::new(Vec::new()))));
                let conn = listener::dial_node(addr, Some(1), &cfg, h, Arc::new(NetMetrics::new()))
                    .await
                    .map_err(|e| e.to_string())?;
                let id = conn.peer_identity().cloned();
                conn.close();
                Ok::<_, String>(id)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            dialed,
            Ok(Some(CertIdentity::Node {
                cluster_id: CLUSTER,
                node_id: 1
            }))
        );

        let mut cfg = ClientConfig::new(LocalIdentity {
            cluster_id: CLUSTER,
            role: PeerRole::Client { client_id: 77 },
        });
        cfg.tls = Some(reader);
        cfg.expected_node_id = Some(1);
        cfg.response_timeout_ms = 3_000;
        let mut c = BlockingClient::connect(addr, cfg).unwrap();
        let pong = c.call(&Ping {
            nonce: 4,
            data: vec![],
        });
        assert!(matches!(pong, Ok(Message::Pong(Pong { nonce: 4, .. }))));
        drop(c);

        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                Some(CertIdentity::Node {
                    cluster_id: CLUSTER,
                    node_id: 2
                }),
                Some(CertIdentity::Client {
                    cluster_id: CLUSTER,
                    name: "reader".into(),
                    role: Role::Read
                }),
            ]
        );
    }
}
