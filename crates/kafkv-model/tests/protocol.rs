//! The model-checking runs: the protocol of docs/rmw.md explored exhaustively
//! within bounds (every property holds, every interesting situation is
//! reached), and each assumption or rule dropped alone (the checker finds a
//! counterexample, printed to stderr so it shows in every test run).
//!
//! Each run uses one checker thread; the test harness runs tests side by
//! side.

use std::collections::{BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafkv_model::spec::{Batch, ClientOp, Cond, OpKind, Write};
use kafkv_model::{AnchorFirst, Config, Lag, Retention, RmwModel, State, Step, names};
use stateright::Path;
use stateright::{Checker, HasDiscoveries, Model};

/// Every `always` property.
const ALWAYS: [&str; 4] = [
    names::STATE,
    names::LINEARIZABLE,
    names::REPLIES,
    names::SETTLE,
];

/// Writes a whole block to stderr at once, past the harness's capture.
fn show(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Explores `cfg` completely; asserts that no `always` property has a
/// counterexample and that each of `witnesses` is reached.
fn holds(label: &str, cfg: Config, witnesses: &[&'static str]) {
    let start = Instant::now();
    let model = RmwModel::new(cfg);
    let checker = model.clone().checker().spawn_bfs().join();
    assert!(checker.is_done(), "{label}: exploration did not finish");
    show(&format!(
        "{label}: {} states ({} distinct), depth {}, {:.1?}\n",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        start.elapsed()
    ));
    for name in ALWAYS {
        if let Some(path) = checker.discovery(name) {
            panic!("{label}: \"{name}\" fails:\n{}", model.explain(&path));
        }
    }
    for name in witnesses {
        assert!(
            checker.discovery(name).is_some(),
            "{label}: never reached \"{name}\""
        );
    }
}

/// Explores `cfg` breadth-first until `property` has a counterexample
/// (so it is a shortest one), prints it, and returns its rendering.
fn fails(label: &str, cfg: Config, property: &'static str) -> String {
    let start = Instant::now();
    let model = RmwModel::new(cfg);
    let checker = model
        .clone()
        .checker()
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    let Some(path) = checker.discovery(property) else {
        panic!(
            "{label}: no counterexample to \"{property}\" in {} states",
            checker.unique_state_count()
        );
    };
    let text = model.explain(&path);
    show(&format!(
        "\n== {label}: counterexample to \"{property}\" ({} states, {:.1?}):\n{text}",
        checker.unique_state_count(),
        start.elapsed()
    ));
    text
}

/// Witnesses every configuration with a crash and a tombstone must reach.
const WITNESSES: [&str; 8] = [
    names::FRESH_AFTER_GAP,
    names::WRITER_GAP,
    names::REAPPLIED,
    names::STALE_IGNORED,
    names::BASE_REMOVED,
    names::TOMBSTONE_REMOVED,
    names::REPLY_WITHHELD,
    names::SETTLED_AFTER_CRASH,
];

#[test]
fn protocol_one_key_three_ops() {
    let mut cfg = Config::protocol(1, 3);
    cfg.repairs = 1;
    cfg.crashes = 0;
    holds("1 key, 3 ops, 1 repair", cfg, &WITNESSES[..7]);
}

#[test]
fn protocol_two_keys_two_ops() {
    holds(
        "2 keys, 2 ops, 2 repairs, 1 crash",
        Config::protocol(2, 2),
        &WITNESSES,
    );
}

#[test]
fn protocol_fresh_instance_may_start_any_time() {
    let mut cfg = Config::protocol(1, 2);
    cfg.repairs = 1;
    cfg.fresh_early = true;
    holds(
        "1 key, 2 ops, 1 repair, 1 crash, fresh from the start",
        cfg,
        &WITNESSES,
    );
}

// Multi-key batches (docs/rmw.md, "Multi-key batches"), on two keys, with
// the lag as a margin and the cleanable point outside anchor windows
// (`Assumptions::BATCHES`), and the protocol's rules for batches: repairs
// for every key a batch writes, anchor first, and no settling by a repair
// restating an offset before a batch. Each is dropped below.

/// Every kind of batch — MSETNX k0 k1 (keyed by k0), "k1 := 2 if k0 is 1"
/// (keyed by k1, decided by k0), RENAME k0 k1 (keyed by k1, copies k0 and
/// deletes it) — next to plain PUT and DEL. Two client operations are
/// enough for a batch record to be superseded in its own key while another
/// key rests on it, and for a repair of one key to re-apply it.
fn batches_two_ops() -> Config {
    Config::with_batches(2, vec![OpKind::Put(1), OpKind::Del], Config::batch_menu())
}

/// A batch decided by a key whose base a reader lost: a PUT and a CAS of
/// k0, then "k1 := 1 if k0 is 2". A reader that skipped the PUT evaluates
/// the CAS on nothing and the batch on that, and a later repair of k0
/// cannot fix what the batch did (or did not do) to k1: only k1's own
/// repair can. Three operations, so one repair and no crash.
fn batch_decided_by_a_lost_base() -> Config {
    let menu = vec![OpKind::Put(1), OpKind::Cas { expect: 1, new: 2 }];
    let mut cfg = Config::with_batches(3, menu, vec![Batch::cross_cas(2, 1)]);
    cfg.repairs = 1;
    cfg.crashes = 0;
    cfg
}

const BATCH_WITNESSES: [&str; 2] = [names::BATCH_REAPPLIED, names::BATCH_SUPERSEDED];

#[test]
fn protocol_batches_two_keys_two_ops() {
    let witnesses: Vec<&str> = WITNESSES.iter().chain(&BATCH_WITNESSES).copied().collect();
    holds(
        "batches: 2 keys, 2 ops (PUT, DEL, 3 batches), 2 repairs, 1 crash",
        batches_two_ops(),
        &witnesses,
    );
}

#[test]
fn protocol_batch_decided_by_a_key_whose_base_is_lost() {
    holds(
        "batches: 2 keys, 3 ops (PUT, CAS, cross-key CAS), 1 repair",
        batch_decided_by_a_lost_base(),
        &[
            names::FRESH_AFTER_GAP,
            names::WRITER_GAP,
            names::REAPPLIED,
            names::BASE_REMOVED,
            names::REPLY_WITHHELD,
        ],
    );
}

#[test]
fn a_batch_must_be_repaired_for_every_key_it_writes() {
    // Repaired (and so covered by the lag) for its record key only, the
    // batch goes when that key's repair supersedes it, and the other key's
    // write goes with it.
    let mut cfg = batches_two_ops();
    cfg.rules.repair_every_written_key = false;
    fails(
        "a batch repaired for its record key only",
        cfg,
        names::STATE,
    );
}

#[test]
fn lag_up_to_the_superseding_record_is_not_enough_for_batches() {
    // The lag's first half only (docs/rmw.md, assumption 1 (i)): every
    // hazard below the cleanable point is covered. A batch just after it,
    // decided on a state only a later repair of another key corrects, may
    // still be unrepaired; the reader's target does not wait for it.
    let mut cfg = batch_decided_by_a_lost_base();
    cfg.assumptions.lag = Lag::Covering;
    fails(
        "batches, lag up to the superseding record",
        cfg,
        names::STATE,
    );
}

#[test]
fn a_batch_record_keys_repair_must_come_first() {
    // Repairs in any order: k1's repair tombstone (after a failed MSETNX
    // keyed by k0) lands before k0's. Kafka removes it by k1's records
    // alone once it is below the cleanable point, while the batch stays
    // until a newer k0 record is below it too: with the cleanable point
    // between the two repairs, a reader applies the batch's write to k1
    // again, and nothing of k1 follows to undo it.
    let mut cfg = batches_two_ops();
    cfg.rules.anchor_repair_first = AnchorFirst::Off;
    fails("batches, repairs in any order", cfg, names::STATE);
}

#[test]
fn a_plain_delete_in_an_anchor_window_brings_a_written_key_back() {
    // Anchor first orders the protocol's own repairs, not clients: a DEL of
    // k1 between an MSETNX (keyed by k0) and k0's repair is removed once
    // its retention ends, and with the cleanable point stopped between the
    // DEL and k0's repair, the batch stays and a reader sets k1 again.
    let mut cfg = batches_two_ops();
    cfg.assumptions.cleanable_point_outside_anchor_windows = false;
    fails(
        "batches, cleanable point inside an anchor window",
        cfg,
        names::STATE,
    );
}

#[test]
fn a_repair_before_a_batch_must_not_settle_its_key() {
    // A lagging instance's repairs restate an offset before the second
    // MSETNX and match the state after it. Judged by the state alone they
    // settle both keys, so nobody repairs after the batch, and the lag lets
    // the cleanable point pass it; a reader that lost the first MSETNX
    // evaluates the second on absent keys (it holds there) and re-applies
    // that verdict on top of each repair.
    let mut cfg = batches_two_ops();
    cfg.rules.repair_covers_batches = false;
    fails(
        "batches, a repair before a batch settles",
        cfg,
        names::STATE,
    );
}

/// The tail of both replayed batch counterexamples: w1 repairs k1 (a
/// tombstone) before k0, compaction stops between the two and later drops
/// the tombstone, w0 catches up, and a fresh instance bootstraps.
fn k1_repaired_first_then_a_compacted_bootstrap(w0: u8, w1: u8, fresh: u8) -> [Step; 10] {
    [
        Step::Repair { by: w1, key: 1 },
        Step::Repair { by: w1, key: 0 },
        Step::Read(w1),
        Step::Compact {
            upto: 4,
            tombstones: false,
        },
        Step::Read(w0),
        Step::Read(w0),
        Step::Compact {
            upto: 4,
            tombstones: true,
        },
        Step::Start,
        Step::Read(fresh),
        Step::Read(fresh),
    ]
}

/// Replays `steps` from `init`, prints the trace, and checks that it ends in
/// a state the state property rejects.
fn replays_a_counterexample(model: &RmwModel, init: State, steps: &[Step], what: &str) {
    let path = Path::from_actions(model, init, steps).expect("every step enabled");
    show(&format!(
        "\n== {what}: replayed counterexample:\n{}",
        model.explain(&path)
    ));
    assert!(!(model.property(names::STATE).condition)(
        model,
        path.last_state()
    ));
}

/// Anchor first as `hazards.rs` first had it: a key waits for the anchor's
/// repair only while the batch is its *newest* hazardous record. A failed
/// CAS of k1 after a failed MSETNX (keyed by k0) releases k1, whose repair
/// tombstone lands before k0's; compaction stopped between them removes it
/// and leaves the batch, and a reader that lost k0's PUT sets k1 to 1. The
/// search for this needs three operations and two repairs (about 30 M
/// states, minutes), so the test replays the counterexample it found, step
/// by step, and checks that holding k1 until it is settled
/// ([`AnchorFirst::SinceSettled`]) disables the misordered repair.
#[test]
fn an_operation_after_a_batch_must_not_release_its_key() {
    let mut cfg = Config::with_batches(
        3,
        vec![OpKind::Put(1), OpKind::Cas { expect: 1, new: 2 }],
        vec![Batch::msetnx(1)],
    );
    cfg.crashes = 0;
    cfg.symmetry = false;
    cfg.rules.anchor_repair_first = AnchorFirst::NewestHazard;
    let (w0, w1, fresh) = (0, 1, 2);
    let op = |key, kind| Step::Issue {
        by: w0,
        op: ClientOp { key, kind },
    };
    let steps = [
        op(0, OpKind::Put(1)),
        Step::Read(w1),
        op(0, OpKind::Batch(Batch::msetnx(1))),
        Step::Read(w1),
        op(1, OpKind::Cas { expect: 1, new: 2 }),
        Step::Read(w1),
    ]
    .into_iter()
    .chain(k1_repaired_first_then_a_compacted_bootstrap(w0, w1, fresh))
    .collect::<Vec<_>>();
    let model = RmwModel::new(cfg.clone());
    let init = model.init_states().remove(0);
    replays_a_counterexample(
        &model,
        init.clone(),
        &steps,
        "anchor first by the newest hazard only",
    );

    // Holding k1 until it is settled: w1 must repair k0 first.
    cfg.rules.anchor_repair_first = AnchorFirst::SinceSettled;
    let model = RmwModel::new(cfg);
    assert!(Path::from_actions(&model, init.clone(), &steps[..6]).is_some());
    assert!(Path::from_actions(&model, init.clone(), &steps[..7]).is_none());
    let k0_first = [&steps[..6], &[steps[7], steps[6]]].concat();
    assert!(Path::from_actions(&model, init, &k0_first).is_some());
}

/// A limit of anchor first (docs/rmw.md, "Limits"): two batches anchored on
/// each other — MSETNX k0 k1 (keyed by k0) and MSETNX k1 k0 (keyed by k1),
/// both failing after a PUT of k0 — hold both keys, so neither waits and
/// k1's repair tombstone lands before k0's repair. Compaction stopped
/// between the two removes the tombstone and the second batch (superseded
/// by it) and keeps the first; a reader that lost the PUT evaluates the
/// first MSETNX on absent keys and sets k1. Found with three operations
/// and two repairs (15 M states); replayed here.
#[test]
fn batches_anchored_on_each_other_are_not_ordered() {
    let reversed = Batch {
        when: [Cond::Absent, Cond::Absent],
        steps: [Some((1, Write::Set(2))), Some((0, Write::Set(2)))],
    };
    let mut cfg = Config::with_batches(3, vec![OpKind::Put(1)], vec![Batch::msetnx(1), reversed]);
    cfg.crashes = 0;
    cfg.symmetry = false;
    let (w0, w1, fresh) = (0, 1, 2);
    let op = |key, kind| Step::Issue {
        by: w0,
        op: ClientOp { key, kind },
    };
    let steps = [
        op(0, OpKind::Put(1)),
        Step::Read(w1),
        op(0, OpKind::Batch(Batch::msetnx(1))),
        Step::Read(w1),
        op(1, OpKind::Batch(reversed)),
        Step::Read(w1),
    ]
    .into_iter()
    .chain(k1_repaired_first_then_a_compacted_bootstrap(w0, w1, fresh))
    .collect::<Vec<_>>();
    let model = RmwModel::new(cfg);
    let init = model.init_states().remove(0);
    replays_a_counterexample(&model, init, &steps, "batches anchored on each other");
}

// Larger bounds, too slow for every test run: about a minute each in
// release (`cargo test -p kafkv-model --release -- --ignored`), 1-2 GB.

#[test]
#[ignore]
fn deep_one_key_three_ops_with_a_crash() {
    let mut cfg = Config::protocol(1, 3);
    cfg.repairs = 1;
    holds("deep: 1 key, 3 ops, 1 repair, 1 crash", cfg, &WITNESSES);
}

#[test]
#[ignore]
fn deep_two_keys_fresh_from_the_start() {
    let mut cfg = Config::protocol(2, 2);
    cfg.fresh_early = true;
    holds(
        "deep: 2 keys, 2 ops, 2 repairs, 1 crash, fresh from the start",
        cfg,
        &WITNESSES,
    );
}

#[test]
#[ignore]
fn deep_batches_with_every_single_key_operation() {
    let cfg = Config::with_batches(2, Config::full_menu(), Config::batch_menu());
    let witnesses: Vec<&str> = WITNESSES.iter().chain(&BATCH_WITNESSES).copied().collect();
    holds(
        "deep: batches, 2 keys, 2 ops (full menu, 3 batches), 2 repairs, 1 crash",
        cfg,
        &witnesses,
    );
}

#[test]
#[ignore]
fn deep_batches_three_ops() {
    let menu = vec![
        OpKind::Put(1),
        OpKind::Del,
        OpKind::Cas { expect: 1, new: 2 },
    ];
    let batches = vec![Batch::msetnx(1), Batch::cross_cas(2, 1)];
    let mut cfg = Config::with_batches(3, menu, batches);
    cfg.repairs = 1;
    cfg.crashes = 0;
    holds(
        "deep: batches, 2 keys, 3 ops (PUT, DEL, CAS, MSETNX, cross-key CAS), 1 repair",
        cfg,
        &WITNESSES[..7],
    );
}

// (d) Each assumption dropped alone.

#[test]
fn without_compaction_lag_an_instance_behind_a_gap_is_wrong() {
    let mut cfg = Config::protocol(1, 2);
    cfg.assumptions.lag = Lag::Off;
    fails("no compaction lag", cfg, names::STATE);
}

#[test]
fn lag_must_wait_for_a_repair_covering_the_hazard() {
    // "Some repair of the key after it" is not enough: a lagging instance's
    // repair restates an offset before the hazard.
    let mut cfg = Config::protocol(1, 2);
    cfg.assumptions.lag = Lag::AnyLaterRepair;
    fails("lag satisfied by any later repair", cfg, names::STATE);
}

#[test]
fn without_tombstone_retention_a_deleted_key_comes_back() {
    let mut cfg = Config::protocol(1, 2);
    cfg.assumptions.tombstone_retention = Retention::Off;
    fails("no tombstone retention", cfg, names::STATE);
}

#[test]
fn retention_must_also_wait_for_the_key_to_settle() {
    // Every instance has read past the DEL, but a lagging instance's repair
    // restating an offset before it is the key's newest record.
    let mut cfg = Config::protocol(1, 2);
    cfg.assumptions.tombstone_retention = Retention::ReadPast;
    fails("retention without the settled clause", cfg, names::STATE);
}

#[test]
fn without_the_ready_rule_an_instance_serves_a_partial_view() {
    let mut cfg = Config::protocol(1, 2);
    cfg.assumptions.ready_rule = false;
    fails("no ready rule", cfg, names::STATE);
}

// The protocol's own rules, each dropped alone.

#[test]
fn without_reapplying_pending_ops_a_racing_op_is_lost() {
    let mut cfg = Config::protocol(1, 2);
    cfg.rules.reapply_pending = false;
    fails("repairs do not re-apply pending ops", cfg, names::STATE);
}

#[test]
fn applying_a_stale_repair_undoes_a_newer_write() {
    let mut cfg = Config::protocol(1, 2);
    cfg.rules.ignore_stale_repairs = false;
    fails("stale repairs applied", cfg, names::STATE);
}

#[test]
fn a_stale_repair_must_not_count_as_self_contained() {
    let mut cfg = Config::protocol(1, 3);
    cfg.repairs = 1;
    cfg.crashes = 0;
    cfg.rules.stale_is_hazard = false;
    fails("stale repair judged by its state", cfg, names::STATE);
}

#[test]
fn a_writer_behind_a_gap_must_not_reply() {
    let mut cfg = Config::protocol(1, 2);
    cfg.rules.reply_only_when_ready = false;
    fails("writer replies while not ready", cfg, names::REPLIES);
}

// Property (c) can fail.

#[test]
fn without_the_backstop_a_crashed_writer_leaves_a_hazard() {
    let mut cfg = Config::protocol(1, 1);
    cfg.rules.backstop = false;
    fails("no backstop", cfg, names::SETTLE);
}

#[test]
fn repairs_that_never_settle_do_not_stop() {
    let mut cfg = Config::protocol(1, 1);
    cfg.rules.repairs_settle = false;
    fails("repairs never settle", cfg, names::SETTLE);
}

/// The model's own transitions replayed by hand: a counterexample path is
/// a real run (each step enabled where it is taken).
#[test]
fn counterexamples_replay() {
    let mut cfg = Config::protocol(1, 2);
    cfg.assumptions.lag = Lag::Off;
    let model = RmwModel::new(cfg);
    let checker = model
        .clone()
        .checker()
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([names::STATE])))
        .spawn_bfs()
        .join();
    let path = checker.discovery(names::STATE).expect("a counterexample");
    let mut state = model.init_states().remove(0);
    for step in path.clone().into_actions() {
        let mut enabled = Vec::new();
        model.actions(&state, &mut enabled);
        assert!(enabled.contains(&step), "{step:?} not enabled");
        state = model.next_state(&state, step).expect("a step");
    }
    assert_eq!(&state, path.last_state());
    assert!(!(model.property(names::STATE).condition)(&model, &state));
}

/// The symmetry reduction loses nothing: exploring with it reaches exactly
/// the mirror-image classes that exploring without it reaches.
#[test]
fn symmetry_reduction_reaches_the_same_classes() {
    let classes = |symmetry: bool| {
        let mut cfg = Config::protocol(1, 2);
        cfg.repairs = 1;
        cfg.crashes = 0;
        cfg.symmetry = symmetry;
        let canon = RmwModel::new(Config {
            symmetry: true,
            ..cfg.clone()
        });
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let sink = Arc::clone(&seen);
        let checker = RmwModel::new(cfg)
            .checker()
            .visitor(move |path: Path<State, Step>| {
                let mut h = DefaultHasher::new();
                canon.canonical(path.last_state().clone()).hash(&mut h);
                sink.lock().unwrap().insert(h.finish());
            })
            .spawn_bfs()
            .join();
        assert!(checker.is_done());
        let unique = checker.unique_state_count();
        let seen = seen.lock().unwrap().clone();
        (seen, unique)
    };
    let (with, with_states) = classes(true);
    let (without, without_states) = classes(false);
    show(&format!(
        "symmetry: {with_states} states instead of {without_states}, {} classes\n",
        with.len()
    ));
    assert_eq!(with, without);
    assert!(with_states < without_states);
}

// Expiry (docs/expiry.md, "The model"): a broker clock that ticks, record
// timestamps, TTLs resolved and expiry decided at the record's timestamp,
// and SWEEPs — conditional tombstones — written by any started instance
// whose view holds the key with an expiry, at any time (before the expiry
// too: safety comes from evaluation alone). Property (d): removing every
// sweeper's record changes no reply and no logical state.

/// The expiry properties, beside [`ALWAYS`].
const EXPIRY_ALWAYS: [&str; 5] = [
    names::STATE,
    names::LINEARIZABLE,
    names::REPLIES,
    names::SETTLE,
    names::SWEEPS,
];

fn holds_expiry(label: &str, cfg: Config, witnesses: &[&'static str]) {
    holds(label, cfg.clone(), witnesses);
    // `holds` checks `ALWAYS`; (d) too.
    let model = RmwModel::new(cfg);
    let checker = model
        .clone()
        .checker()
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([names::SWEEPS])))
        .spawn_bfs()
        .join();
    for name in EXPIRY_ALWAYS {
        if let Some(path) = checker.discovery(name) {
            panic!("{label}: \"{name}\" fails:\n{}", model.explain(&path));
        }
    }
}

/// 1 key, 2 operations from the expiry menu (PUT with TTL 1, PUT, SET NX
/// PX 1, EXPIRE XX 2, PERSIST, INCR), 1 tick, 1 sweep, 1 repair.
fn expiry_one_key() -> Config {
    let mut cfg = Config::expiry(1, 2, Config::expiry_menu(), 1);
    cfg.crashes = 0;
    cfg
}

/// Without [`Rules::sweep_names_its_view`] (a SWEEP evaluated on the
/// applying instance's state alone, self-contained wherever it deletes),
/// (a) fails: a reader behind a gap applies a stale repair it cannot tell
/// is stale (it lost the PUT with a TTL that superseded the INCR the repair
/// restates), then evaluates a SWEEP that won in the log on that wrong,
/// unexpired state. Unlike a DEL, a conditional tombstone does not
/// overwrite what the reader holds, and compaction then removes the PUT,
/// the repair and the SWEEP.
#[test]
fn a_sweep_must_name_the_view_it_deletes() {
    let mut cfg = expiry_one_key();
    cfg.rules.sweep_names_its_view = false;
    fails(
        "expiry, a sweep judged by the reader's state",
        cfg,
        names::STATE,
    );
}

#[test]
fn expiry_one_key_two_ops_holds() {
    holds_expiry(
        "expiry: 1 key, 2 ops (PUT ttl, PUT, SET NX PX, EXPIRE XX, PERSIST, INCR), \
         1 tick, 1 sweep, 1 repair",
        expiry_one_key(),
        &[
            names::SWEEP_DELETED,
            names::SWEEP_LOST,
            names::SWEEP_REPAIRED,
            names::LOCK_TAKEN_EXPIRED,
            names::EXPIRE_REFUSED,
            names::FRESH_AFTER_GAP,
            names::TOMBSTONE_REMOVED,
        ],
    );
}

/// Three operations racing a sweep: PUT with TTL 1, PUT and INCR, 1 tick,
/// 1 sweep, 1 repair.
fn expiry_three_ops() -> Config {
    let menu = vec![OpKind::PutEx(1, 1), OpKind::Put(2), OpKind::Incr];
    let mut cfg = Config::expiry(1, 3, menu, 1);
    cfg.crashes = 0;
    cfg
}

#[test]
#[ignore]
fn expiry_one_key_three_ops() {
    holds_expiry(
        "expiry: 1 key, 3 ops (PUT ttl, PUT, INCR), 1 tick, 1 sweep, 1 repair",
        expiry_three_ops(),
        &[
            names::SWEEP_DELETED,
            names::SWEEP_LOST,
            names::SWEEP_REPAIRED,
            names::FRESH_SWEEP_AFTER_GAP,
        ],
    );
}

#[test]
fn an_unconditional_sweep_deletes_a_rewritten_key() {
    // A sweeper that writes a plain DEL once it sees the key expired: the
    // key rewritten (PUT without TTL) just before the DEL lands vanishes
    // with no client DEL.
    let mut cfg = expiry_one_key();
    cfg.rules.conditional_sweep = false;
    fails("expiry, unconditional sweep", cfg, names::SWEEPS);
}

#[test]
fn a_losing_sweep_must_be_a_hazard() {
    // Every SWEEP counted self-contained: a SWEEP that lost to a rewrite
    // supersedes the PUT in compaction and then goes as a settled
    // tombstone; a fresh instance reads absent where the log says 2.
    let mut cfg = expiry_one_key();
    cfg.rules.failed_sweep_is_hazard = false;
    fails("expiry, every sweep self-contained", cfg, names::STATE);
}

#[test]
fn expiry_must_be_decided_at_the_record_time() {
    // An instance that decides expiry by its own clock when it applies an
    // operation disagrees with one that applied it earlier.
    let mut cfg = expiry_one_key();
    cfg.rules.decide_at_record_time = false;
    fails(
        "expiry, decided by the applying instance's clock",
        cfg,
        names::STATE,
    );
}

#[test]
fn a_ttl_must_be_resolved_at_the_record_time() {
    let mut cfg = expiry_one_key();
    cfg.rules.ttl_from_record_time = false;
    fails(
        "expiry, TTL resolved by the applying instance's clock",
        cfg,
        names::STATE,
    );
}

#[test]
fn a_sweep_behind_a_gap_must_not_settle_its_key() {
    // The model's answer to docs/expiry.md's open question: an instance
    // behind a gap still holds PUT(k0, 1, ttl 1) and missed the INCR that
    // rewrote k0 without a TTL; the SWEEP lost to the INCR, but this
    // instance finds k0 expired, takes the SWEEP for a win (base := its
    // offset) and ignores the repair restating the INCR as stale.
    let mut cfg = Config::expiry(1, 2, vec![OpKind::PutEx(1, 1), OpKind::Incr], 2);
    cfg.crashes = 0;
    cfg.rules.sweep_settles_only_when_ready = false;
    fails("expiry, a sweep settles behind a gap", cfg, names::STATE);
}
