//! CPU time of a process, from `/proc/<pid>/stat`: what the idle and CPU
//! sections measure.

use crate::error::{Error, Result};

/// The process's user + system CPU time so far, in seconds, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The CPU time so far of the process's threads whose name starts with
/// `prefix` (`/proc/<pid>/task/*/comm`), in seconds: librdkafka names its
/// threads `rdk:…`. A thread that ended since is not counted.
pub fn threads_cpu_seconds(pid: u32, prefix: &str) -> Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        // A thread may end between listing and reading: skip it.
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if name.starts_with(prefix) {
            total += stat_cpu_seconds(&task.join("stat").to_string_lossy())?;
        }
    }
    Ok(total)
}

/// User + system CPU time in a `stat` file of procfs, in seconds.
fn stat_cpu_seconds(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields after its closing parenthesis, where field 3 begins.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::Failed(format!("unexpected {path}: {stat}")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> Result<f64> {
        fields
            .get(index - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| Error::Failed(format!("unexpected {path}: {stat}")))
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
    use super::{cpu_seconds, threads_cpu_seconds};

    fn spin_for(duration: std::time::Duration) {
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < duration {
            spin = spin.wrapping_add(1);
        }
        std::hint::black_box(spin);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_the_count_only_grows() {
        let pid = std::process::id();
        let first = cpu_seconds(pid).unwrap();
        spin_for(std::time::Duration::from_millis(200));
        let second = cpu_seconds(pid).unwrap();
        assert!(second > first, "{first} then {second}");
    }

    #[test]
    fn only_the_named_threads_are_counted() {
        let pid = std::process::id();
        let named = |prefix: &str| threads_cpu_seconds(pid, prefix).unwrap();
        let (spinner, idler) = (named("cpu-spinner"), named("cpu-idler"));
        let started = std::sync::Barrier::new(3);
        let finished = std::sync::Barrier::new(3);
        std::thread::scope(|scope| {
            let spawn = |name: &str, work: fn()| {
                let (started, finished) = (&started, &finished);
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn_scoped(scope, move || {
                        started.wait();
                        work();
                        finished.wait();
                        // Still alive when the counts below are read.
                        finished.wait();
                    })
                    .unwrap()
            };
            // Spins until this thread itself has used 0.2 s of CPU, however
            // loaded the machine is.
            spawn("cpu-spinner-1", || {
                while super::stat_cpu_seconds("/proc/thread-self/stat").unwrap() < 0.2 {
                    spin_for(std::time::Duration::from_millis(10));
                }
            });
            spawn("cpu-idler-1", || {
                std::thread::sleep(std::time::Duration::from_millis(300))
            });
            started.wait();
            finished.wait();
            let (spun, idled) = (named("cpu-spinner") - spinner, named("cpu-idler") - idler);
            finished.wait();
            assert!(spun >= 0.15, "the spinning thread used {spun} s");
            assert!(idled < 0.05, "the sleeping thread used {idled} s");
        });
    }
}
