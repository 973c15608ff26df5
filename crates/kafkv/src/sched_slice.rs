//! A thread's scheduling slice: the threads that answer requests ask Linux
//! for a short one, so that a request wakes them ahead of background work.
//!
//! **Why.** Linux's scheduler (EEVDF, since 6.6) gives every task a slice,
//! 0.7 ms × (1 + log2 CPUs) by default: 1.4 ms on two CPUs. A task that
//! wakes preempts the running one only if its virtual deadline (its slice
//! ahead) comes first, and the running task is otherwise left to finish its
//! slice (`RUN_TO_PARITY`). So on a busy machine a request that wakes a RESP
//! thread can wait a slice or more behind this instance's apply thread, a
//! bulk expiry's sweep, librdkafka's threads or the embedded broker. During
//! a sweep of a million keys through three instances on two cores (`perf
//! sched latency` over 4 s), the RESP threads waited 1.12 ms on average
//! between waking and running (at most 8.9 ms); with the short slice,
//! 0.38 ms (at most 4.4 ms), and the bench's GET p99 fell from 7.4–7.9 ms
//! to 4.8 ms (idle: 0.3 ms). The cores stay busy, so the wait does not go
//! away: this shortens it.
//!
//! **What.** Since Linux 6.12 `sched_setattr` takes a slice for an ordinary
//! (`SCHED_OTHER`) thread, 0.1 to 100 ms, and a waking task whose slice is
//! shorter than the running one's preempts it (`PREEMPT_SHORT`). A slice
//! changes *when* a thread runs, not *how much*: its weight (its nice value)
//! is unchanged, so a busy RESP thread gets no larger share of the CPU and
//! starves nothing; it is preempted sooner too, which is what a thread that
//! answers in microseconds wants. No privilege is needed. Older kernels
//! accept the call and keep their default; other systems have no such call
//! and [`request`] says so.

use std::{io, time::Duration};

/// The slice the RESP threads ask for by default: the kernel's shortest.
pub const SHORTEST: Duration = Duration::from_micros(100);

/// Asks the kernel to give the calling thread a scheduling slice of
/// `slice` (clamped by the kernel to 0.1–100 ms), keeping its policy and
/// nice value. A thread under a policy other than `SCHED_OTHER` or
/// `SCHED_BATCH` (set by an operator, e.g. with `chrt`) is left as it is.
///
/// Call it on the thread itself, before it starts serving.
#[cfg(target_os = "linux")]
pub fn request(slice: Duration) -> io::Result<()> {
    /// `struct sched_attr` of sched_setattr(2), its first version's fields
    /// (`SCHED_ATTR_SIZE_VER0`, 48 bytes), which every kernel with the call
    /// accepts.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // The thread's policy and nice value as they are, so that only the slice
    // changes: the call sets every field (keeping "params" would keep the
    // slice too).
    // SAFETY: `attr` is writable and `size` bytes long; pid 0 is the calling
    // thread; flags must be 0.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0u32,
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    if attr.policy != libc::SCHED_OTHER as u32 && attr.policy != libc::SCHED_BATCH as u32 {
        // A real-time or idle policy an operator chose: its own rules apply.
        return Ok(());
    }
    attr.size = size;
    attr.flags = 0;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a valid `struct sched_attr` of the size it states,
    // alive for the call; pid 0 is the calling thread; flags must be 0.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to give the calling thread a scheduling slice: only Linux
/// has the call.
#[cfg(not(target_os = "linux"))]
pub fn request(_slice: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "a thread's scheduling slice can be set on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The slice the kernel reports for the calling thread, in ns, when it
    /// reports one (Linux 6.6 and later, `se.slice` in its sched file).
    fn reported_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        sched
            .lines()
            .find(|line| line.starts_with("se.slice"))?
            .split(':')
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    /// Whether this kernel takes a slice for SCHED_OTHER (6.12 and later).
    fn kernel_takes_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: getpriority/setpriority on the calling thread.
            let nice_before = unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 3);
                libc::getpriority(libc::PRIO_PROCESS, 0)
            };
            request(SHORTEST).expect("sched_setattr accepts a slice");
            if kernel_takes_slices() {
                assert_eq!(reported_slice(), Some(100_000), "se.slice after the call");
            }
            let nice_after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(nice_after, nice_before, "the nice value is kept");
            request(Duration::from_millis(3)).expect("a longer slice");
            if kernel_takes_slices() {
                assert_eq!(reported_slice(), Some(3_000_000));
            }
        })
        .join()
        .unwrap();
    }
}
