//! CPU time of other processes on this machine (the cluster's nodes during a benchmark), read
//! from `/proc/<pid>/stat`: fields 14 and 15 (utime, stime) after the `)` that ends the command
//! name, in clock ticks (`sysconf(_SC_CLK_TCK)`). Owned by the client.

/// User plus system CPU time of `pid` in microseconds.
pub(crate) fn process_cpu_us(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_stat_cpu_ticks(&text)
        .map(|ticks| ticks.saturating_mul(1_000_000) / clock_ticks_per_s())
        .ok_or_else(|| format!("{path}: unexpected format"))
}

/// utime + stime, in ticks, of one `/proc/<pid>/stat` line.
pub(crate) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Summed CPU microseconds of `pids`.
pub(crate) fn total_cpu_us(pids: &[u32]) -> Result<u64, String> {
    pids.iter().map(|p| process_cpu_us(*p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_even_with_odd_names() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(line), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        let me = process_cpu_us(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i ^ (x >> 3));
        }
        assert!(x != 1);
        assert!(process_cpu_us(std::process::id()).unwrap() >= me);
    }
}
