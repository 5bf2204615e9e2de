//! Single-flight: concurrent callers of one cold key in this process share one
//! run of the body.
//!
//! The first caller to miss becomes the *leader* and runs the body; callers that
//! miss while it runs become *waiters* and receive the leader's encoded value.
//! If the leader's future is dropped (cancelled) or its body returns a value
//! that is not cached (`Err`), the flight stays open without a leader: the
//! first waiter to notice takes over and the others keep waiting, now for it. An entry lives only while a body runs or callers wait:
//! the map holds no state for keys that are not in flight.

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
    /// The leader gave up (cancelled, or nothing cacheable); the next to claim leads.
    Abandoned,
}

/// One key in flight.
struct Flight {
    tx: watch::Sender<State>,
    has_leader: bool,
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
    /// Joins the flight of `key`, leading it if it has no leader.
    pub(crate) fn join<'a>(&'a self, key: &str) -> Role<'a> {
        let mut running = self.lock();
        match running.get_mut(key) {
            Some(flight) if flight.has_leader => Role::Waiter(Waiter {
                flights: self,
                key: key.to_owned(),
                rx: flight.tx.subscribe(),
            }),
            Some(flight) => Role::Leader(self.claim(flight, key)),
            None => {
                let (tx, _) = watch::channel(State::Running);
                let flight = running.entry(key.to_owned()).or_insert(Flight {
                    tx,
                    has_leader: false,
                });
                Role::Leader(self.claim(flight, key))
            }
        }
    }

    fn claim<'a>(&'a self, flight: &mut Flight, key: &str) -> Leader<'a> {
        flight.has_leader = true;
        flight.tx.send_replace(State::Running);
        Leader {
            flights: self,
            key: key.to_owned(),
            tx: flight.tx.clone(),
            published: false,
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
}

impl Leader<'_> {
    /// Hands the encoded value to every waiter. The flight ends when the
    /// leader is dropped, after it stored the value.
    pub(crate) fn publish(&mut self, bytes: Arc<[u8]>) {
        self.published = true;
        self.tx.send_replace(State::Done(bytes));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
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
            if let Ok(State::Done(bytes)) = state {
                return Outcome::Value(bytes);
            }
            // The leader gave up. While this waiter is subscribed the flight
            // stays in the map, so take it over unless another waiter did.
            let flights = waiter.flights;
            {
                let mut running = flights.lock();
                if let Some(flight) = running.get_mut(&waiter.key)
                    && flight.tx.subscribe().same_channel(&waiter.rx)
                {
                    if !flight.has_leader {
                        return Outcome::Lead(flights.claim(flight, &waiter.key));
                    }
                    continue; // another waiter leads now: wait for it
                }
            }
            // Not reachable while subscribed; recover by joining afresh.
            match flights.join(&waiter.key) {
                Role::Leader(leader) => return Outcome::Lead(leader),
                Role::Waiter(next) => waiter = next,
            }
        }
    }
}
