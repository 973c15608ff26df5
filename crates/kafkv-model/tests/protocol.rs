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

use kafkv_model::{Config, Lag, Retention, RmwModel, State, Step, names};
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
