//! The `ringraft` binary.
fn main() {
    println!("ringraft {}", env!("CARGO_PKG_VERSION"));
}
