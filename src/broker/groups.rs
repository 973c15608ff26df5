//! Consumer-group eviction on the embedded broker: the new generation tansu
//! forgets.
//!
//! Kafka evicts a member that has not heartbeated for `session.timeout.ms`
//! and rebalances the group, so the survivors take its partitions. tansu
//! 0.6 does the first half: the next heartbeat of any member of the group
//! after the session ran out removes the silent member and answers
//! REBALANCE_IN_PROGRESS (`Inner<Formed>::heartbeat` and
//! `missed_heartbeat` in tansu-broker's `coordinator/group/administrator.rs`).
//! But the group stays formed at the same generation with its old
//! assignments, so the survivor's rejoin is handed back its old share and
//! the dead member's partitions are never consumed again.
//!
//! [`EvictingHeartbeat`] is tansu's Heartbeat route plus the second half.
//! A heartbeat at generation `G` answered REBALANCE_IN_PROGRESS while the
//! stored group is still at `G` means tansu has just evicted a member
//! (generations never go down, and tansu answers so only for an eviction
//! or a stale generation). kafkv then rewrites the stored group as forming
//! at `G + 1`, its leader kept only if still a member, through
//! `Storage::update_group`'s compare-and-swap; tansu's coordinator finds its
//! copy outdated on the group's next request and reloads it, and every
//! survivor rejoins into the new generation. No timers and no copy of the
//! members' heartbeats: the eviction happens when tansu sees it, at the
//! session timeout plus at most one heartbeat interval, as on Kafka.
//!
//! Not covered: an expiry first seen by a JoinGroup, SyncGroup or
//! LeaveGroup rather than a heartbeat (tansu then re-forms the group at the
//! same generation itself); heartbeats are far more frequent.

use rama::{Context, Service};
use tansu_broker::{
    Error, broker::group::heartbeat::HeartbeatService,
    coordinator::group::administrator::Controller,
};
use tansu_sans_io::{Body, ErrorCode, Frame};
use tansu_storage::{GroupDetail, GroupState, Storage as _, UpdateError};
use tracing::{info, warn};

use super::storage::KafkvStorage;

/// tansu's Heartbeat, then the new generation after an eviction.
#[derive(Clone)]
pub struct EvictingHeartbeat {
    pub groups: Controller<KafkvStorage>,
    pub storage: KafkvStorage,
}

impl Service<(), Frame> for EvictingHeartbeat {
    type Response = Frame;
    type Error = Error;

    async fn serve(&self, ctx: Context<()>, request: Frame) -> Result<Frame, Error> {
        let heartbeat = match &request.body {
            Body::HeartbeatRequest(heartbeat) => {
                Some((heartbeat.group_id.clone(), heartbeat.generation_id))
            }
            _ => None,
        };
        let (ctx, ()) = ctx.swap_state(self.groups.clone());
        let response = HeartbeatService.serve(ctx, request).await?;
        if let (Some((group, generation)), Body::HeartbeatResponse(answer)) =
            (heartbeat, &response.body)
            && answer.error_code == i16::from(ErrorCode::RebalanceInProgress)
        {
            // Before the answer goes out, so the rejoin it causes already
            // finds the new generation.
            match new_generation_after_eviction(&self.storage, &group, generation).await {
                Ok(true) => info!(
                    group,
                    generation = generation + 1,
                    "embedded broker: a member's session expired; the group rebalances"
                ),
                Ok(false) => {}
                Err(error) => warn!(
                    group,
                    %error,
                    "embedded broker: could not start a new group generation after an eviction"
                ),
            }
        }
        Ok(response)
    }
}

/// Moves `group` to forming at `seen + 1` if it is still formed or forming
/// at `seen` (tansu just evicted a member), and clears a forming group's
/// leader that is no longer a member. Whether it started a generation.
async fn new_generation_after_eviction(
    storage: &KafkvStorage,
    group: &str,
    seen: i32,
) -> Result<bool, String> {
    // tansu's storage has no working read of one group on SQLite
    // (`describe_groups` fails to parse its own detail column); an update
    // without a version is refused as outdated with the current detail and
    // its version, which is the read. The group answered a heartbeat just
    // now, so the row exists (an update of a missing row would insert it).
    let (mut next, mut version) = (GroupDetail::default(), None);
    for _ in 0..8 {
        match storage
            .update_group(group, next.clone(), version.clone())
            .await
        {
            Ok(_) => return Ok(true),
            Err(UpdateError::Outdated {
                current,
                version: current_version,
            }) => match next_generation(*current, seen) {
                Some(detail) => (next, version) = (detail, Some(current_version)),
                None => return Ok(false),
            },
            Err(error) => return Err(format!("{error:?}")),
        }
    }
    Err("the group kept changing".into())
}

/// The detail to store, or `None` when there is nothing to finish.
fn next_generation(mut detail: GroupDetail, seen: i32) -> Option<GroupDetail> {
    let (protocol_type, protocol_name, leader, forming) = match detail.state.clone() {
        GroupState::Formed {
            protocol_type,
            protocol_name,
            leader,
            ..
        } => (
            Some(protocol_type),
            Some(protocol_name),
            Some(leader),
            false,
        ),
        GroupState::Forming {
            protocol_type,
            protocol_name,
            leader,
        } => (protocol_type, protocol_name, leader, true),
    };
    let leader_gone = leader
        .as_ref()
        .is_some_and(|leader| !detail.members.contains_key(leader));
    if detail.generation_id != seen && !(forming && leader_gone) {
        return None;
    }
    if detail.generation_id == seen {
        detail.generation_id += 1;
    }
    detail.state = GroupState::Forming {
        protocol_type,
        protocol_name,
        leader: leader.filter(|leader| detail.members.contains_key(leader)),
    };
    Some(detail)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tansu_storage::GroupMember;

    use super::*;

    fn formed(generation: i32, leader: &str, members: &[&str]) -> GroupDetail {
        GroupDetail {
            generation_id: generation,
            members: members
                .iter()
                .map(|id| ((*id).to_owned(), GroupMember::default()))
                .collect(),
            state: GroupState::Formed {
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                leader: leader.into(),
                assignments: BTreeMap::from([("a".into(), Default::default())]),
            },
            ..GroupDetail::default()
        }
    }

    #[test]
    fn an_eviction_at_the_seen_generation_starts_the_next_one_without_the_old_assignments() {
        // The leader was evicted: the next generation forms without one.
        let next = next_generation(formed(3, "dead", &["alive"]), 3).expect("a new generation");
        assert_eq!(next.generation_id, 4);
        assert_eq!(
            next.state,
            GroupState::Forming {
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                leader: None,
            }
        );
        // A follower was evicted: the leader stays.
        let next = next_generation(formed(3, "alive", &["alive"]), 3).expect("a new generation");
        assert!(matches!(
            next.state,
            GroupState::Forming { leader: Some(ref leader), .. } if leader == "alive"
        ));
    }

    #[test]
    fn a_group_already_past_the_seen_generation_is_left_alone() {
        assert!(next_generation(formed(4, "alive", &["alive"]), 3).is_none());
        // Unless it is forming under a leader that is no longer a member.
        let mut forming = formed(4, "alive", &["alive"]);
        forming.state = GroupState::Forming {
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: Some("dead".into()),
        };
        let next = next_generation(forming, 3).expect("the leader cleared");
        assert_eq!(next.generation_id, 4, "no new generation");
        assert!(matches!(
            next.state,
            GroupState::Forming { leader: None, .. }
        ));
    }
}
