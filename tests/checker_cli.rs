//! `ringraft check` as a program: exit status 0 / 1 / 2 / 3, the explanation, the SVG file and
//! the error naming an unreadable line — run on small temporary files with the built binary.

use std::path::PathBuf;
use std::process::{Command, Output};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ringraft-checker-cli-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check(args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LINEARIZABLE: &str = r#"{"process":1,"type":"invoke","f":"put","key":"a","value":"1","time":10}
{"process":2,"type":"invoke","f":"get","key":"a","time":11}
{"process":2,"type":"ok","f":"get","key":"a","value":"1","time":12}
{"process":1,"type":"ok","f":"put","key":"a","time":13}
{"process":1,"type":"invoke","f":"append","key":"b","value":"x","time":14}
{"process":1,"type":"ok","f":"append","key":"b","time":15}
"#;

const STALE_READ: &str = r#"{"process":1,"type":"invoke","f":"write","value":1}
{"process":1,"type":"ok","f":"write","value":1}
{"process":2,"type":"invoke","f":"read"}
{"process":2,"type":"ok","f":"read","value":null}
"#;

#[test]
fn exit_codes_and_messages() {
    let dir = TempDir::new("codes");

    let (code, out, _) = check(&[dir.file("ok.jsonl", LINEARIZABLE).to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("linearizable"), "{out}");

    let bad = dir.file("bad.jsonl", STALE_READ);
    let svg = dir.0.join("bad.svg");
    let (code, out, _) = check(&[
        bad.to_str().unwrap(),
        "--explain",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT linearizable"), "{out}");
    assert!(
        out.contains("longest linearizable prefix: 1 operation"),
        "{out}"
    );
    assert!(out.contains("read -> nil"), "{out}");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg"), "{picture}");
    assert!(
        picture.contains("#8b0000"),
        "the blocking read is drawn dark red"
    );

    let (code, out, _) = check(&[bad.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "not-linearizable");

    let garbled = dir.file(
        "garbled.jsonl",
        "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n\n{\"process\":1,\"type\":\"ok\",\"f\":\"rread\"}\n",
    );
    let (code, _, err) = check(&[garbled.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("rread"), "{err}");

    let (code, _, err) = check(&[dir.0.join("missing.jsonl").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");

    let (code, _, err) = check(&[
        dir.file("kv.jsonl", LINEARIZABLE).to_str().unwrap(),
        "--model",
        "register",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not in the register model"), "{err}");
}

#[test]
fn spent_budget_answers_unknown() {
    let dir = TempDir::new("budget");
    // 12 overlapping writes, then a read of a value nobody wrote: proving it impossible takes
    // thousands of states; a cap of 30 must answer "unknown" (3), never a verdict.
    let mut text = String::new();
    for p in 0..12 {
        text.push_str(&format!(
            "{{\"process\":{p},\"type\":\"invoke\",\"f\":\"write\",\"value\":{p}}}\n"
        ));
    }
    for p in 0..12 {
        text.push_str(&format!(
            "{{\"process\":{p},\"type\":\"ok\",\"f\":\"write\",\"value\":{p}}}\n"
        ));
    }
    text.push_str("{\"process\":20,\"type\":\"invoke\",\"f\":\"read\"}\n");
    text.push_str("{\"process\":20,\"type\":\"ok\",\"f\":\"read\",\"value\":99}\n");
    let path = dir.file("hard.jsonl", &text);
    let (code, out, _) = check(&[path.to_str().unwrap(), "--max-states", "30"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("unknown"), "{out}");
    let (code, out, _) = check(&[path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
}

#[test]
fn jepsen_formats_are_detected() {
    let dir = TempDir::new("jepsen");
    let etcd = dir.file(
        "etcd.log",
        "INFO  jepsen.util - 0\t:invoke\t:write\t4\n\
         INFO  jepsen.util - 0\t:ok\t:write\t4\n\
         INFO  jepsen.util - 1\t:invoke\t:cas\t[4 2]\n\
         INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n\
         INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
         INFO  jepsen.util - 2\t:ok\t:read\t2\n",
    );
    let (code, out, _) = check(&[etcd.to_str().unwrap()]);
    assert_eq!(code, 0, "a timed-out cas may have applied: {out}");
    let kv = dir.file(
        "kv.txt",
        "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
         {:process 0, :type :ok, :f :get, :key \"1\", :value \"x\"}\n",
    );
    let (code, out, _) = check(&[kv.to_str().unwrap()]);
    assert_eq!(code, 1, "nobody appended x: {out}");
    let (code, _, err) = check(&[kv.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1"), "{err}");
}
