//! A call as the live state holds it, and every change the events make to
//! it as a pure transition (no I/O): the component reads a call, applies a
//! transition to a copy and writes it back with a compare-and-set on its
//! `version`, so two devices racing to answer resolve to exactly one, on
//! one node or many.

use serde::{Deserialize, Serialize};

/// Audio only, or with video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Invitations out, nobody has answered yet.
    Ringing,
    /// At least one invitee answered.
    Active,
    /// Over; the state forgets it when it is written in this phase.
    Ended,
}

/// Where one invitee is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    /// Their devices ring.
    Pending,
    /// One of their devices answered (and may have left since).
    Accepted,
    Declined,
    /// The ringing stopped before they answered (timeout, or the call
    /// ended): they get a missed-call notification.
    Missed,
}

/// An invited user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitee {
    pub user: String,
    pub answer: Answer,
}

/// A device in the call (the caller's from the start, then each device
/// that answered), in the order they joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub user: String,
    /// The device: its socket id on the calls namespace.
    pub device: String,
    /// Join order within the call (the caller's device is 0): of two
    /// devices, the one that joined later is the polite peer.
    pub joined: u32,
}

/// Why a call ended (`call:ended`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The caller left before anyone answered.
    Cancelled,
    /// Every invitee declined.
    Declined,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// Fewer than two participants remain after a hangup.
    Hangup,
    /// Fewer than two participants remain after a device disconnected.
    Disconnected,
}

/// How a device leaves a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    Hangup,
    Disconnect,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub caller: String,
    pub kind: Kind,
    /// Unix milliseconds.
    pub created_at: i64,
    pub phase: Phase,
    pub invitees: Vec<Invitee>,
    pub participants: Vec<Participant>,
    /// The `joined` of the next device to join.
    pub next_joined: u32,
    /// Why it ended, once it has.
    pub ended: Option<EndReason>,
    /// Bumped by every write; the compare-and-set compares it.
    pub version: u64,
}

/// Why a transition does not apply; each maps to an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The user is not invited to this call.
    NotInvited,
    /// Another device of the user answered first.
    AlreadyAnswered,
    /// The user declined, or the ringing stopped for them.
    NotRinging,
    /// The device is not a participant.
    NotParticipant,
    /// The call has `max_participants` devices.
    Full,
    /// The call is over.
    Ended,
}

impl Call {
    /// A new ringing call: `caller`'s `device` is its first participant,
    /// each of `invitees` rings.
    pub fn new(
        id: String,
        caller: &str,
        device: &str,
        kind: Kind,
        invitees: &[String],
        created_at: i64,
    ) -> Call {
        Call {
            id,
            caller: caller.to_owned(),
            kind,
            created_at,
            phase: Phase::Ringing,
            invitees: invitees
                .iter()
                .map(|user| Invitee {
                    user: user.clone(),
                    answer: Answer::Pending,
                })
                .collect(),
            participants: vec![Participant {
                user: caller.to_owned(),
                device: device.to_owned(),
                joined: 0,
            }],
            next_joined: 1,
            ended: None,
            version: 0,
        }
    }

    /// The participant on `device`, if any.
    pub fn participant(&self, device: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.device == device)
    }

    /// The invitee `user`, if invited.
    pub fn invitee(&self, user: &str) -> Option<&Invitee> {
        self.invitees.iter().find(|i| i.user == user)
    }

    /// Every user the call concerns: the caller and every invitee (their
    /// devices are told how it goes).
    pub fn involved(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.caller.as_str()).chain(self.invitees.iter().map(|i| i.user.as_str()))
    }

    /// Users the call keeps busy (counted against `max_calls_per_user`):
    /// those with a device in it (the caller, and each invitee who
    /// answered). A call that only rings for a user does not make them
    /// busy: like a phone's call waiting, a second incoming call rings too,
    /// so nobody can keep a user unreachable by ringing them.
    pub fn busy_users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.participants.iter().map(|p| p.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Users the call is live for: those with a device in it and those
    /// whose devices ring (a new device of theirs rings too).
    pub fn live_users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self
            .participants
            .iter()
            .map(|p| p.user.as_str())
            .chain(
                self.invitees
                    .iter()
                    .filter(|i| i.answer == Answer::Pending)
                    .map(|i| i.user.as_str()),
            )
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Whether `user` has a device in the call.
    pub fn has_user(&self, user: &str) -> bool {
        self.participants.iter().any(|p| p.user == user)
    }

    /// Users whose devices still ring.
    pub fn ringing(&self) -> Vec<String> {
        self.invitees
            .iter()
            .filter(|i| i.answer == Answer::Pending)
            .map(|i| i.user.clone())
            .collect()
    }

    fn live(&self) -> Result<(), Refusal> {
        if self.phase == Phase::Ended {
            Err(Refusal::Ended)
        } else {
            Ok(())
        }
    }

    /// `user` answers on `device`: the first device of an invitee wins.
    pub fn accept(
        &mut self,
        user: &str,
        device: &str,
        max_participants: usize,
    ) -> Result<(), Refusal> {
        self.live()?;
        let invitee = self
            .invitees
            .iter_mut()
            .find(|i| i.user == user)
            .ok_or(Refusal::NotInvited)?;
        match invitee.answer {
            Answer::Pending => {}
            Answer::Accepted => return Err(Refusal::AlreadyAnswered),
            Answer::Declined | Answer::Missed => return Err(Refusal::NotRinging),
        }
        if self.participants.len() >= max_participants {
            return Err(Refusal::Full);
        }
        invitee.answer = Answer::Accepted;
        self.participants.push(Participant {
            user: user.to_owned(),
            device: device.to_owned(),
            joined: self.next_joined,
        });
        self.next_joined += 1;
        self.phase = Phase::Active;
        Ok(())
    }

    /// `user` declines: their devices stop ringing. Returns who missed the
    /// call if this ended it (nobody: every invitee declined).
    pub fn decline(&mut self, user: &str) -> Result<Vec<String>, Refusal> {
        self.live()?;
        let invitee = self
            .invitees
            .iter_mut()
            .find(|i| i.user == user)
            .ok_or(Refusal::NotInvited)?;
        match invitee.answer {
            Answer::Pending => invitee.answer = Answer::Declined,
            Answer::Accepted => return Err(Refusal::AlreadyAnswered),
            Answer::Declined | Answer::Missed => return Err(Refusal::NotRinging),
        }
        Ok(self.settle(EndReason::Declined))
    }

    /// `device` leaves. Returns the users who missed the call if this
    /// ended it while some still rang.
    pub fn leave(&mut self, device: &str, how: Leave) -> Result<Vec<String>, Refusal> {
        self.live()?;
        let at = self
            .participants
            .iter()
            .position(|p| p.device == device)
            .ok_or(Refusal::NotParticipant)?;
        self.participants.remove(at);
        let reason = match how {
            Leave::Hangup => EndReason::Hangup,
            Leave::Disconnect => EndReason::Disconnected,
        };
        Ok(self.settle(reason))
    }

    /// The ring timeout passed: every invitee still ringing missed the
    /// call; it ends if nobody answered. Returns who missed it.
    pub fn ring_timeout(&mut self) -> Vec<String> {
        if self.phase == Phase::Ended {
            return Vec::new();
        }
        let missed = self.miss_pending();
        if self.phase == Phase::Ringing {
            self.end(EndReason::NoAnswer);
        }
        missed
    }

    /// Ends the call if what just happened leaves it with nothing to do,
    /// with `reason` (or `cancelled` when the caller left a ringing call);
    /// returns who missed it then.
    fn settle(&mut self, reason: EndReason) -> Vec<String> {
        let over = match self.phase {
            Phase::Ringing => {
                self.participants.is_empty()
                    || self.invitees.iter().all(|i| i.answer != Answer::Pending)
            }
            Phase::Active => self.participants.len() < 2,
            Phase::Ended => false,
        };
        if !over {
            return Vec::new();
        }
        let reason = if self.phase == Phase::Ringing && self.participants.is_empty() {
            EndReason::Cancelled
        } else {
            reason
        };
        let missed = self.miss_pending();
        self.end(reason);
        missed
    }

    fn miss_pending(&mut self) -> Vec<String> {
        let mut missed = Vec::new();
        for invitee in &mut self.invitees {
            if invitee.answer == Answer::Pending {
                invitee.answer = Answer::Missed;
                missed.push(invitee.user.clone());
            }
        }
        missed
    }

    fn end(&mut self, reason: EndReason) {
        self.phase = Phase::Ended;
        self.ended = Some(reason);
    }

    /// Whether `device` is the polite peer towards `peer` (perfect
    /// negotiation): the one of the two that joined later. False when
    /// either is not a participant.
    pub fn polite(&self, device: &str, peer: &str) -> bool {
        match (self.participant(device), self.participant(peer)) {
            (Some(me), Some(other)) => me.joined > other.joined,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(invitees: &[&str]) -> Call {
        let invitees: Vec<String> = invitees.iter().map(|s| s.to_string()).collect();
        Call::new("c1".into(), "alice", "a1", Kind::Video, &invitees, 1)
    }

    #[test]
    fn the_first_device_of_an_invitee_to_answer_wins() {
        let mut c = call(&["bob"]);
        assert_eq!(c.accept("bob", "b1", 8), Ok(()));
        assert_eq!(c.phase, Phase::Active);
        assert_eq!(c.accept("bob", "b2", 8), Err(Refusal::AlreadyAnswered));
        assert_eq!(c.participants.len(), 2);
        assert_eq!(c.decline("bob"), Err(Refusal::AlreadyAnswered));
    }

    #[test]
    fn only_invitees_answer_and_only_while_ringing() {
        let mut c = call(&["bob", "carol"]);
        assert_eq!(c.accept("mallory", "m1", 8), Err(Refusal::NotInvited));
        assert_eq!(c.decline("carol"), Ok(vec![]));
        assert_eq!(c.accept("carol", "c1", 8), Err(Refusal::NotRinging));
        assert_eq!(c.phase, Phase::Ringing, "bob still rings");
    }

    #[test]
    fn a_full_call_refuses_one_more_device() {
        let mut c = call(&["bob", "carol"]);
        assert_eq!(c.accept("bob", "b1", 2), Ok(()));
        assert_eq!(c.accept("carol", "c1", 2), Err(Refusal::Full));
        assert_eq!(c.invitee("carol").unwrap().answer, Answer::Pending);
    }

    #[test]
    fn every_invitee_declining_ends_the_call() {
        let mut c = call(&["bob", "carol"]);
        c.decline("bob").unwrap();
        assert_eq!(c.phase, Phase::Ringing);
        c.decline("carol").unwrap();
        assert_eq!(c.phase, Phase::Ended);
        assert_eq!(c.ended, Some(EndReason::Declined));
        assert_eq!(c.decline("carol"), Err(Refusal::Ended));
    }

    #[test]
    fn the_caller_hanging_up_while_ringing_cancels_and_the_ringing_ones_missed_it() {
        let mut c = call(&["bob", "carol"]);
        c.decline("carol").unwrap();
        assert_eq!(c.leave("a1", Leave::Hangup), Ok(vec!["bob".to_owned()]));
        assert_eq!(c.ended, Some(EndReason::Cancelled));
    }

    #[test]
    fn an_active_call_ends_when_fewer_than_two_remain() {
        let mut c = call(&["bob", "carol", "dave"]);
        c.accept("bob", "b1", 8).unwrap();
        c.accept("carol", "c1", 8).unwrap();
        assert_eq!(c.leave("a1", Leave::Hangup), Ok(vec![]));
        assert_eq!(c.phase, Phase::Active, "bob and carol go on");
        assert_eq!(c.leave("x", Leave::Hangup), Err(Refusal::NotParticipant));
        assert_eq!(
            c.leave("c1", Leave::Disconnect),
            Ok(vec!["dave".to_owned()]),
            "dave was still ringing"
        );
        assert_eq!(c.ended, Some(EndReason::Disconnected));
    }

    #[test]
    fn the_ring_timeout_misses_the_ringing_ones_and_ends_an_unanswered_call() {
        let mut c = call(&["bob", "carol"]);
        c.accept("bob", "b1", 8).unwrap();
        assert_eq!(c.ring_timeout(), vec!["carol".to_owned()]);
        assert_eq!(c.phase, Phase::Active, "alice and bob talk on");
        assert_eq!(c.accept("carol", "c1", 8), Err(Refusal::NotRinging));

        let mut c = call(&["bob"]);
        assert_eq!(c.ring_timeout(), vec!["bob".to_owned()]);
        assert_eq!(c.ended, Some(EndReason::NoAnswer));
        assert_eq!(c.ring_timeout(), Vec::<String>::new(), "only once");
    }

    #[test]
    fn of_two_devices_the_later_one_is_polite() {
        let mut c = call(&["bob", "carol"]);
        c.accept("bob", "b1", 8).unwrap();
        c.accept("carol", "c1", 8).unwrap();
        assert!(c.polite("b1", "a1") && !c.polite("a1", "b1"));
        assert!(c.polite("c1", "b1") && !c.polite("b1", "c1"));
        assert!(!c.polite("zz", "a1") && !c.polite("a1", "zz"));
    }

    #[test]
    fn busy_users_are_the_participants_and_live_users_the_ringing_too() {
        let mut c = call(&["bob", "carol", "dave"]);
        c.decline("dave").unwrap();
        c.accept("bob", "b1", 8).unwrap();
        assert_eq!(c.busy_users(), vec!["alice", "bob"], "carol only rings");
        assert_eq!(c.live_users(), vec!["alice", "bob", "carol"]);
        c.accept("carol", "c1", 8).unwrap();
        c.leave("a1", Leave::Hangup).unwrap();
        assert_eq!(c.busy_users(), vec!["bob", "carol"], "alice left");
        assert_eq!(c.live_users(), vec!["bob", "carol"]);
    }
}
