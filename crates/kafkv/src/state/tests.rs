//! The view's behaviour, on both backends where it matters: overlay and
//! table together, positions and bootstrap, scans and the SCAN cursor, the
//! change hook.

use super::*;
use crate::state::table::disk::DiskTable;

fn put(p: i32, o: i64, k: &str, v: &str) -> Event {
    Event::Record(Record::put(p, o, k.as_bytes(), v.as_bytes()))
}

fn del(p: i32, o: i64, k: &str) -> Event {
    Event::Record(Record::tombstone(p, o, k.as_bytes()))
}

fn apply(view: &View, mut events: Vec<Event>) {
    view.apply(&mut events).unwrap();
    assert!(events.is_empty());
}

/// Puts each key (value "v") at offsets 0, 1, … of partition 0.
fn put_each(view: &View, keys: &[String]) {
    let events = keys
        .iter()
        .enumerate()
        .map(|(i, k)| put(0, i as i64, k, "v"))
        .collect();
    apply(view, events);
}

fn value(view: &View, k: &str) -> Option<String> {
    view.get(k.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v.value.to_vec()).unwrap())
}

#[test]
fn later_records_win_and_tombstones_delete() {
    let view = View::in_memory(vec![3]);
    apply(
        &view,
        vec![put(0, 0, "a", "1"), put(0, 1, "a", "2"), del(0, 2, "a")],
    );
    assert_eq!(value(&view, "a"), None);
    apply(&view, vec![put(0, 3, "a", "3")]);
    assert_eq!(value(&view, "a").as_deref(), Some("3"));
    assert!(view.progress().bootstrap.is_done());
}

#[test]
fn acknowledged_write_is_visible_until_the_consumer_applies_a_newer_one() {
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "k", "old")]);
    view.acknowledge(b"k", Some(Bytes::from_static(b"mine")), 0, 5);
    assert_eq!(value(&view, "k").as_deref(), Some("mine"));
    // Records before our write do not hide it.
    apply(&view, vec![put(0, 3, "k", "other")]);
    assert_eq!(value(&view, "k").as_deref(), Some("mine"));
    // Our own record arrives: same value, now from the map.
    apply(&view, vec![put(0, 5, "k", "mine")]);
    assert_eq!(value(&view, "k").as_deref(), Some("mine"));
    // A later record from anywhere wins.
    apply(&view, vec![put(0, 6, "k", "newer")]);
    assert_eq!(value(&view, "k").as_deref(), Some("newer"));
}

#[test]
fn acknowledgement_of_an_applied_offset_is_ignored() {
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "k", "a"), put(0, 1, "k", "b")]);
    view.acknowledge(b"k", Some(Bytes::from_static(b"a")), 0, 0);
    assert_eq!(value(&view, "k").as_deref(), Some("b"));
}

#[test]
fn acknowledged_delete_hides_the_key_in_get_scan_and_len() {
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "a", "1"), put(0, 1, "b", "2")]);
    view.acknowledge(b"a", None, 0, 7);
    view.acknowledge(b"c", Some(Bytes::from_static(b"3")), 0, 8);
    assert_eq!(value(&view, "a"), None);
    let keys: Vec<_> = view
        .scan(b"", None, 10, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![Bytes::from_static(b"b"), Bytes::from_static(b"c")]
    );
    assert_eq!(view.len(), 2);
}

#[test]
fn scan_honours_prefix_start_after_and_limit() {
    let view = View::in_memory(vec![0]);
    let events = ["a1", "b1", "b2", "b3", "c1"]
        .iter()
        .enumerate()
        .map(|(i, k)| put(0, i as i64, k, "v"))
        .collect();
    apply(&view, events);
    let page = |after: Option<&[u8]>, limit| -> Vec<Bytes> {
        view.scan(b"b", after, limit, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(page(None, 2), vec![&b"b1"[..], &b"b2"[..]]);
    assert_eq!(page(Some(b"b2"), 2), vec![&b"b3"[..]]);
    assert_eq!(page(Some(b"a"), 1), vec![&b"b1"[..]]);
    // A byte budget cuts the page short, but never to nothing.
    assert_eq!(view.scan(b"b", None, 10, 5).unwrap().len(), 2);
    assert_eq!(view.scan(b"b", None, 10, 1).unwrap().len(), 1);
}

#[test]
fn scan_cursor_returns_every_key_that_stays_despite_concurrent_changes() {
    let view = View::in_memory(vec![0]);
    let keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
    put_each(&view, &keys);
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0;
    let mut offset = 100;
    let mut calls = 0;
    loop {
        let (page, next) = view.scan_from(cursor, 7).unwrap();
        seen.extend(page.iter().map(|k| String::from_utf8(k.to_vec()).unwrap()));
        // Between calls: overwrite a key already seen and one not yet
        // seen, delete one, add one, acknowledge one.
        let changes = vec![
            put(0, offset, &keys[calls % 100], "changed"),
            put(0, offset + 1, &keys[99 - calls % 100], "changed"),
            del(0, offset + 2, &format!("temp{}", calls.saturating_sub(1))),
            put(0, offset + 3, &format!("temp{calls}"), "new"),
        ];
        offset += 4;
        apply(&view, changes);
        view.acknowledge(
            keys[(calls * 3) % 100].as_bytes(),
            Some(Bytes::from_static(b"a")),
            0,
            10_000 + calls as i64,
        );
        calls += 1;
        if next == 0 {
            break;
        }
        cursor = next;
        assert!(calls < 1000, "the scan must end");
    }
    for key in &keys {
        assert!(seen.contains(key), "{key} was skipped");
    }
    assert_eq!(view.len(), 101);
}

#[test]
fn duplicate_delivery_does_not_roll_back() {
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "k", "1"), put(0, 1, "k", "2")]);
    apply(&view, vec![put(0, 0, "k", "1")]);
    assert_eq!(value(&view, "k").as_deref(), Some("2"));
}

#[test]
fn bootstrap_completes_on_targets_or_end_of_partition() {
    let view = View::in_memory(vec![2, 5, 0]);
    assert!(!view.progress().bootstrap.is_done());
    apply(&view, vec![put(0, 0, "a", "0"), put(0, 1, "a", "1")]);
    assert!(!view.progress().bootstrap.is_done());
    apply(&view, vec![Event::EndOfPartition(1)]);
    assert!(view.progress().bootstrap.is_done());
}

// The ready rule (docs/rmw.md): skipping offsets (compaction removed them)
// makes a view not ready until it reaches the end offset learnt after the
// gap, whether or not it was ready before.
#[test]
fn a_gap_holds_readiness_until_the_end_offset_learnt_after_it() {
    let view = View::in_memory(vec![1]);
    apply(&view, vec![put(0, 0, "a", "0")]);
    assert!(view.is_bootstrapped());
    let mut events = vec![put(0, 3, "a", "3")];
    let applied = view.apply(&mut events).unwrap();
    assert_eq!(applied.gaps, vec![0]);
    assert!(
        !view.is_bootstrapped(),
        "not ready before the new target is known"
    );
    // Reaching the end as fetched before the target was learnt does not count.
    apply(&view, vec![Event::EndOfPartition(0)]);
    assert!(!view.is_bootstrapped());
    view.retarget(0, 6);
    assert!(!view.is_bootstrapped());
    apply(&view, vec![put(0, 4, "b", "4"), put(0, 5, "b", "5")]);
    assert!(view.is_bootstrapped());
    assert_eq!(value(&view, "a").as_deref(), Some("3"));
}

#[tokio::test]
async fn waiting_for_positions_returns_once_applied() {
    let view = std::sync::Arc::new(View::in_memory(vec![0]));
    let waiter = {
        let view = view.clone();
        tokio::spawn(async move { view.wait_for_positions(&[2], Duration::from_secs(5)).await })
    };
    apply(&view, vec![put(0, 0, "a", "1")]);
    apply(&view, vec![put(0, 1, "a", "2")]);
    assert!(waiter.await.unwrap());
    assert!(
        !view
            .wait_for_positions(&[3], Duration::from_millis(10))
            .await
    );
}

fn disk_view(dir: &tempfile::TempDir, targets: Vec<i64>) -> (View, Option<Checkpoint>) {
    let (table, checkpoint) = DiskTable::open(&dir.path().join("t.redb")).unwrap();
    let positions = match &checkpoint {
        Some(c) => c.positions.clone(),
        None => {
            table
                .reset(&Checkpoint {
                    topic: "t".into(),
                    topic_id: None,
                    positions: vec![0; targets.len()],
                    saved_at: None,
                })
                .unwrap();
            vec![0; targets.len()]
        }
    };
    (View::new(Box::new(table), positions, targets), checkpoint)
}

/// Runs `test` on a fresh disk view and a fresh memory view, each expecting
/// the partitions' end offsets `targets`.
fn on_both_backends(targets: Vec<i64>, test: impl Fn(&View)) {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = disk_view(&dir, targets.clone());
    test(&disk);
    test(&View::in_memory(targets));
}

#[test]
fn disk_view_reads_like_the_memory_view() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = disk_view(&dir, vec![0]);
    let memory = View::in_memory(vec![0]);
    let events = || {
        vec![
            put(0, 0, "a1", "1"),
            put(0, 1, "b1", "2"),
            put(0, 2, "b2", "3"),
            put(0, 3, "a1", "4"),
            del(0, 4, "b1"),
            put(0, 5, "c1", "5"),
            put(0, 4, "b1", "duplicate delivery, ignored"),
        ]
    };
    for view in [&disk, &memory] {
        apply(view, events());
        view.acknowledge(b"b2", None, 0, 9);
        view.acknowledge(b"b3", Some(Bytes::from_static(b"6")), 0, 10);
    }
    for key in ["a1", "b1", "b2", "b3", "c1", "zz"] {
        assert_eq!(
            disk.get(key.as_bytes()).unwrap(),
            memory.get(key.as_bytes()).unwrap(),
            "{key}"
        );
    }
    assert_eq!(
        disk.scan(b"", None, 100, usize::MAX).unwrap(),
        memory.scan(b"", None, 100, usize::MAX).unwrap()
    );
    assert_eq!(disk.keys(b"b").unwrap(), memory.keys(b"b").unwrap());
    assert_eq!(disk.len(), 3);
    assert_eq!(memory.len(), 3);
    let all = |view: &View| {
        let (mut keys, mut cursor) = (Vec::new(), 0);
        loop {
            let (page, next) = view.scan_from(cursor, 1).unwrap();
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys
    };
    assert_eq!(all(&disk), all(&memory));
    assert_eq!(all(&disk).len(), 3);
}

#[test]
fn disk_view_reopens_at_its_checkpoint_with_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (view, checkpoint) = disk_view(&dir, vec![0, 0]);
        assert!(checkpoint.is_none());
        apply(
            &view,
            vec![
                put(0, 0, "a", "1"),
                put(1, 0, "b", "2"),
                put(1, 1, "c", "3"),
            ],
        );
        apply(&view, vec![del(1, 2, "c"), put(0, 1, "a", "4")]);
        view.sync().unwrap();
    }
    let (view, checkpoint) = disk_view(&dir, vec![2, 3]);
    let checkpoint = checkpoint.expect("a checkpoint");
    assert_eq!(checkpoint.positions, vec![2, 3]);
    assert_eq!(checkpoint.topic, "t");
    assert!(checkpoint.saved_at.is_some());
    assert!(
        view.is_bootstrapped(),
        "nothing to read past the checkpoint"
    );
    assert_eq!(value(&view, "a").as_deref(), Some("4"));
    assert_eq!(value(&view, "b").as_deref(), Some("2"));
    assert_eq!(value(&view, "c"), None);
    assert_eq!(view.len(), 2);
}

#[test]
fn memory_overhead_per_key_is_small() {
    let view = View::in_memory(vec![0]);
    let n = 200_000;
    let value = [b'v'; 100];
    for chunk in (0..n).collect::<Vec<i64>>().chunks(View::MAX_BATCH) {
        let events = chunk
            .iter()
            .map(|i| {
                let key = format!(
                    "key-{:012}",
                    (*i as u64).wrapping_mul(2_654_435_761) % 1_000_000_007
                );
                Event::Record(Record::put(0, *i, key.as_bytes(), &value))
            })
            .collect();
        apply(&view, events);
    }
    assert_eq!(view.len(), n as usize);
    // Beyond each entry's single key ‖ value allocation: the slot, the
    // hash index and the sorted index.
    let per_key = view.memory_overhead_bytes() as f64 / n as f64;
    assert!(per_key < 60.0, "{per_key:.1} bytes of overhead per key");
}

// Regression: a key readable through the overlay when a SCAN began was
// applied into a recycled slot below the cursor and never returned.
#[test]
fn scan_returns_a_key_applied_mid_scan_that_was_readable_all_along() {
    let view = View::in_memory(vec![0]);
    let keys: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    put_each(&view, &keys);
    apply(&view, vec![del(0, 20, "k03")]); // frees slot 3
    view.acknowledge(b"new", Some(Bytes::from_static(b"n")), 0, 21);
    let (mut seen, mut cursor) = (Vec::new(), 0);
    let (page, next) = view.scan_from(cursor, 10).unwrap();
    seen.extend(page);
    cursor = next;
    apply(&view, vec![put(0, 21, "new", "n")]);
    while cursor != 0 {
        let (page, next) = view.scan_from(cursor, 10).unwrap();
        seen.extend(page);
        cursor = next;
    }
    assert!(seen.contains(&Bytes::from_static(b"new")), "{seen:?}");
    assert_eq!(seen.len(), 20);
}

#[test]
fn checkpoint_time_is_when_the_view_was_last_caught_up_not_when_it_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let reopen = |dir: &tempfile::TempDir| {
        let (_, checkpoint) = DiskTable::open(&dir.path().join("t.redb")).unwrap();
        checkpoint.unwrap().saved_at.unwrap()
    };
    let reset_at;
    {
        let (view, _) = disk_view(&dir, vec![0]);
        reset_at = std::time::SystemTime::now();
        std::thread::sleep(Duration::from_millis(20));
        // Records, but never the partition's end: nothing newer is known applied.
        apply(&view, vec![put(0, 0, "a", "1")]);
        view.sync().unwrap();
    }
    assert!(
        reopen(&dir) <= reset_at,
        "a view behind the log keeps its older time"
    );
    let after_end;
    {
        let (view, _) = disk_view(&dir, vec![0]);
        apply(&view, vec![put(0, 1, "b", "2"), Event::EndOfPartition(0)]);
        after_end = std::time::SystemTime::now();
        std::thread::sleep(Duration::from_millis(20));
        view.sync().unwrap();
    }
    assert!(reopen(&dir) >= after_end, "at the end, the time is now");
}

fn changes(batch: &ChangeBatch) -> Vec<(i32, i64, String, Option<String>)> {
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    batch
        .changes
        .iter()
        .map(|c| {
            (
                c.partition,
                c.offset,
                text(&c.key),
                c.value.as_ref().map(text),
            )
        })
        .collect()
}

/// The change hook on both backends: every applied record once, in the
/// order applied, with the positions after the batch; redeliveries and
/// skipped records publish nothing.
#[test]
fn applied_records_are_published_once_in_log_order_on_both_backends() {
    on_both_backends(vec![0, 0], |view| {
        let (mut rx, from) = view.subscribe_changes();
        assert_eq!(from, vec![0, 0]);
        apply(
            view,
            vec![
                put(0, 0, "a", "1"),
                put(1, 0, "b", "2"),
                Event::Skipped {
                    partition: 0,
                    offset: 1,
                },
                del(0, 2, "a"),
                Event::EndOfPartition(1),
            ],
        );
        // A redelivery of applied offsets and a skipped record: no batch.
        apply(
            view,
            vec![
                put(0, 0, "a", "1"),
                Event::Skipped {
                    partition: 0,
                    offset: 3,
                },
            ],
        );
        apply(view, vec![put(1, 1, "b", "3")]);
        let first = rx.try_recv().expect("the first batch");
        assert_eq!(
            changes(&first),
            vec![
                (0, 0, "a".into(), Some("1".into())),
                (1, 0, "b".into(), Some("2".into())),
                (0, 2, "a".into(), None),
            ]
        );
        assert_eq!(first.positions, vec![3, 1]);
        let second = rx.try_recv().expect("the second batch");
        assert_eq!(changes(&second), vec![(1, 1, "b".into(), Some("3".into()))]);
        assert_eq!(second.positions, vec![4, 2]);
        assert!(rx.try_recv().is_err(), "nothing else was published");
    });
}

/// A batch larger than one install part reaches subscribers as parts of
/// at most `INSTALL_PART` records, each with the positions where it ends,
/// together every record once in log order; the view ends where the whole
/// batch does.
#[test]
fn a_large_batch_is_installed_and_published_in_parts_that_end_at_record_boundaries() {
    on_both_backends(vec![0, 0], |view| {
        let (mut rx, _) = view.subscribe_changes();
        let n = View::INSTALL_PART * 2 + 44;
        let mut events = Vec::new();
        let mut expected = Vec::new();
        for i in 0..n as i64 {
            // Partition 1 every third record; partition 0 skips offset 100.
            let (partition, offset) = if i % 3 == 2 {
                (1, i / 3)
            } else {
                (0, i - i / 3)
            };
            let offset = if partition == 0 && offset >= 100 {
                offset + 1
            } else {
                offset
            };
            if partition == 0 && offset == 101 {
                events.push(Event::Skipped {
                    partition: 0,
                    offset: 100,
                });
            }
            let key = format!("k{i}");
            events.push(put(partition, offset, &key, "v"));
            expected.push((partition, offset, key, Some("v".to_owned())));
        }
        let end = view.progress().positions.clone();
        assert_eq!(end, vec![0, 0]);
        apply(view, events);
        let mut published = Vec::new();
        let mut parts = Vec::new();
        while let Ok(part) = rx.try_recv() {
            let part_changes = changes(&part);
            assert!(part_changes.len() <= View::INSTALL_PART);
            // The part's positions are just past its last record.
            let &(partition, offset, ..) = part_changes.last().unwrap();
            assert_eq!(part.positions[partition as usize], offset + 1);
            parts.push(part.positions.clone());
            published.extend(part_changes);
        }
        assert_eq!(published, expected);
        assert_eq!(parts.len(), n.div_ceil(View::INSTALL_PART));
        let last_p0 = expected.iter().rev().find(|c| c.0 == 0).unwrap().1;
        let last_p1 = expected.iter().rev().find(|c| c.0 == 1).unwrap().1;
        assert_eq!(parts.last().unwrap(), &vec![last_p0 + 1, last_p1 + 1]);
        assert_eq!(view.progress().positions, vec![last_p0 + 1, last_p1 + 1]);
        assert_eq!(view.len(), n);
    });
}

#[test]
fn changes_carry_the_record_timestamp() {
    let view = View::in_memory(vec![0]);
    let (mut rx, _) = view.subscribe_changes();
    let record = Record::put(0, 0, b"k", b"v").with_timestamp(Some(1_700_000_000_123));
    apply(&view, vec![Event::Record(record)]);
    let batch = rx.try_recv().unwrap();
    assert_eq!(batch.changes[0].timestamp, Some(1_700_000_000_123));
}

/// A subscription starts exactly after the positions it returns: batches
/// applied before it are not received, every one after it is.
#[test]
fn a_subscription_receives_exactly_the_batches_after_its_positions() {
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "before", "x")]);
    let (mut rx, from) = view.subscribe_changes();
    assert_eq!(from, vec![1]);
    apply(&view, vec![put(0, 1, "after", "y")]);
    let batch = rx.try_recv().unwrap();
    assert_eq!(
        changes(&batch),
        vec![(0, 1, "after".into(), Some("y".into()))]
    );
    assert!(rx.try_recv().is_err());
}

/// A subscriber that never reads does not hold the consumer back: applying
/// goes on, and the subscriber learns it lagged instead of silently missing
/// batches; a subscriber that keeps up meanwhile gets everything.
#[test]
fn a_slow_subscriber_never_blocks_apply_and_is_told_it_lagged() {
    let view = View::in_memory(vec![0]);
    let (mut idle, _) = view.subscribe_changes();
    let (mut reading, _) = view.subscribe_changes();
    let batches = changes::DEFAULT_CHANGE_CAPACITY as i64 * 3;
    let mut received = 0;
    for offset in 0..batches {
        apply(&view, vec![put(0, offset, "k", "v")]);
        while let Ok(batch) = reading.try_recv() {
            assert_eq!(batch.changes[0].offset, received);
            received += 1;
        }
    }
    assert_eq!(received, batches);
    assert_eq!(view.progress().positions, vec![batches]);
    assert!(matches!(
        idle.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
    ));
}

/// Nobody subscribed: nothing is built or kept for the feed.
#[test]
fn an_unwatched_view_publishes_nothing() {
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "k", "v")]);
    let (mut rx, from) = view.subscribe_changes();
    assert_eq!(from, vec![1]);
    assert!(rx.try_recv().is_err());
}

#[test]
fn random_key_picks_every_live_key_and_never_a_deleted_one() {
    on_both_backends(vec![0], |view| {
        assert_eq!(view.random_key().unwrap(), None);
        let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        put_each(view, &keys);
        // Applied deletes, an acknowledged one and an acknowledged put not
        // applied yet.
        apply(view, vec![del(0, 10, "k1"), del(0, 11, "k2")]);
        view.acknowledge(b"k3", None, 0, 12);
        view.acknowledge(b"fresh", Some(Bytes::from_static(b"v")), 0, 13);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.insert(view.random_key().unwrap().unwrap());
        }
        let expected: std::collections::BTreeSet<Bytes> =
            ["fresh", "k0", "k4", "k5", "k6", "k7", "k8", "k9"]
                .into_iter()
                .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                .collect();
        assert_eq!(seen, expected);

        // Every key deleted; then one acknowledged put.
        let mut rest = vec![del(0, 12, "k3"), put(0, 13, "fresh", "v")];
        let others = ["k0", "k4", "k5", "k6", "k7", "k8", "k9", "fresh"];
        for (n, key) in others.iter().enumerate() {
            rest.push(del(0, 14 + n as i64, key));
        }
        apply(view, rest);
        assert_eq!(view.random_key().unwrap(), None);
        view.acknowledge(b"late", Some(Bytes::from_static(b"v")), 0, 30);
        assert_eq!(view.random_key().unwrap().as_deref(), Some(&b"late"[..]));
    });
}

/// How often each key came back in `draws` calls of `random_key`.
fn random_key_draws(view: &View, draws: usize) -> std::collections::HashMap<Bytes, usize> {
    let mut counts = std::collections::HashMap::new();
    for _ in 0..draws {
        *counts
            .entry(view.random_key().unwrap().unwrap())
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn random_key_is_uniform_over_a_half_empty_table() {
    on_both_backends(vec![0], |view| {
        // 100 keys, then every other one deleted: each live key sits after a
        // freed place, which "the next live key after a random place" would
        // pick twice as often as a key after a live one.
        let keys: Vec<String> = (0..100).map(|i| format!("k{i:02}")).collect();
        put_each(view, &keys);
        let deletes = (0..100)
            .filter(|i| i % 2 == 0 || i % 7 == 0)
            .enumerate()
            .map(|(n, i)| del(0, 100 + n as i64, &keys[i]))
            .collect();
        apply(view, deletes);
        let live = view.len();
        let counts = random_key_draws(view, 400 * live);
        assert_eq!(counts.len(), live);
        // 400 expected each; the standard deviation is about 20.
        for (key, count) in counts {
            assert!((280..=520).contains(&count), "{key:?} drawn {count} times");
        }
    });
}

#[test]
fn random_key_is_uniform_over_two_keys_after_a_long_freed_run() {
    on_both_backends(vec![0], |view| {
        // Redis's suite after FLUSHDB: two live keys side by side after
        // many freed places. "The next live key after a random place" drew
        // the first of them nearly every time.
        let keys: Vec<String> = (0..2000).map(|i| format!("k{i:04}")).collect();
        put_each(view, &keys);
        let deletes = (0..1998)
            .map(|i| del(0, 2000 + i as i64, &keys[i]))
            .collect();
        apply(view, deletes);
        assert_eq!(view.len(), 2);
        let counts = random_key_draws(view, 400);
        assert_eq!(counts.len(), 2, "{counts:?}");
        // 200 expected each; the standard deviation is 10.
        for (key, count) in counts {
            assert!((140..=260).contains(&count), "{key:?} drawn {count} times");
        }
    });
}

fn op(p: i32, o: i64, k: &str, op: crate::op::Op) -> Event {
    Event::Record(Record::put(p, o, k.as_bytes(), &op.encode()).with_kind(Kind::Op(op)))
}

fn version(view: &View, k: &str) -> Option<i64> {
    view.get(k.as_bytes()).unwrap().map(|v| v.offset)
}

#[test]
fn operations_are_evaluated_in_log_order_within_and_across_batches() {
    use crate::op::Op;
    on_both_backends(vec![0], |view| {
        // A plain put and two increments of the same key in one batch: each
        // sees the one before it.
        apply(
            view,
            vec![
                put(0, 0, "n", "5"),
                op(0, 1, "n", Op::IncrBy(1)),
                op(0, 2, "n", Op::IncrBy(10)),
            ],
        );
        assert_eq!(value(view, "n").as_deref(), Some("16"));
        assert_eq!(
            version(view, "n"),
            Some(2),
            "the version is the last change's offset"
        );
        apply(view, vec![op(0, 3, "n", Op::IncrBy(-6))]);
        assert_eq!(value(view, "n").as_deref(), Some("10"));
        assert_eq!(
            view.unsettled_keys(),
            1,
            "the newest record is an operation"
        );
        // An error changes nothing, not even the version.
        apply(
            view,
            vec![put(0, 4, "s", "x"), op(0, 5, "s", Op::IncrBy(1))],
        );
        assert_eq!(
            (value(view, "s").as_deref(), version(view, "s")),
            (Some("x"), Some(4))
        );
        // A plain put settles its key.
        apply(view, vec![put(0, 6, "n", "0")]);
        assert_eq!(view.unsettled_keys(), 1, "only s is left");
    });
}

#[test]
fn a_writer_receives_its_records_outcome_once_applied_and_readable() {
    use crate::op::{Condition, Op};
    let view = View::in_memory(vec![0]);
    let (id, mut outcome) = view.register_waiter();
    let set_nx = Op::Set {
        value: Bytes::from_static(b"me"),
        when: Condition::Absent,
    };
    let mut record =
        Record::put(0, 0, b"lock", &set_nx.encode()).with_kind(Kind::Op(set_nx.clone()));
    record.id = Some(id);
    assert!(outcome.try_recv().is_err());
    apply(&view, vec![Event::Record(record)]);
    let delivered = outcome.try_recv().expect("delivered with the batch");
    assert!(delivered.exact && delivered.outcome.applied);
    assert_eq!(value(&view, "lock").as_deref(), Some("me"));
    // The same condition, now false: refused, and the key keeps its value.
    let (id, mut outcome) = view.register_waiter();
    let mut record = Record::put(0, 1, b"lock", &set_nx.encode()).with_kind(Kind::Op(set_nx));
    record.id = Some(id);
    apply(&view, vec![Event::Record(record)]);
    let delivered = outcome.try_recv().unwrap();
    assert!(!delivered.outcome.applied);
    assert_eq!(delivered.outcome.after.unwrap().version, 0);
    assert_eq!(value(&view, "lock").as_deref(), Some("me"));
}

#[test]
fn an_operation_publishes_the_keys_new_value_and_a_refused_one_nothing() {
    use crate::op::{Condition, Op};
    let view = View::in_memory(vec![0]);
    let (mut changes, _) = view.subscribe_changes();
    apply(
        &view,
        vec![
            op(0, 0, "n", Op::IncrBy(2)),
            op(
                0,
                1,
                "n",
                Op::Set {
                    value: Bytes::from_static(b"x"),
                    when: Condition::Absent,
                },
            ),
        ],
    );
    let batch = changes.try_recv().unwrap();
    assert_eq!(batch.changes.len(), 1);
    assert_eq!(batch.changes[0].value.as_deref(), Some(&b"2"[..]));
    assert_eq!(batch.changes[0].offset, 0);
}

#[test]
fn the_fast_path_answers_at_acknowledgement_only_when_every_earlier_offset_is_known() {
    use crate::op::Op;
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "n", "5")]);
    let incr = |key: &str| Acknowledged::Op {
        key: Bytes::copy_from_slice(key.as_bytes()),
        op: Op::IncrBy(1),
    };
    // Offset 1, right after everything applied: answered now, and readable.
    let (id, mut delivered) = view.register_waiter();
    let outcome = view
        .outcome_at_ack(id, incr("n"), 0, 1)
        .unwrap()
        .expect("known");
    assert_eq!(
        outcome.after.as_ref().unwrap().value,
        Bytes::from_static(b"6")
    );
    assert_eq!(value(&view, "n").as_deref(), Some("6"));
    // Its own plain put at 2 is known too; an increment at 3 counts from it.
    view.acknowledge(b"n", Some(Bytes::from_static(b"10")), 0, 2);
    let (id3, _) = view.register_waiter();
    let outcome = view
        .outcome_at_ack(id3, incr("n"), 0, 3)
        .unwrap()
        .expect("known");
    assert_eq!(outcome.after.unwrap().value, Bytes::from_static(b"11"));
    // Offset 4 was someone else's: an increment at 5 waits for the consumer.
    let (id5, mut waiting) = view.register_waiter();
    assert_eq!(view.outcome_at_ack(id5, incr("n"), 0, 5).unwrap(), None);
    // The consumer agrees with what was answered, and delivers the rest.
    let record = |offset, id| {
        let mut record = Record::put(0, offset, b"n", &Op::IncrBy(1).encode())
            .with_kind(Kind::Op(Op::IncrBy(1)));
        record.id = Some(id);
        Event::Record(record)
    };
    apply(
        &view,
        vec![
            record(1, id),
            put(0, 2, "n", "10"),
            record(3, id3),
            put(0, 4, "n", "100"),
            record(5, id5),
        ],
    );
    assert!(
        delivered.try_recv().is_err(),
        "answered already: nothing to deliver"
    );
    let last = waiting.try_recv().unwrap();
    assert_eq!(
        last.outcome.after.unwrap().value,
        Bytes::from_static(b"101")
    );
    assert_eq!(value(&view, "n").as_deref(), Some("101"));
}

/// When the consumer has applied a writer's record before its
/// acknowledgement comes back (usual when other instances write), the
/// writer learns it without the protocol's lock, which the consumer holds
/// for a whole batch: here the lock is held throughout, and the writer is
/// still answered, by the consumer's delivery.
#[test]
fn a_record_applied_before_its_acknowledgement_is_answered_without_the_protocol_lock() {
    use crate::op::Op;
    let view = std::sync::Arc::new(View::in_memory(vec![0]));
    apply(&view, vec![put(0, 0, "n", "5")]);
    let (id, mut delivered) = view.register_waiter();
    let mut record =
        Record::put(0, 1, b"n", &Op::IncrBy(1).encode()).with_kind(Kind::Op(Op::IncrBy(1)));
    record.id = Some(id);
    apply(&view, vec![Event::Record(record)]);

    let held = view.hazards.lock();
    let (answered, answer) = std::sync::mpsc::channel();
    let acknowledging = std::thread::spawn({
        let view = view.clone();
        move || {
            let acknowledged = Acknowledged::Op {
                key: Bytes::from_static(b"n"),
                op: Op::IncrBy(1),
            };
            let _ = answered.send(view.outcome_at_ack(id, acknowledged, 0, 1).unwrap());
        }
    });
    let at_ack = answer
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("answered while the protocol's lock is held");
    drop(held);
    acknowledging.join().unwrap();
    assert_eq!(at_ack, None, "the consumer answers an applied record");
    let outcome = delivered.try_recv().expect("the consumer delivered it");
    assert_eq!(
        outcome.outcome.after.unwrap().value,
        Bytes::from_static(b"6")
    );
}

// Regression: applying a batch took the fast path's tail and then the view's
// read lock, while acknowledging a write held the write lock and took the
// tail: a write and the consumer deadlocked (seen as a SET that never
// answered in Redis's suite).
#[test]
fn acknowledging_writes_while_the_consumer_applies_never_deadlocks() {
    let view = std::sync::Arc::new(View::in_memory(vec![0]));
    let (done, finished) = std::sync::mpsc::channel();
    let writer = {
        let view = view.clone();
        std::thread::spawn(move || {
            for offset in 0..20_000 {
                // Ahead of the consumer, so every one reaches the tail.
                view.acknowledge(b"k", Some(Bytes::from_static(b"v")), 0, 1_000_000 + offset);
            }
        })
    };
    let consumer = {
        let view = view.clone();
        std::thread::spawn(move || {
            for offset in 0..20_000 {
                let mut events = vec![put(0, offset, "k", "v")];
                view.apply(&mut events).unwrap();
            }
            done.send(()).unwrap();
        })
    };
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the consumer finished (no deadlock)");
    consumer.join().unwrap();
    writer.join().unwrap();
}

/// `(key, event name, value)` of each change of `batch`.
fn named(batch: &ChangeBatch) -> Vec<(String, &'static str, Option<String>)> {
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    batch
        .changes
        .iter()
        .map(|c| (text(&c.key), c.op.name(), c.value.as_ref().map(text)))
        .collect()
}

fn change(
    key: &str,
    name: &'static str,
    value: Option<&str>,
) -> (String, &'static str, Option<String>) {
    (key.into(), name, value.map(str::to_owned))
}

/// Each operation's change carries Redis 7's keyspace event name for the
/// command that writes it, with the key's resulting value; one that
/// changes nothing (a refused condition, an error, an empty `SETRANGE`, a
/// delete of an absent key) is no change.
#[test]
fn changes_are_named_as_redis_names_the_keyspace_event() {
    use crate::op::{Condition, Op};
    let bytes = |s: &'static str| Bytes::from_static(s.as_bytes());
    on_both_backends(vec![0], |view| {
        let (mut rx, _) = view.subscribe_changes();
        apply(
            view,
            vec![
                put(0, 0, "s", "a"),
                op(0, 1, "n", Op::IncrBy(2)),
                op(0, 2, "n", Op::IncrBy(-1)),
                op(0, 3, "f", Op::IncrByFloat(0.5)),
                op(
                    0,
                    4,
                    "s",
                    Op::Append {
                        suffix: bytes("b"),
                        max_len: 100,
                    },
                ),
                op(
                    0,
                    5,
                    "s",
                    Op::SetRange {
                        offset: 0,
                        bytes: bytes("X"),
                        max_len: 100,
                    },
                ),
                op(
                    0,
                    6,
                    "bits",
                    Op::SetBit {
                        offset: 1,
                        bit: true,
                        max_len: 100,
                    },
                ),
                // SET NX on an existing key: refused.
                op(
                    0,
                    7,
                    "s",
                    Op::Set {
                        value: bytes("c"),
                        when: Condition::Absent,
                    },
                ),
                op(
                    0,
                    8,
                    "s",
                    Op::Set {
                        value: bytes("d"),
                        when: Condition::Present,
                    },
                ),
                op(
                    0,
                    9,
                    "n",
                    Op::Delete {
                        when: Condition::Present,
                    },
                ),
                op(
                    0,
                    10,
                    "gone",
                    Op::Delete {
                        when: Condition::Always,
                    },
                ),
                // Not an integer: an error.
                op(0, 11, "s", Op::IncrBy(1)),
                op(
                    0,
                    12,
                    "s",
                    Op::SetRange {
                        offset: 3,
                        bytes: Bytes::new(),
                        max_len: 100,
                    },
                ),
                del(0, 13, "f"),
            ],
        );
        let batch = rx.try_recv().unwrap();
        assert_eq!(
            named(&batch),
            vec![
                change("s", "set", Some("a")),
                change("n", "incrby", Some("2")),
                change("n", "incrby", Some("1")),
                change("f", "incrbyfloat", Some("0.5")),
                change("s", "append", Some("ab")),
                change("s", "setrange", Some("Xb")),
                change("bits", "setbit", Some("@")),
                change("s", "set", Some("d")),
                change("n", "del", None),
                change("f", "del", None),
            ]
        );
    });
}

/// A batch reports each key it changed, named after the step that did:
/// `RENAME` is `rename_from` then `rename_to`, `COPY` `copy_to`, `MSETNX`
/// a `set` per key, a transaction each command's own name; a batch whose
/// conditions fail changes and reports nothing.
#[test]
fn a_batch_names_each_key_it_changed() {
    use crate::op::{Batch, Condition, Op};
    let key = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let always = Condition::Always;
    let rename = |from: &str, to: &str| {
        Op::Batch(Batch {
            conditions: vec![(key(from), Condition::Present)],
            steps: vec![
                (
                    key(to),
                    Some(Op::CopyFrom {
                        source: key(from),
                        when: always,
                    }),
                ),
                (key(from), Some(Op::Delete { when: always })),
            ],
        })
    };
    let copy = |from: &str, to: &str, replace: bool| {
        let mut conditions = vec![(key(from), Condition::Present)];
        if !replace {
            conditions.push((key(to), Condition::Absent));
        }
        Op::Batch(Batch {
            conditions,
            steps: vec![(
                key(to),
                Some(Op::CopyFrom {
                    source: key(from),
                    when: always,
                }),
            )],
        })
    };
    let msetnx = Op::Batch(Batch {
        conditions: vec![
            (key("m1"), Condition::Absent),
            (key("m2"), Condition::Absent),
        ],
        steps: vec![
            (
                key("m1"),
                Some(Op::Set {
                    value: key("v1"),
                    when: always,
                }),
            ),
            (
                key("m2"),
                Some(Op::Set {
                    value: key("v2"),
                    when: always,
                }),
            ),
        ],
    });
    // EXEC after WATCH x: INCR x, INCR x, DEL c, APPEND y !, GET c, and a
    // SET NX y that its APPEND made fail.
    let exec = Op::Batch(Batch {
        conditions: vec![(key("x"), Condition::Absent)],
        steps: vec![
            (key("x"), Some(Op::IncrBy(1))),
            (key("x"), Some(Op::IncrBy(1))),
            (key("c"), Some(Op::Delete { when: always })),
            (
                key("y"),
                Some(Op::Append {
                    suffix: key("!"),
                    max_len: 100,
                }),
            ),
            (key("c"), None),
            (
                key("y"),
                Some(Op::Set {
                    value: key("no"),
                    when: Condition::Absent,
                }),
            ),
        ],
    });
    on_both_backends(vec![0], |view| {
        apply(view, vec![put(0, 0, "a", "1"), put(0, 1, "c", "3")]);
        let (mut rx, _) = view.subscribe_changes();
        apply(
            view,
            vec![
                op(0, 2, "a", rename("a", "b")),
                // a is gone now: refused.
                op(0, 3, "a", rename("a", "z")),
                // c exists and no REPLACE: refused.
                op(0, 4, "b", copy("b", "c", false)),
                op(0, 5, "b", copy("b", "d", true)),
                op(0, 6, "m1", msetnx.clone()),
                // m1 exists now: refused.
                op(0, 7, "m1", msetnx.clone()),
                op(0, 8, "x", exec.clone()),
            ],
        );
        let batch = rx.try_recv().unwrap();
        assert_eq!(
            named(&batch),
            vec![
                change("a", "rename_from", None),
                change("b", "rename_to", Some("1")),
                change("d", "copy_to", Some("1")),
                change("m1", "set", Some("v1")),
                change("m2", "set", Some("v2")),
                change("x", "incrby", Some("2")),
                change("c", "del", None),
                change("y", "append", Some("!")),
            ]
        );
        assert!(rx.try_recv().is_err());
    });
}

/// A repair restating what an exact view holds changes nothing and is no
/// change; on an inexact view, one that corrects the value is reported as
/// the `set` or `del` it amounts to.
#[test]
fn a_repair_is_a_change_only_where_it_corrects_the_view() {
    use crate::op::Op;
    let repair = |o: i64, k: &str, value: Option<&str>, restates: i64, version: Option<i64>| {
        let record = match value {
            Some(value) => Record::put(0, o, k.as_bytes(), value.as_bytes()),
            None => Record::tombstone(0, o, k.as_bytes()),
        };
        Event::Record(record.with_kind(Kind::Repair { restates, version }))
    };
    on_both_backends(vec![0], |view| {
        let (mut rx, _) = view.subscribe_changes();
        apply(view, vec![op(0, 0, "n", Op::IncrBy(1))]);
        assert_eq!(
            named(&rx.try_recv().unwrap()),
            vec![change("n", "incrby", Some("1"))]
        );
        // Exact: the repair states what the view holds.
        apply(view, vec![repair(1, "n", Some("1"), 0, Some(0))]);
        assert!(rx.try_recv().is_err(), "an idle repair is no change");
        assert_eq!(value(view, "n").as_deref(), Some("1"));
    });

    // Inexact: the view started after offsets compaction removed.
    let view = View::in_memory(vec![10]);
    view.mark_skipped(0);
    let (mut rx, _) = view.subscribe_changes();
    apply(&view, vec![put(0, 2, "gone", "stale"), put(0, 3, "k", "v")]);
    rx.try_recv().unwrap();
    apply(
        &view,
        vec![
            repair(5, "fixed", Some("7"), 4, Some(4)),
            repair(6, "gone", None, 4, None),
            // What the view holds already: no change.
            repair(7, "k", Some("v"), 4, Some(3)),
        ],
    );
    assert_eq!(
        named(&rx.try_recv().unwrap()),
        vec![
            change("fixed", "set", Some("7")),
            change("gone", "del", None)
        ]
    );
    assert!(rx.try_recv().is_err());
}

#[test]
fn an_operation_acknowledged_before_an_earlier_own_record_is_answered_when_that_one_is() {
    use crate::op::Op;
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "n", "5")]);
    let incr = || Acknowledged::Op {
        key: Bytes::from_static(b"n"),
        op: Op::IncrBy(1),
    };
    // The writer of offset 2 runs first: offset 1 is not known yet.
    let (id2, mut waiting2) = view.register_waiter();
    assert_eq!(view.outcome_at_ack(id2, incr(), 0, 2).unwrap(), None);
    assert!(waiting2.try_recv().is_err());
    // Offset 1's writer answers itself and, in offset order, offset 2's.
    let (id1, _) = view.register_waiter();
    let first = view
        .outcome_at_ack(id1, incr(), 0, 1)
        .unwrap()
        .expect("known");
    assert_eq!(first.after.unwrap().value, Bytes::from_static(b"6"));
    let second = waiting2.try_recv().expect("answered by offset 1's writer");
    assert!(second.exact);
    assert_eq!(
        second.outcome.after.unwrap().value,
        Bytes::from_static(b"7")
    );
    assert_eq!(value(&view, "n").as_deref(), Some("7"));

    // A plain put acknowledged late unblocks an operation after it too.
    let (id4, mut waiting4) = view.register_waiter();
    assert_eq!(view.outcome_at_ack(id4, incr(), 0, 4).unwrap(), None);
    view.acknowledge(b"n", Some(Bytes::from_static(b"100")), 0, 3);
    let fourth = waiting4
        .try_recv()
        .expect("answered by the put's acknowledgement");
    assert_eq!(
        fourth.outcome.after.unwrap().value,
        Bytes::from_static(b"101")
    );
    assert_eq!(value(&view, "n").as_deref(), Some("101"));

    // An unknown offset (another instance's record at 6) still stops it:
    // offset 7 waits for the consumer.
    let (id7, mut waiting7) = view.register_waiter();
    assert_eq!(view.outcome_at_ack(id7, incr(), 0, 7).unwrap(), None);
    view.acknowledge(b"other", Some(Bytes::from_static(b"x")), 0, 5);
    assert!(waiting7.try_recv().is_err(), "offset 6 is unknown");
}

#[test]
fn a_batchs_other_keys_are_repaired_after_its_record_key() {
    use crate::op::{Batch, Condition, Op};
    let view = View::in_memory(vec![0]);
    let (hints, mut received) = mpsc::unbounded_channel();
    view.set_repair_hints(hints);
    let set = |value: &'static str| {
        Some(Op::Set {
            value: Bytes::from_static(value.as_bytes()),
            when: Condition::Always,
        })
    };
    let msetnx = Op::Batch(Batch {
        conditions: vec![
            (Bytes::from_static(b"m1"), Condition::Absent),
            (Bytes::from_static(b"m2"), Condition::Absent),
        ],
        steps: vec![
            (Bytes::from_static(b"m1"), set("v1")),
            (Bytes::from_static(b"m2"), set("v2")),
        ],
    });
    let record = Record::put(0, 0, b"m1", &msetnx.encode()).with_kind(Kind::Op(msetnx));
    apply(&view, vec![Event::Record(record)]);
    let mut reported = Vec::new();
    while let Ok(hint) = received.try_recv() {
        reported.push((hint.key, hint.after_record_key));
    }
    reported.sort();
    assert_eq!(
        reported,
        [
            (Bytes::from_static(b"m1"), false),
            (Bytes::from_static(b"m2"), true)
        ]
    );
}

#[test]
fn an_acknowledged_expiring_put_is_readable_with_its_estimated_expiry_and_stops_the_fast_path() {
    use crate::op::Op;
    let view = View::in_memory(vec![0]);
    apply(&view, vec![put(0, 0, "n", "5")]);
    let later = now_ms() + 60_000;
    view.acknowledge_expiring(b"n", Bytes::from_static(b"7"), later, 0, 1);
    let read = view.get(b"n").unwrap().expect("readable at once");
    assert_eq!(
        (read.value.as_ref(), read.expires_at),
        (&b"7"[..], Some(later))
    );
    // An estimate already past hides the key, as an expired table entry.
    view.acknowledge_expiring(b"gone", Bytes::from_static(b"x"), now_ms() - 1, 0, 2);
    assert_eq!(view.get(b"gone").unwrap(), None);
    // Its effect depends on the record's time: an operation after it in the
    // partition is left to the consumer.
    let (id, _) = view.register_waiter();
    let incr = Acknowledged::Op {
        key: Bytes::from_static(b"n"),
        op: Op::IncrBy(1),
    };
    assert_eq!(view.outcome_at_ack(id, incr, 0, 3).unwrap(), None);
}

/// Regression: after every applied batch the view reported every unsettled
/// key to the repairer again, so each batch cost time in proportion to all
/// keys awaiting a repair; INCR on 100,000 random keys fell to 31 per second
/// on one client. A batch now reports the keys it touched, once each.
#[test]
fn a_batch_reports_only_the_unsettled_keys_it_touched() {
    use crate::op::Op;
    let view = View::in_memory(vec![0]);
    let (hints, mut received) = mpsc::unbounded_channel();
    view.set_repair_hints(hints);
    let reported = |received: &mut mpsc::UnboundedReceiver<RepairHint>| {
        let mut keys = Vec::new();
        while let Ok(hint) = received.try_recv() {
            keys.push(String::from_utf8(hint.key.to_vec()).unwrap());
        }
        keys.sort();
        keys
    };
    let incrs: Vec<Event> = (0..100)
        .map(|n| op(0, n, &format!("k{n:03}"), Op::IncrBy(1)))
        .collect();
    apply(&view, incrs);
    assert_eq!(reported(&mut received).len(), 100, "each new hazard once");
    // Two more operations, one twice, and a plain put: only those two keys.
    apply(
        &view,
        vec![
            op(0, 100, "k007", Op::IncrBy(1)),
            op(0, 101, "k007", Op::IncrBy(1)),
            op(0, 102, "fresh", Op::IncrBy(1)),
            put(0, 103, "plain", "x"),
        ],
    );
    assert_eq!(reported(&mut received), ["fresh", "k007"]);
    assert_eq!(view.unsettled_keys(), 101, "the others are still unsettled");
    // A batch touching nothing hazardous reports nothing.
    apply(&view, vec![put(0, 104, "plain", "y")]);
    assert!(reported(&mut received).is_empty());
}

/// Regression: an operation the fast path answered at acknowledgement put
/// its result into the overlay as a string, so `TYPE` of a just-pushed list
/// answered `string` (and `LRANGE` WRONGTYPE) until the consumer applied it.
#[test]
fn a_collection_answered_at_acknowledgement_reads_with_its_type() {
    use crate::collection::{CollectionOp, Type};
    use crate::op::Op;
    let view = View::in_memory(vec![0]);
    let push = Acknowledged::Op {
        key: Bytes::from_static(b"l"),
        op: Op::Collection(CollectionOp::Push {
            left: true,
            values: vec![Bytes::from_static(b"a")],
            only_if_exists: false,
            max_len: 1 << 20,
        }),
    };
    let (id, _) = view.register_waiter();
    let outcome = view.outcome_at_ack(id, push, 0, 0).unwrap().expect("known");
    assert_eq!(outcome.after.as_ref().unwrap().ty, Type::List);
    // Not applied yet: the read comes from the overlay.
    let found = view.get(b"l").unwrap().unwrap();
    assert_eq!(found.ty, Type::List);
    let scanned = view.scan(b"", None, 10, usize::MAX).unwrap();
    assert_eq!(scanned[0].1.ty, Type::List);
}
