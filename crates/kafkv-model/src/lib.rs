//! kafkv-model: a model-checked model of kafkv's read-modify-write protocol
//! (docs/rmw.md) on one partition of a log-compacted topic, checked with
//! [stateright](https://docs.rs/stateright).
//!
//! # What is modelled
//!
//! One partition holding 1 or 2 keys ([`Config`]). Two *writers* run from
//! offset 0 and serve client operations — PUT, DEL, INCR, SETNX and a
//! value-compare CAS — each appended as a record (PUT and DEL as
//! self-contained records, the rest as `OP` records) and answered when the
//! writer applies its own record. A *fresh* instance may bootstrap from the
//! start of the current, compacted log at any point. Every instance keeps,
//! per key, exactly what docs/rmw.md lists (state with version, `base`,
//! pending operations, whether the newest applied record is
//! self-contained) plus its position and the ready rule's target; it applies
//! records by the document's rules ([`instance`]). Ready instances append
//! repairs of keys whose newest record they see as hazardous, at any moment
//! (which covers the writer's prompt repair, the backstop, and a lagging
//! instance's repair landing after racing writes). Writers may crash.
//! Compaction ([`log::compact`]) picks any cleanable point and removes what
//! Kafka's cleaner removes, tombstones included. The full, never-compacted
//! log is kept as ghost state: the properties compare against it.
//!
//! # Properties ([`names`])
//!
//! - (a) a ready instance holds, for every key, the value and version that
//!   sequential evaluation of the full log below its position gives;
//! - (b) replies are linearizable (stateright's `LinearizabilityTester`
//!   over the [`spec::KvSpec`] map), and each equals the evaluation of the
//!   full log at the record's offset;
//! - (c) after the last client operation, letting every live instance read
//!   everything and repair what it finds hazardous (in rounds) stops within
//!   a bound and leaves every key's newest record self-contained — checked
//!   from every reachable state, so it also covers the adversarial schedules
//!   the exploration itself produced (crashes, lagging repairs);
//!
//! plus `sometimes` witnesses that the interesting situations occur (a
//! fresh instance becomes ready after a gap, a repair re-applies pending
//! operations, compaction removes a hazardous operation's base, ...).
//!
//! # Time
//!
//! There are no clocks: every step may happen at any moment. The timing
//! assumptions become limits on compaction ([`Assumptions`]):
//! - *compaction lag*: the cleanable point may not pass a hazardous record
//!   (an `OP`, or a repair that is stale or does not match the state) unless
//!   a repair of its key restating an offset at or after it is in the log
//!   ([`Lag::Covering`]) — "the lag is far above the repair deadline";
//! - *tombstone retention*: a tombstone goes only once every live instance
//!   has read past it and its key's newest record is self-contained;
//! - the *ready rule* (an instance rule the docs count among the
//!   assumptions).
//!
//! Each can be switched off; the tests show the counterexample each time.
//!
//! # Bounds and reductions
//!
//! Client operations, repairs (while exploring; property (c) runs the
//! protocol on without a budget) and crashes are bounded per
//! configuration; compaction is not (it only removes, so it runs out by
//! itself). An instance does not repeat a repair of a key before it has read
//! its previous one back (the model's reading of "coalesced per key"). By
//! default the fresh instance starts only once compaction has removed
//! something: before that, bootstrapping is reading the exact log, which the
//! writers do already; one configuration lifts this. The two writers are
//! interchangeable, so a state and its mirror image are explored once, and a
//! state's identity ignores what can no longer influence anything.
//!
//! # Not modelled
//!
//! More than one partition (keys never interact across partitions), record
//! batches and producer retries (a record is appended once, atomically),
//! broker failures and replication (the log is the committed log), reads
//! served to clients (property (a) covers what a read would return),
//! operation errors (no INCR on a non-integer), TTL. An instance whose
//! remaining records were all compacted away is taken to reach the end
//! offset (a gap); the implementation has to treat it so too, or it would
//! never become ready.
//!
//! # Running it
//!
//! `cargo test -p kafkv-model` explores the protocol in three
//! configurations (about a minute on two cores) and drops each assumption
//! and rule in turn; state counts and every counterexample go to stderr,
//! visible without `--nocapture`. `cargo test -p kafkv-model --release --
//! --ignored` runs larger bounds (minutes). `cargo run -p kafkv-model
//! --release --example explore [keys ops]` serves stateright's explorer on
//! <http://127.0.0.1:3000> to step through the model by hand.

pub mod instance;
pub mod log;
pub mod model;
pub mod spec;

pub use instance::Rules;
pub use log::Lag;
pub use model::{Assumptions, Config, Retention, RmwModel, State, Step, names};
