//! How kafkv asks Linux to schedule its threads: a request ahead of
//! background work (a bulk expiry's sweep, librdkafka's threads, the
//! embedded broker) when they share busy cores. This module owns the three
//! measures and the budget that keeps the second from starving anything.
//!
//! 1. **A short slice** for the threads that answer requests (`short_slice`,
//!    no privilege needed). Linux's scheduler (EEVDF, since 6.6) gives every
//!    task a slice, 0.7 ms × (1 + log2 CPUs) by default, and a waking task
//!    preempts the running one only if its virtual deadline (its slice ahead)
//!    comes first. Since 6.12 `sched_setattr` takes a slice for an ordinary
//!    thread (0.1 to 100 ms), and a waking task with a shorter slice than the
//!    running one preempts it (`PREEMPT_SHORT`). A slice changes *when* a
//!    thread runs, not how much. During a sweep of a million keys through
//!    three instances on two cores, the RESP threads' wait from waking to
//!    running (`perf sched latency`) fell from 1.12 ms on average to 0.38 ms,
//!    and GET p99 from 7.4–7.9 ms to 4.8 ms (idle: 0.3 ms). Not enough: a
//!    wake-up that does not preempt waits for the next tick, 4 ms at
//!    `HZ=250`.
//! 2. **Real-time priority for request threads, within a budget**
//!    ([`RequestThread`]), where the process may use it (`CAP_SYS_NICE`, or
//!    `RLIMIT_RTPRIO` ≥ 1, e.g. systemd's `LimitRTPRIO=1`). A `SCHED_FIFO`
//!    thread preempts every ordinary thread the moment it wakes. Unbounded,
//!    that would let a flood of requests starve the apply thread and the
//!    broker, so the writes those requests wait for would stall: a request
//!    thread earns real-time time at half the rate of the wall clock, up to
//!    [`Budget::CAP`], spends it while it runs, and runs as an ordinary thread
//!    (with the short slice) while its budget is spent, checked before each
//!    request (one command runs to its end at the priority it began with).
//!    A thread that answers in microseconds and sleeps in between never runs
//!    out; one kept busy gets half a core at most ahead of everything else,
//!    in bursts of at most 2 × [`Budget::CAP`], the rest as anyone does. And only while the CPUs are contended (`Pressure`): on
//!    idle ones real-time priority only costs.
//! 3. **A priority ceiling for the view's install** ([`Ceiling`]). A GET
//!    takes the view's lock shared; the apply thread takes it exclusively to
//!    install each part of a batch (tens of microseconds). When the apply
//!    thread was preempted while holding it, readers waited until it ran
//!    again: a tick or more. In a sweep of 300,000 keys with measure 2 on,
//!    6 to 8 % of GETs waited over 0.3 ms for the lock, most of them 1 to
//!    7 ms, and that alone set p99. While it holds the lock the apply thread runs
//!    at the request threads' priority (the classic priority-ceiling
//!    protocol), for the few hundred microseconds a batch's install takes.
//!
//! With all three, GET p99 during a million-key sweep was 0.278 ms against
//! 0.365 ms idle, where it was 4.77 ms with the slice alone (`kafkv-bench
//! --only expiry`, README). Measures 2 and 3 are on only after
//! [`enable_realtime`] succeeded (`kafkv serve --request-priority realtime`,
//! the default, falls back to 1 alone with a warning saying what to grant).

use std::{
    cell::Cell,
    io,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// The slice request threads ask for: the kernel's shortest.
const SHORTEST: Duration = Duration::from_micros(100);

/// The real-time priority request threads and the ceiling use: the lowest,
/// below every real-time thread an operator or the kernel runs.
const REALTIME_PRIORITY: u32 = 1;

/// Whether measures 2 and 3 are on in this process.
static REALTIME: AtomicBool = AtomicBool::new(false);

/// Whether request threads and the ceiling run at real-time priority in
/// this process.
fn realtime_enabled() -> bool {
    REALTIME.load(Ordering::Relaxed)
}

/// Turns on real-time priority for request threads and the view's install
/// (measures 2 and 3), after checking on a thread of its own that this
/// process may use it. Call it before the RESP threads start. On an error
/// nothing changes and the error says what to grant.
pub fn enable_realtime() -> io::Result<()> {
    let probe = std::thread::spawn(|| {
        set_policy(Policy::Realtime)?;
        // Back, as the RESP threads and the ceiling will go back.
        set_policy(Policy::Fair {
            policy: libc::SCHED_OTHER as u32,
            slice: None,
        })
    });
    match probe.join() {
        Ok(Ok(())) => {
            REALTIME.store(true, Ordering::Relaxed);
            Ok(())
        }
        Ok(Err(error)) if error.kind() == io::ErrorKind::PermissionDenied => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "this process may not use real-time scheduling (SCHED_FIFO); grant it \
                 CAP_SYS_NICE or an RLIMIT_RTPRIO of 1 or more (systemd: LimitRTPRIO=1), or pass \
                 --request-priority normal",
        )),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::other("the scheduling probe thread panicked")),
    }
}

/// Gives the calling thread the short slice (measure 1), keeping its
/// policy (`SCHED_OTHER` or `SCHED_BATCH`) and nice value, and returns that
/// policy. A thread an operator put under a real-time or idle policy (e.g.
/// with `chrt`; threads inherit it) is left as it is: `None`.
fn short_slice() -> io::Result<Option<u32>> {
    let Some(policy) = fair_policy()? else {
        return Ok(None);
    };
    set_policy(Policy::Fair {
        policy,
        slice: Some(SHORTEST),
    })?;
    Ok(Some(policy))
}

/// The calling thread's policy if it is one this module may change
/// (`SCHED_OTHER` or `SCHED_BATCH`), `None` for an operator's real-time or
/// idle policy.
fn fair_policy() -> io::Result<Option<u32>> {
    let policy = get_attr()?.policy;
    Ok(
        (policy == libc::SCHED_OTHER as u32 || policy == libc::SCHED_BATCH as u32)
            .then_some(policy),
    )
}

/// Real-time time a request thread has left: earned at half the wall
/// clock's rate, up to [`Budget::CAP`], spent while it runs at real-time
/// priority. A pure account (the caller reads the clock), so its rules are
/// tested without touching the scheduler.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Half-nanoseconds left (so that earning at half the clock's rate is
    /// exact in integers); negative once overspent.
    left: i64,
    /// When the account was last brought up to date.
    at: Instant,
    /// Whether the thread has been running (not parked) since `at`.
    running: bool,
    /// Whether the thread has been at real-time priority since `at`.
    realtime: bool,
}

/// What a request thread must do to its priority after an accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Stay,
    ToRealtime,
    ToNormal,
}

impl Budget {
    /// Most real-time time a thread can save up. It earns while it spends,
    /// at half the rate, so a burst from a full budget lasts twice this.
    pub const CAP: Duration = Duration::from_millis(5);

    /// [`Budget::CAP`] in half-nanoseconds.
    fn cap() -> i64 {
        2 * Self::CAP.as_nanos() as i64
    }

    /// A full budget; the thread is running and not yet real-time.
    pub fn new(now: Instant) -> Self {
        Self {
            left: Self::cap(),
            at: now,
            running: true,
            realtime: false,
        }
    }

    /// Brings the account up to `now`: half the time since the last
    /// accounting earned, the time run at real-time priority spent.
    fn account(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos() as i64;
        self.at = now;
        self.left += elapsed;
        if self.running && self.realtime {
            self.left -= 2 * elapsed;
        }
        self.left = self.left.min(Self::cap());
    }

    /// The thread is about to sleep: the priority its next wake-up should
    /// have, real-time if the CPUs are `contended` and anything is left.
    pub fn parking(&mut self, now: Instant, contended: bool) -> Change {
        self.account(now);
        self.running = false;
        self.switch(contended && self.left > 0)
    }

    /// The thread woke up.
    pub fn unparked(&mut self, now: Instant) {
        self.account(now);
        self.running = true;
    }

    /// Between two pieces of work while running: to normal priority once
    /// the budget is spent.
    pub fn checkpoint(&mut self, now: Instant) -> Change {
        self.account(now);
        if self.realtime && self.left <= 0 {
            self.switch(false)
        } else {
            Change::Stay
        }
    }

    fn switch(&mut self, realtime: bool) -> Change {
        match (self.realtime, realtime) {
            (false, true) => {
                self.realtime = true;
                Change::ToRealtime
            }
            (true, false) => {
                self.realtime = false;
                Change::ToNormal
            }
            _ => Change::Stay,
        }
    }

    /// The account failed to change the thread's policy: it stays as it was.
    fn undo(&mut self, change: Change) {
        match change {
            Change::ToRealtime => self.realtime = false,
            Change::ToNormal => self.realtime = true,
            Change::Stay => {}
        }
    }
}

thread_local! {
    /// The calling request thread's budget (`None` on other threads).
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
    /// The ordinary policy it returns to (`SCHED_OTHER` or `SCHED_BATCH`).
    static FAIR_POLICY: Cell<u32> = const { Cell::new(libc::SCHED_OTHER as u32) };
}

/// The hooks a request thread calls (measures 1 and 2): [`RequestThread::start`]
/// on the thread before it serves, [`RequestThread::parking`] and
/// [`RequestThread::unparked`] around its event loop's sleeps (tokio's
/// `on_thread_park` and `on_thread_unpark`), [`RequestThread::checkpoint`]
/// before each request.
pub struct RequestThread;

impl RequestThread {
    /// Gives the calling thread the short slice and, when real-time
    /// scheduling is enabled, a budget and real-time priority.
    pub fn start() {
        let policy = match short_slice() {
            Ok(Some(policy)) => policy,
            // An operator's policy: theirs to keep.
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "could not ask for a short scheduling slice");
                libc::SCHED_OTHER as u32
            }
        };
        FAIR_POLICY.set(policy);
        if realtime_enabled() {
            let now = Instant::now();
            let mut budget = Budget::new(now);
            // As if it had just parked: the priority its first wake-up needs.
            let change = budget.parking(now, Pressure::contended(now));
            budget.unparked(now);
            Self::apply(&mut budget, change);
            BUDGET.set(Some(budget));
        }
    }

    pub fn parking() {
        Self::with(|budget, now| budget.parking(now, Pressure::contended(now)));
    }

    pub fn unparked() {
        Self::with(|budget, now| {
            budget.unparked(now);
            Change::Stay
        });
    }

    pub fn checkpoint() {
        Self::with(|budget, now| {
            let change = budget.checkpoint(now);
            if change == Change::ToNormal {
                metrics::counter!("kafkv_request_thread_budget_spent_total").increment(1);
            }
            change
        });
    }

    fn with(step: impl FnOnce(&mut Budget, Instant) -> Change) {
        if let Some(mut budget) = BUDGET.take() {
            let change = step(&mut budget, Instant::now());
            Self::apply(&mut budget, change);
            BUDGET.set(Some(budget));
        }
    }

    fn apply(budget: &mut Budget, change: Change) {
        let policy = match change {
            Change::Stay => return,
            Change::ToRealtime => Policy::Realtime,
            Change::ToNormal => Policy::Fair {
                policy: FAIR_POLICY.get(),
                slice: Some(SHORTEST),
            },
        };
        match set_policy(policy) {
            Ok(()) => {}
            Err(error) if change == Change::ToNormal => {
                // Left real-time: it stays within the budget only if later
                // tries succeed, so say so loudly.
                tracing::warn!(%error, "a RESP thread could not leave real-time priority");
                budget.undo(change);
            }
            Err(error) => {
                tracing::debug!(%error, "a RESP thread could not take real-time priority");
                budget.undo(change);
            }
        }
    }
}

/// Whether tasks are waiting for a CPU: the share of the last
/// [`Pressure::WINDOW`] in which at least one did (Linux's pressure stall
/// information, `/proc/pressure/cpu`'s `some total`, in µs). Read by request
/// threads as they park and by the apply thread as it raises the ceiling,
/// each at most once a window; the last verdict is shared by the process.
///
/// Real-time priority is kept for contended CPUs because on idle ones it
/// costs: a real-time task wakes on the CPU it last ran on, not beside its
/// waker as an ordinary one does, and waking an idle CPU (in a VM, a halted
/// vCPU) costs tens of microseconds. With three instances on two idle cores,
/// GET p50 rose from 0.05 to 0.13 ms when the request threads were always
/// real-time.
struct Pressure {
    file: Option<std::fs::File>,
    /// When it was last read (or tried).
    read_at: Option<Instant>,
    /// `some total` at that reading, if it succeeded.
    total: Option<u64>,
}

/// The last reading's verdict, for the process.
static CONTENDED: AtomicBool = AtomicBool::new(false);

impl Pressure {
    /// How often it is read, and the window its share covers.
    const WINDOW: Duration = Duration::from_millis(20);
    /// Contended from this share of the window with a task waiting...
    const ENTER: f64 = 0.10;
    /// ...until the share falls below this one.
    const LEAVE: f64 = 0.03;

    /// Whether the CPUs are contended, reading the pressure when the last
    /// reading on this thread is a window old. Without pressure information
    /// (a kernel without `CONFIG_PSI`, or booted with `psi=0`), always.
    fn contended(now: Instant) -> bool {
        #[cfg(test)]
        if let Some(pretended) = tests::PRETEND_CONTENDED.get() {
            return pretended;
        }
        thread_local! {
            static PRESSURE: std::cell::RefCell<Pressure> = std::cell::RefCell::new(Pressure {
                file: std::fs::File::open("/proc/pressure/cpu").ok(),
                read_at: None,
                total: None,
            });
        }
        PRESSURE.with_borrow_mut(|pressure| {
            if pressure.file.is_none() {
                CONTENDED.store(true, Ordering::Relaxed);
                return true;
            }
            let previous = match pressure.read_at {
                Some(at) if now.saturating_duration_since(at) < Self::WINDOW => {
                    return Self::was_contended();
                }
                previous => previous,
            };
            pressure.read_at = Some(now);
            let total = pressure.read();
            let verdict = match (pressure.total, total, previous) {
                (Some(before), Some(total), Some(at)) => Self::verdict(
                    Self::was_contended(),
                    total.saturating_sub(before),
                    now.saturating_duration_since(at),
                ),
                // The first reading: nothing to compare with yet.
                (None, Some(_), _) => Self::was_contended(),
                // A failed read (tried again next window): as without
                // pressure information.
                _ => true,
            };
            pressure.total = total;
            CONTENDED.store(verdict, Ordering::Relaxed);
            verdict
        })
    }

    /// The last reading's verdict in this process.
    fn was_contended() -> bool {
        #[cfg(test)]
        if let Some(pretended) = tests::PRETEND_CONTENDED.get() {
            return pretended;
        }
        CONTENDED.load(Ordering::Relaxed)
    }

    /// Whether `stalled_us` of waiting in `window` means contended, given
    /// the verdict so far (the thresholds have a gap so it does not flap).
    fn verdict(was: bool, stalled_us: u64, window: Duration) -> bool {
        let share = stalled_us as f64 / (window.as_micros().max(1) as f64);
        if was {
            share >= Self::LEAVE
        } else {
            share > Self::ENTER
        }
    }

    /// `some total` now.
    fn read(&mut self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        let mut buffer = [0u8; 256];
        let read = self.file.as_ref()?.read_at(&mut buffer, 0).ok()?;
        parse_some_total(std::str::from_utf8(&buffer[..read]).ok()?)
    }
}

/// `some total=` of a pressure file's text.
fn parse_some_total(text: &str) -> Option<u64> {
    let some = text.lines().find(|line| line.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// Measure 3: while alive, the calling thread runs at the request threads'
/// real-time priority (when enabled and the CPUs are contended), then
/// returns to its ordinary policy with the kernel's default slice. Hold it
/// only around a short, bounded critical section that request threads wait
/// on. A thread under an operator's real-time or idle policy is left as it
/// is.
#[must_use = "the priority drops when the ceiling is dropped"]
pub struct Ceiling {
    /// The ordinary policy to return to, when raised.
    raised_from: Option<u32>,
}

impl Ceiling {
    pub fn raise() -> Self {
        let raised_from = (realtime_enabled() && Pressure::contended(Instant::now()))
            .then(fair_policy)
            .and_then(Result::ok)
            .flatten()
            .filter(|_| set_policy(Policy::Realtime).is_ok());
        Self { raised_from }
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(policy) = self.raised_from
            && let Err(error) = set_policy(Policy::Fair {
                policy,
                slice: None,
            })
        {
            tracing::warn!(%error, "the apply thread could not leave real-time priority");
        }
    }
}

/// A scheduling policy as this module sets it. Both keep the thread's nice
/// value and ask that children not inherit the policy
/// (`SCHED_FLAG_RESET_ON_FORK`): a thread without `CAP_SYS_NICE` (real-time
/// by `RLIMIT_RTPRIO`) may not clear that flag once set, so it is never
/// cleared.
#[derive(Debug, Clone, Copy)]
enum Policy {
    /// `SCHED_FIFO` at [`REALTIME_PRIORITY`].
    Realtime,
    /// `policy` (`SCHED_OTHER` or `SCHED_BATCH`) with `slice` (`None`: the
    /// kernel's default).
    Fair {
        policy: u32,
        slice: Option<Duration>,
    },
}

/// `struct sched_attr` of sched_setattr(2), its first version's fields
/// (`SCHED_ATTR_SIZE_VER0`, 48 bytes), which every kernel with the call
/// accepts.
#[repr(C)]
#[derive(Debug, Default)]
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

#[cfg(target_os = "linux")]
fn get_attr() -> io::Result<SchedAttr> {
    let size = size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
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
    if got == 0 {
        Ok(attr)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the calling thread's policy, keeping its nice value.
#[cfg(target_os = "linux")]
fn set_policy(policy: Policy) -> io::Result<()> {
    // The nice value as it is: the call sets every field.
    let mut attr = get_attr()?;
    attr.size = size_of::<SchedAttr>() as u32;
    attr.flags = libc::SCHED_FLAG_RESET_ON_FORK as u64;
    match policy {
        Policy::Realtime => {
            attr.policy = libc::SCHED_FIFO as u32;
            attr.priority = REALTIME_PRIORITY;
            attr.runtime = 0;
        }
        Policy::Fair { policy, slice } => {
            attr.policy = policy;
            attr.priority = 0;
            // sched_getattr reports no nice value for a real-time thread;
            // the kernel keeps it all the same.
            // SAFETY: getpriority on the calling thread.
            attr.nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            attr.runtime = slice.map_or(0, |slice| {
                u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX)
            });
        }
    }
    // SAFETY: `attr` is a valid `struct sched_attr` of the size it states,
    // alive for the call; pid 0 is the calling thread; flags must be 0.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn get_attr() -> io::Result<SchedAttr> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn set_policy(_policy: Policy) -> io::Result<()> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "kafkv sets its threads' scheduling on Linux only",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    thread_local! {
        /// What [`Pressure`] answers on this test thread instead of reading
        /// the machine's pressure.
        pub(super) static PRETEND_CONTENDED: Cell<Option<bool>> = const { Cell::new(None) };
    }

    #[test]
    fn only_contended_cpus_get_realtime_request_threads() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        assert_eq!(budget.parking(start, false), Change::Stay);
        assert!(!budget.realtime);
        budget.unparked(start + MS);
        assert_eq!(budget.parking(start + 2 * MS, true), Change::ToRealtime);
        budget.unparked(start + 3 * MS);
        assert_eq!(budget.parking(start + 4 * MS, false), Change::ToNormal);
    }

    #[test]
    fn contention_is_entered_above_a_tenth_and_left_below_three_hundredths() {
        let window = Duration::from_millis(20);
        assert!(!Pressure::verdict(false, 1_000, window), "5 % stalled");
        assert!(Pressure::verdict(false, 2_500, window), "12.5 % stalled");
        assert!(
            Pressure::verdict(true, 1_000, window),
            "5 %: still contended"
        );
        assert!(!Pressure::verdict(true, 400, window), "2 %: no longer");
    }

    #[test]
    fn the_pressure_files_some_total_is_read() {
        let text = "some avg10=4.12 avg60=9.68 avg300=7.25 total=4875300182\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_some_total(text), Some(4_875_300_182));
        assert_eq!(parse_some_total("full avg10=0.00 total=7\n"), None);
        if let Ok(text) = std::fs::read_to_string("/proc/pressure/cpu") {
            assert!(parse_some_total(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn a_thread_that_sleeps_between_short_requests_stays_realtime() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        assert_eq!(budget.switch(true), Change::ToRealtime);
        let mut now = start;
        // 0.2 ms of work, 0.8 ms asleep, for a second.
        for _ in 0..1000 {
            budget.unparked(now);
            now += MS / 5;
            assert_eq!(budget.checkpoint(now), Change::Stay);
            assert_eq!(budget.parking(now, true), Change::Stay);
            now += MS * 4 / 5;
        }
        assert!(budget.realtime);
    }

    #[test]
    fn a_busy_thread_runs_realtime_for_its_budget_then_normal() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        budget.switch(true);
        // Busy without a break, a checkpoint every 0.1 ms: real-time for
        // CAP / (1 - 1/2) = 10 ms, then normal.
        let mut now = start;
        let mut realtime_for = None;
        for step in 1..=200 {
            now += MS / 10;
            if budget.checkpoint(now) == Change::ToNormal {
                realtime_for = Some(step * MS / 10);
                break;
            }
        }
        assert_eq!(realtime_for, Some(10 * MS));
        // Normal while it stays busy, whatever the time.
        for _ in 0..1000 {
            now += MS;
            assert_eq!(budget.checkpoint(now), Change::Stay);
        }
        assert!(!budget.realtime);
        // Its next sleep earns the budget back: real-time for the next wake.
        assert_eq!(budget.parking(now, true), Change::ToRealtime);
    }

    #[test]
    fn a_budget_spent_in_odd_nanoseconds_lasts_exactly_twice_its_cap() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        budget.switch(true);
        let step = Duration::from_nanos(7);
        let mut now = start;
        while budget.checkpoint(now) != Change::ToNormal {
            now += step;
        }
        let lasted = now - start;
        assert!(
            lasted >= 2 * Budget::CAP && lasted < 2 * Budget::CAP + step,
            "{lasted:?}"
        );
    }

    #[test]
    fn a_thread_busy_most_of_the_time_gets_half_the_time_realtime_at_most() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        budget.switch(true);
        let mut now = start;
        let mut realtime = Duration::ZERO;
        // 0.9 ms of work, 0.1 ms asleep, for ten seconds.
        for _ in 0..10_000 {
            budget.unparked(now);
            for _ in 0..9 {
                let was = budget.realtime;
                now += MS / 10;
                if was {
                    realtime += MS / 10;
                }
                budget.checkpoint(now);
            }
            budget.parking(now, true);
            now += MS / 10;
        }
        let share = realtime.as_secs_f64() / now.duration_since(start).as_secs_f64();
        assert!(
            (0.45..=0.55).contains(&share),
            "real-time for {share:.3} of the time"
        );
    }

    /// The calling thread's policy and slice as the kernel reports them.
    #[cfg(target_os = "linux")]
    fn policy_and_slice() -> (u32, u64) {
        let attr = get_attr().expect("sched_getattr");
        (attr.policy, attr.runtime)
    }

    /// Whether this kernel takes a slice for SCHED_OTHER (6.12 and later).
    #[cfg(target_os = "linux")]
    fn kernel_takes_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        (major, minor) >= (6, 12)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_gets_the_short_slice_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: getpriority/setpriority on the calling thread.
            let nice_before = unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 3);
                libc::getpriority(libc::PRIO_PROCESS, 0)
            };
            short_slice().expect("sched_setattr accepts a slice");
            if kernel_takes_slices() {
                assert_eq!(policy_and_slice(), (libc::SCHED_OTHER as u32, 100_000));
            }
            let nice_after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(nice_after, nice_before, "the nice value is kept");
        })
        .join()
        .unwrap();
    }

    /// Real-time scheduling where this process may use it (CI runs as
    /// root), and otherwise the error that says what to grant.
    #[cfg(target_os = "linux")]
    #[test]
    fn request_threads_and_the_ceiling_run_realtime_once_enabled() {
        match enable_realtime() {
            Ok(()) => {}
            Err(error) => {
                assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
                assert!(error.to_string().contains("LimitRTPRIO"), "{error}");
                return;
            }
        }
        std::thread::spawn(|| {
            PRETEND_CONTENDED.set(Some(true));
            // Before the budget's own clock starts, so that no more than
            // its 2 × CAP can have passed when it runs out.
            let started = Instant::now();
            RequestThread::start();
            assert_eq!(policy_and_slice().0, libc::SCHED_FIFO as u32);
            // A flood: normal (with the short slice) once the budget is
            // spent, 2 × CAP in.
            while policy_and_slice().0 == libc::SCHED_FIFO as u32 {
                assert!(started.elapsed() < Budget::CAP * 20, "still real-time");
                RequestThread::checkpoint();
            }
            assert!(
                started.elapsed() >= Budget::CAP * 2,
                "{:?}",
                started.elapsed()
            );
            let (policy, slice) = policy_and_slice();
            assert_eq!(policy, libc::SCHED_OTHER as u32);
            if kernel_takes_slices() {
                assert_eq!(slice, 100_000, "the short slice");
            }
            // Still set: without CAP_SYS_NICE (real-time by RLIMIT_RTPRIO)
            // clearing it is refused, and the thread would stay real-time.
            let flags = get_attr().unwrap().flags;
            assert_ne!(flags & libc::SCHED_FLAG_RESET_ON_FORK as u64, 0);
            // Run normal a while: that earns budget back, and the next
            // sleep is real-time again.
            let normal = Instant::now();
            while normal.elapsed() < Budget::CAP {
                RequestThread::checkpoint();
            }
            assert_eq!(policy_and_slice().0, libc::SCHED_OTHER as u32);
            RequestThread::parking();
            assert_eq!(policy_and_slice().0, libc::SCHED_FIFO as u32);
        })
        .join()
        .unwrap();
        std::thread::spawn(|| {
            PRETEND_CONTENDED.set(Some(true));
            {
                let _ceiling = Ceiling::raise();
                assert_eq!(policy_and_slice().0, libc::SCHED_FIFO as u32);
            }
            assert_eq!(policy_and_slice().0, libc::SCHED_OTHER as u32);
            // On CPUs found idle the ceiling is not raised.
            PRETEND_CONTENDED.set(Some(false));
            {
                let _ceiling = Ceiling::raise();
                assert_eq!(policy_and_slice().0, libc::SCHED_OTHER as u32);
            }
            // An operator's policy is theirs: SCHED_BATCH comes back as it
            // was, and a request thread under SCHED_IDLE stays there.
            PRETEND_CONTENDED.set(Some(true));
            set_policy(Policy::Fair {
                policy: libc::SCHED_BATCH as u32,
                slice: None,
            })
            .unwrap();
            {
                let _ceiling = Ceiling::raise();
                assert_eq!(policy_and_slice().0, libc::SCHED_FIFO as u32);
            }
            assert_eq!(policy_and_slice().0, libc::SCHED_BATCH as u32);
            set_policy(Policy::Fair {
                policy: libc::SCHED_IDLE as u32,
                slice: None,
            })
            .unwrap();
            RequestThread::start();
            RequestThread::parking();
            let _ceiling = Ceiling::raise();
            assert_eq!(policy_and_slice().0, libc::SCHED_IDLE as u32);
        })
        .join()
        .unwrap();
        // Other tests of this binary apply batches too: no ceilings for them.
        REALTIME.store(false, Ordering::Relaxed);
    }
}
