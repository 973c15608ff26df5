//! Consumer groups on the embedded broker: a member killed with SIGKILL
//! leaves its group after `session.timeout.ms`, its partitions going to the
//! survivor, as on Kafka, whether it was the group's leader or a follower.
//! tansu 0.6 evicted it but kept the group's generation and assignments, so
//! the survivor kept only its own half (src/broker/groups.rs). kafkv does
//! not use groups today; partition ownership will, and so do users who run
//! their own consumer groups against `kafkv broker`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::harness::{BrokerProcess, client, create_plain_topic, eventually, unique_topic};

const PARTITIONS: usize = 4;
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// What the dead member's partitions get to come back: the session timeout
/// plus a rebalance, generously.
const EVICTION_BOUND: Duration = Duration::from_secs(6 + 15);
const MEMBER_ENV: &str = "KAFKV_TEST_GROUP_MEMBER";

fn member(brokers: &str, group: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", group)
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// The group member run in a child process (by the tests below), so that
/// it can be killed with SIGKILL: it polls until killed, and prints
/// `assigned <n>` each time its number of partitions changes.
#[test]
#[ignore = "a helper the group tests run as a child process"]
fn group_member_process() {
    let Ok(spec) = std::env::var(MEMBER_ENV) else {
        return;
    };
    let [brokers, group, topic]: [&str; 3] = spec
        .split('|')
        .collect::<Vec<_>>()
        .try_into()
        .expect("brokers|group|topic");
    let consumer = member(brokers, group, topic);
    let mut reported = None;
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let now = assigned(&consumer);
        if reported != Some(now) {
            reported = Some(now);
            println!("assigned {now}");
        }
    }
}

fn assigned(consumer: &BaseConsumer) -> usize {
    consumer.assignment().map_or(0, |a| a.count())
}

/// A member in a child process, and what it last said it owns.
struct Child {
    process: std::process::Child,
    owns: Arc<std::sync::atomic::AtomicUsize>,
}

fn spawn_member(brokers: &str, group: &str, topic: &str) -> Child {
    use std::io::BufRead;
    let mut process = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "groups::group_member_process",
            "--ignored",
            "--nocapture",
        ])
        .env(MEMBER_ENV, format!("{brokers}|{group}|{topic}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let owns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stdout = process.stdout.take().expect("piped");
    {
        let owns = owns.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(n) = line.strip_prefix("assigned ") {
                    owns.store(n.trim().parse().unwrap_or(0), Ordering::Relaxed);
                }
            }
        });
    }
    Child { process, owns }
}

/// Two members share the topic; the one in a child process (the group's
/// leader if `dead_leads`, since the first to join leads) is SIGKILLed.
/// How long until the survivor owns every partition, if within the bound.
async fn survivor_takes_over_after(dead_leads: bool) -> Option<Duration> {
    let broker = BrokerProcess::start().await;
    let brokers = broker.address();
    let topic = unique_topic("group");
    let group = unique_topic("group-id");
    create_plain_topic(&brokers, &topic, PARTITIONS as i32).await;

    let mut dead = None;
    if dead_leads {
        let child = spawn_member(&brokers, &group, &topic);
        let owns = child.owns.clone();
        eventually("the first member owns every partition", || async {
            owns.load(Ordering::Relaxed) == PARTITIONS
        })
        .await;
        dead = Some(child);
    }
    // The survivor polls on a thread of its own, as an application would.
    let survivor = Arc::new(member(&brokers, &group, &topic));
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (survivor, stop) = (survivor.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = survivor.poll(Duration::from_millis(100));
            }
        })
    };
    let mut dead = match dead {
        Some(dead) => dead,
        None => {
            eventually("the survivor owns every partition alone", || async {
                assigned(&survivor) == PARTITIONS
            })
            .await;
            spawn_member(&brokers, &group, &topic)
        }
    };
    let owns = dead.owns.clone();
    eventually("the two members share the partitions", || async {
        assigned(&survivor) == PARTITIONS / 2 && owns.load(Ordering::Relaxed) == PARTITIONS / 2
    })
    .await;

    dead.process.kill().unwrap(); // SIGKILL: no LeaveGroup, no more heartbeats.
    dead.process.wait().unwrap();
    let killed = Instant::now();
    let mut took_over = None;
    while killed.elapsed() < EVICTION_BOUND {
        if assigned(&survivor) == PARTITIONS {
            took_over = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    took_over
}

fn assert_evicted_after_the_session(took_over: Option<Duration>) {
    let took_over = took_over.unwrap_or_else(|| {
        panic!("the survivor did not own every partition within {EVICTION_BOUND:?} of the kill")
    });
    println!("the survivor owned every partition {took_over:?} after the kill");
    // Not before the session ran out: a member that is only slow keeps
    // its partitions.
    assert!(
        took_over >= SESSION_TIMEOUT - Duration::from_millis(500),
        "evicted after {took_over:?}, before the {SESSION_TIMEOUT:?} session ran out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_with_sigkill_leaves_its_partitions_to_the_survivor() {
    assert_evicted_after_the_session(survivor_takes_over_after(false).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_with_sigkill_leaves_its_partitions_to_the_survivor() {
    assert_evicted_after_the_session(survivor_takes_over_after(true).await);
}
