//! kafkv-model: a model-checked model of kafkv's read-modify-write protocol
//! (docs/rmw.md) on one partition of a log-compacted topic, checked with
//! [stateright](https://docs.rs/stateright).
//!
//! # What is modelled
//!
//! One partition holding 1 or 2 keys ([`Config`]). Two *writers* run from
//! offset 0 and serve client operations — PUT, DEL, INCR, SETNX, a
//! value-compare CAS and, on 2 keys, multi-key batches ([`spec::Batch`]:
//! MSETNX, a cross-key compare-and-set, RENAME) — each appended as one
//! record (PUT and DEL as self-contained records, the rest as `OP` records;
//! a batch keyed by the first key it writes) and answered when the writer
//! applies its own record. A *fresh* instance may bootstrap from the start
//! of the current, compacted log at any point. Every instance keeps, per
//! key, exactly what docs/rmw.md lists (state with version, `base`, pending
//! operations, whether the newest applied record is self-contained) plus its
//! position and the ready rule's target; it applies records by the
//! document's rules ([`instance`]), a batch as the implementation does
//! (evaluated on all its keys, hazardous for each key it writes and its
//! record key, re-applied to a repaired key with the verdict on its
//! conditions it got when first evaluated). Ready instances append repairs
//! of keys whose newest record they see as hazardous, at any moment (which
//! covers the writer's prompt repair, the backstop, and a lagging instance's
//! repair landing after racing writes) — anchor first: a key a batch
//! recorded under another key touched is repaired only after the
//! instance's repair of that key ([`AnchorFirst`]). Writers may crash. Compaction
//! ([`log::compact`]) picks any cleanable point and removes what Kafka's
//! cleaner removes, tombstones included — per record key, so a batch record
//! goes when its own key has a newer record, whatever the other keys it
//! wrote still rest on. The full, never-compacted log is kept as ghost
//! state: the properties compare against it.
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
//!   (an `OP`, or a repair that is stale, restates an offset before a batch
//!   of its key or does not match the state) until it is *covered*: a
//!   repair of its key restating an offset at or after it, or a
//!   self-contained record of its key, is in the log ([`Lag::Covering`]) —
//!   "the lag is far above the repair deadline";
//! - *tombstone retention*: a tombstone goes only once every live instance
//!   has read past it and its key's newest record is self-contained;
//! - the *ready rule* (an instance rule the docs count among the
//!   assumptions).
//!
//! Batches need two more ([`Assumptions::BATCHES`]), which the model found:
//! the lag read as the margin above the repair deadline it is, not only up
//! to the superseding record ([`Lag::Margin`]), and the cleanable point
//! never stopping inside an *anchor window*: after a client's PUT or DEL of
//! a key that a batch keyed by another key wrote, appended after the batch
//! and before the next record of the batch's key, and at or before that
//! record (`Assumptions::cleanable_point_outside_anchor_windows`). Kafka
//! can stop there (a segment boundary); docs/rmw.md lists it under
//! "Limits". Batches also need two protocol rules the model added
//! ([`Rules`]): anchor first, and a repair restating an offset before a
//! batch of its key does not settle the key.
//!
//! Expiry (docs/expiry.md, issue 18) adds a broker clock, record
//! timestamps, TTLs and the SWEEP record, with property (d): removing every
//! sweeper's record changes no reply and no live state. A SWEEP names the
//! sweeper's view (`r`, `e`: [`Rules::sweep_names_its_view`]) so that a
//! reader behind a gap holding a wrong state still deletes, and it settles
//! its key only when no record touched the key after `r`; without that, a
//! stale repair read behind a gap followed by a winning SWEEP breaks (a)
//! (`a_sweep_must_name_the_view_it_deletes`).
//!
//! Each can be switched off; the tests show the counterexample each time.
//! One more counterexample is a limit of anchor first, not assumed away:
//! two batches anchored on each other (docs/rmw.md, "Limits"); the regular
//! configurations hold no such pair with three operations, and a test
//! replays it.
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
//! More than one partition (keys never interact across partitions; kafkv
//! refuses a batch across keys on more than one partition), Kafka's record
//! batches and producer retries (a record is appended once, atomically),
//! broker failures and replication (the log is the committed log), reads
//! served to clients (property (a) covers what a read would return),
//! operation errors (no INCR on a non-integer), clocks that step back, the
//! repairer writing a SWEEP, version conditions (a
//! batch's value condition stands in for them, see [`spec::Cond::Is`]),
//! batches with a step that reads, or with more than two writes. An instance
//! whose remaining records were all compacted away is taken to reach the end
//! offset (a gap); the implementation has to treat it so too, or it would
//! never become ready.
//!
//! # Running it
//!
//! `cargo test -p kafkv-model` explores the protocol in five configurations,
//! two of them with batches (about 50 s on two cores), and drops each
//! assumption and rule in turn; state counts and every counterexample go to
//! stderr, visible without `--nocapture`. `cargo test -p kafkv-model
//! --release -- --ignored` runs larger bounds (minutes). `cargo run -p
//! kafkv-model --release --example explore [keys ops]` serves stateright's
//! explorer on <http://127.0.0.1:3000> to step through the model by hand.

pub mod instance;
pub mod log;
pub mod model;
pub mod spec;

pub use instance::{AnchorFirst, Rules};
pub use log::Lag;
pub use model::{Assumptions, Config, Retention, RmwModel, State, Step, names};
