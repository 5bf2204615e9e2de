//! Single-flight: concurrent callers of one cold key in this process share one
//! run of the body.
//!
//! The first caller to miss becomes the *leader* and runs the body; callers that
//! miss while it runs become *waiters* and receive the leader's encoded value.
//! If the leader's future is dropped (cancelled) or its body returns a value
//! that is not cached (`Err`), the flight stays open without a leader: the
//! first waiter to notice takes over and the others keep waiting, now for it.
//! An entry lives only while a body runs or callers wait: the map holds no
//! state for keys that are not in flight.
//!
//! A flight belongs to what its key held when its leader looked: the
//! placeholder it claimed or found, or the value it will replace (see
//! `store::placeholder`). A caller joins a flight only if it saw the same: one
//! that saw something else (the key was invalidated and claimed afresh since
//! the flight began) starts a new flight, which takes the key's place in the
//! map, so that no call waits for a body that began before the key last
//! changed. The flight it replaced runs on for the callers already waiting
//! for it. An invalidation in this process also takes the flights of its
//! keys out of the map ([`Flights::detach`]), for the callers whose read
//! failed and who saw nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// What the callers of one key see.
#[derive(Clone)]
enum State {
    /// A leader runs the body.
    Running,
    /// The leader's value, encoded.
    Done(Arc<[u8]>),
    /// The leader (a batch) found no value: the loader did not return this element.
    Absent,
    /// The leader gave up (cancelled, or nothing cacheable); the next to claim leads.
    Abandoned,
}

/// One key in flight.
struct Flight {
    tx: watch::Sender<State>,
    has_leader: bool,
    /// What the key held when the flight began (`None`: unknown, the read failed).
    seen: Option<Arc<[u8]>>,
}

type Running = HashMap<String, Flight>;

#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<Running>,
}

pub(crate) enum Role<'a> {
    Leader(Leader<'a>),
    Waiter(Waiter<'a>),
}

impl Flights {
    /// Joins the flight of `key` for a caller that saw the key hold `seen`
    /// (`None`: it could not read it). It waits for a flight that began from
    /// the same (any flight, when it saw nothing), and leads otherwise: a
    /// flight that began from something else is from before the key changed,
    /// and a new one takes its place.
    pub(crate) fn join<'a>(&'a self, key: &str, seen: Option<&Arc<[u8]>>) -> Role<'a> {
        let mut running = self.lock();
        if let Some(flight) = running.get_mut(key)
            && (seen.is_none() || flight.seen.as_ref() == seen)
        {
            if flight.has_leader {
                return Role::Waiter(Waiter {
                    flights: self,
                    key: key.to_owned(),
                    rx: flight.tx.subscribe(),
                });
            }
            return Role::Leader(self.claim(flight, key));
        }
        let (tx, _) = watch::channel(State::Running);
        let flight = Flight {
            tx,
            has_leader: false,
            seen: seen.cloned(),
        };
        // Replaces a flight from before the key changed, if any.
        running.insert(key.to_owned(), flight);
        let flight = running.get_mut(key).expect("just inserted");
        Role::Leader(self.claim(flight, key))
    }

    fn claim<'a>(&'a self, flight: &mut Flight, key: &str) -> Leader<'a> {
        flight.has_leader = true;
        flight.tx.send_replace(State::Running);
        Leader {
            flights: self,
            key: key.to_owned(),
            tx: flight.tx.clone(),
            published: false,
            seen: flight.seen.clone(),
            handed: false,
        }
    }

    /// Takes the flights of the keys `detach` picks out of the map: callers
    /// that join later start a flight of their own. Those running go on for
    /// the callers already waiting.
    pub(crate) fn detach(&self, detach: impl Fn(&str) -> bool) {
        self.lock().retain(|key, _| !detach(key));
    }

    /// Claims the flight of `key` for a run that starts later (a background
    /// refresh), unless the key is already in flight. The claim is taken
    /// over with [`adopt`](Self::adopt); until then callers that miss wait
    /// for it like for any leader.
    pub(crate) fn try_claim(&self, key: &str, seen: Arc<[u8]>) -> bool {
        let mut running = self.lock();
        if running.contains_key(key) {
            return false;
        }
        let (tx, _) = watch::channel(State::Running);
        running.insert(
            key.to_owned(),
            Flight {
                tx,
                has_leader: true,
                seen: Some(seen),
            },
        );
        true
    }

    /// Leads the flight of `key` that [`try_claim`](Self::try_claim)
    /// claimed, or a leader handed off ([`Leader::hand_off`]), begun from
    /// `seen`. `None` when there is no such flight any more. Dropping the
    /// leader without publishing hands the flight to its waiters, as usual.
    pub(crate) fn adopt(&self, key: &str, seen: &Arc<[u8]>) -> Option<Leader<'_>> {
        let running = self.lock();
        let flight = running.get(key).filter(|f| f.seen.as_ref() == Some(seen))?;
        Some(Leader {
            flights: self,
            key: key.to_owned(),
            tx: flight.tx.clone(),
            published: false,
            seen: flight.seen.clone(),
            handed: false,
        })
    }

    /// A leader of a run that no caller can join and that stores nothing
    /// (it saw nothing it could replace).
    pub(crate) fn detached_leader(&self, key: &str) -> Leader<'_> {
        let (tx, _) = watch::channel(State::Running);
        Leader {
            flights: self,
            key: key.to_owned(),
            tx,
            published: false,
            seen: None,
            handed: false,
        }
    }

    /// How many keys are in flight.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// How many callers wait for the flight of `key`.
    pub(crate) fn waiters(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, |f| f.tx.receiver_count())
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        // The map holds no invariant a panic could break mid-way.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The caller that runs the body. Dropping it without [`Leader::publish`]
/// leaves the flight to its waiters.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    tx: watch::Sender<State>,
    published: bool,
    seen: Option<Arc<[u8]>>,
    /// Handed off to a task that adopts the flight: dropping it does nothing.
    handed: bool,
}

impl Leader<'_> {
    /// What the key held when the flight began: what its value replaces.
    pub(crate) fn seen(&self) -> Option<&Arc<[u8]>> {
        self.seen.as_ref()
    }

    /// The flight now begins from `seen` (a leader that found the key
    /// changed while it waited for another process's value).
    pub(crate) fn rebase(&mut self, seen: Arc<[u8]>) {
        let mut running = self.flights.lock();
        if let Some(flight) = running.get_mut(&self.key)
            && flight.tx.same_channel(&self.tx)
        {
            flight.seen = Some(seen.clone());
        }
        self.seen = Some(seen);
    }

    /// Leaves the flight running, its waiters waiting, for a task that
    /// adopts it ([`Flights::adopt`]) to go on with.
    pub(crate) fn hand_off(mut self) {
        self.handed = true;
    }

    /// Whether, dropped now without a value, the flight would pass to a
    /// waiter, who would run the body from the same key state.
    pub(crate) fn hands_over(&self) -> bool {
        !self.published && self.tx.receiver_count() > 0
    }

    /// Hands the encoded value to every waiter. The flight ends when the
    /// leader is dropped, after it stored the value.
    pub(crate) fn publish(&mut self, bytes: Arc<[u8]>) {
        self.published = true;
        self.tx.send_replace(State::Done(bytes));
    }

    /// Tells every waiter that there is no value (a batch's loader did not
    /// return this element): they do not run the body again for it.
    pub(crate) fn publish_absent(&mut self) {
        self.published = true;
        self.tx.send_replace(State::Absent);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        let mut running = self.flights.lock();
        let Some(flight) = running.get_mut(&self.key) else {
            return;
        };
        if !flight.tx.same_channel(&self.tx) {
            return;
        }
        if self.published || self.tx.receiver_count() == 0 {
            running.remove(&self.key);
        } else {
            flight.has_leader = false;
            self.tx.send_replace(State::Abandoned);
        }
    }
}

pub(crate) struct Waiter<'a> {
    flights: &'a Flights,
    key: String,
    rx: watch::Receiver<State>,
}

impl Drop for Waiter<'_> {
    /// The last waiter of a flight without a leader closes it, so a cancelled
    /// crowd leaves no entry behind.
    fn drop(&mut self) {
        let mut running = self.flights.lock();
        if let Some(flight) = running.get(&self.key)
            && !flight.has_leader
            && flight.tx.receiver_count() == 1
            && flight.tx.subscribe().same_channel(&self.rx)
        {
            running.remove(&self.key);
        }
    }
}

/// How a wait ended.
pub(crate) enum Outcome<'a> {
    /// The value some leader produced, encoded.
    Value(Arc<[u8]>),
    /// The leader (a batch) found that there is no value.
    Absent,
    /// Every leader before gave up; this caller now leads.
    Lead(Leader<'a>),
}

impl<'a> Waiter<'a> {
    pub(crate) async fn outcome(self) -> Outcome<'a> {
        let mut waiter = self;
        loop {
            let state = waiter
                .rx
                .wait_for(|s| !matches!(s, State::Running))
                .await
                .map(|s| s.clone());
            match state {
                Ok(State::Done(bytes)) => return Outcome::Value(bytes),
                Ok(State::Absent) => return Outcome::Absent,
                _ => {}
            }
            match waiter.after_give_up() {
                Ok(outcome) => return outcome,
                Err(next) => waiter = next,
            }
        }
    }

    /// After seeing the leader give up: lead the flight unless another waiter
    /// does, or take the value such a waiter already published; `Err` means
    /// wait again (for the waiter that leads now).
    fn after_give_up(self) -> Result<Outcome<'a>, Waiter<'a>> {
        let flights = self.flights;
        {
            let mut running = flights.lock();
            if let Some(flight) = running.get_mut(&self.key)
                && flight.tx.subscribe().same_channel(&self.rx)
            {
                if !flight.has_leader {
                    return Ok(Outcome::Lead(flights.claim(flight, &self.key)));
                }
                return Err(self);
            }
        }
        // The flight is over: a waiter took it over, published its value and
        // ended it between this waiter's wake-up and the lock above.
        match &*self.rx.borrow() {
            State::Done(bytes) => return Ok(Outcome::Value(bytes.clone())),
            State::Absent => return Ok(Outcome::Absent),
            _ => {}
        }
        match flights.join(&self.key, None) {
            Role::Leader(leader) => Ok(Outcome::Lead(leader)),
            Role::Waiter(next) => Err(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_that_finds_the_flight_over_takes_the_published_value() {
        let flights = Flights::default();
        let seen: Arc<[u8]> = Arc::from(&b"placeholder"[..]);
        let Role::Leader(first) = flights.join("k", Some(&seen)) else {
            panic!("the first caller leads");
        };
        let (Role::Waiter(late), Role::Waiter(other)) =
            (flights.join("k", Some(&seen)), flights.join("k", None))
        else {
            panic!("the next callers wait");
        };
        drop(first); // gives up without a value
        // `other` takes over, publishes and ends the flight before `late`,
        // woken by the give-up, looks at the flight.
        let Ok(Outcome::Lead(mut second)) = other.after_give_up() else {
            panic!("a waiter takes over");
        };
        second.publish(Arc::from(&b"value"[..]));
        drop(second);
        assert_eq!(flights.len(), 0);
        match late.after_give_up() {
            Ok(Outcome::Value(bytes)) => assert_eq!(&bytes[..], b"value"),
            _ => panic!("the late waiter must take the value, not run the body again"),
        }
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_caller_that_saw_the_key_change_starts_a_flight_of_its_own() {
        let flights = Flights::default();
        let (old, new): (Arc<[u8]>, Arc<[u8]>) = (Arc::from(&b"old"[..]), Arc::from(&b"new"[..]));
        let Role::Leader(mut first) = flights.join("k", Some(&old)) else {
            panic!("the first caller leads");
        };
        let Role::Waiter(early) = flights.join("k", Some(&old)) else {
            panic!("a caller that saw the same waits");
        };
        let Role::Leader(mut second) = flights.join("k", Some(&new)) else {
            panic!("a caller that saw the key change leads a flight of its own");
        };
        assert_eq!(flights.len(), 1);
        let Role::Waiter(late) = flights.join("k", Some(&new)) else {
            panic!("callers that saw the new state wait for the new flight");
        };
        second.publish(Arc::from(&b"second"[..]));
        first.publish(Arc::from(&b"first"[..]));
        drop(first); // leaves the new flight in place
        assert_eq!(flights.len(), 1);
        drop(second);
        assert_eq!(flights.len(), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            match early.outcome().await {
                Outcome::Value(bytes) => assert_eq!(&bytes[..], b"first"),
                _ => panic!("the early waiter gets the first value"),
            }
            match late.outcome().await {
                Outcome::Value(bytes) => assert_eq!(&bytes[..], b"second"),
                _ => panic!("the late waiter gets the second value"),
            }
        });
    }

    #[test]
    fn a_detached_flight_is_not_joined() {
        let flights = Flights::default();
        let seen: Arc<[u8]> = Arc::from(&b"p"[..]);
        let Role::Leader(first) = flights.join("a:1", Some(&seen)) else {
            panic!("leads");
        };
        flights.detach(|key| key.starts_with("a:"));
        assert_eq!(flights.len(), 0);
        let Role::Leader(second) = flights.join("a:1", None) else {
            panic!("a caller after the invalidation leads");
        };
        drop(first);
        assert_eq!(
            flights.len(),
            1,
            "the old leader leaves the new flight alone"
        );
        drop(second);
        assert_eq!(flights.len(), 0);
    }
}
