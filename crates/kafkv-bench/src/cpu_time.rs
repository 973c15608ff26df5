//! CPU time of a process, from `/proc/<pid>/stat`: what the idle and CPU
//! sections measure.

use crate::error::{Error, Result};

/// The process's user + system CPU time so far, in seconds, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing parenthesis, where field 3 begins.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::Failed(format!("unexpected /proc/{pid}/stat: {stat}")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64> {
        fields
            .get(index - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| Error::Failed(format!("unexpected /proc/{pid}/stat: {stat}")))
    };
    Ok((ticks(14)? + ticks(15)?) / clock_ticks_per_second())
}

/// `getconf CLK_TCK`; Linux's 100 where that cannot be asked.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::cpu_seconds;

    #[test]
    fn this_process_has_used_some_cpu_and_the_count_only_grows() {
        let pid = std::process::id();
        let first = cpu_seconds(pid).unwrap();
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(200) {
            spin = spin.wrapping_add(1);
        }
        std::hint::black_box(spin);
        let second = cpu_seconds(pid).unwrap();
        assert!(second > first, "{first} then {second}");
    }
}
