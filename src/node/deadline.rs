//! Coarse deadlines for waiting requests: one per executor thread, shared by every request
//! waiting on it, instead of one glommio timer per request (each of which allocates, reads
//! the clock, enters the reactor's timer tree and re-arms the ring's timeout as the earliest
//! deadline changes).
//!
//! A request's deadline is a slot in a per-thread table and a place in a queue ordered by
//! deadline; one ticker task (running only while some deadline is queued) wakes every
//! [`TICK`], reads the clock once and fires the slots whose deadline passed. A deadline never
//! fires early: a wait of `d` ends between `d` and `d + TICK` after it began (later only when
//! the executor itself runs late). Fine for request timeouts (seconds); not a precise timer.
//!
//! Invariants: a slot is freed (its generation bumped) when its [`Deadline`] is dropped; a
//! queued entry whose generation no longer matches its slot is stale and skipped. Bounded:
//! slots by the requests waiting at once (bounded by the server's in-flight limits), the
//! queue by twice the live slots plus a constant (stale entries are swept when it grows past
//! that). Thread-local, so no locks; must be used inside a glommio executor.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the ticker checks the queue, and so how late a deadline may fire: small beside
/// request timeouts (seconds), large enough that the ticker's wake-ups cost nothing next to
/// the requests.
pub const TICK: Duration = Duration::from_millis(10);

/// Queue entries allowed beyond twice the live slots before stale ones are swept.
const QUEUE_SLACK: usize = 1_024;

#[derive(Debug)]
enum State {
    Free,
    Waiting(Option<Waker>),
    Fired,
}

#[derive(Debug)]
struct Slot {
    generation: u64,
    state: State,
}

#[derive(Debug, Default)]
struct Wheel {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// (deadline, slot, generation), deadline order.
    queue: VecDeque<(Instant, usize, u64)>,
    ticker: bool,
}

thread_local! {
    static WHEEL: RefCell<Wheel> = RefCell::new(Wheel::default());
}

impl Wheel {
    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes a slot due at `now + after` (never, when that is past the clock's range);
    /// returns it and whether a ticker must start.
    fn register(&mut self, now: Instant, after: Duration) -> (usize, u64, bool) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    state: State::Free,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[idx];
        slot.state = State::Waiting(None);
        let generation = slot.generation;
        let Some(due) = now.checked_add(after) else {
            return (idx, generation, false);
        };
        if self.queue.back().is_none_or(|b| b.0 <= due) {
            self.queue.push_back((due, idx, generation));
        } else {
            // A shorter wait after a longer one: keep the queue in deadline order.
            let at = self.queue.partition_point(|e| e.0 <= due);
            self.queue.insert(at, (due, idx, generation));
        }
        if self.queue.len() > 2 * self.live() + QUEUE_SLACK {
            let slots = &self.slots;
            self.queue.retain(|&(_, i, g)| slots[i].generation == g);
        }
        let start = !self.ticker;
        self.ticker = true;
        (idx, generation, start)
    }

    fn release(&mut self, idx: usize, generation: u64) {
        if let Some(slot) = self.slots.get_mut(idx) {
            if slot.generation == generation {
                slot.generation += 1;
                slot.state = State::Free;
                self.free.push(idx);
            }
        }
    }

    /// Fires every slot due by `now`; returns whether the ticker should keep running.
    fn tick(&mut self, now: Instant) -> bool {
        while let Some(&(due, idx, generation)) = self.queue.front() {
            if due > now {
                break;
            }
            self.queue.pop_front();
            let Some(slot) = self.slots.get_mut(idx) else {
                continue;
            };
            if slot.generation != generation {
                continue;
            }
            if let State::Waiting(Some(w)) = std::mem::replace(&mut slot.state, State::Fired) {
                w.wake();
            }
        }
        if self.queue.is_empty() {
            self.ticker = false;
        }
        self.ticker
    }
}

/// A future that completes once its deadline has passed (see the module's precision).
#[derive(Debug)]
pub struct Deadline {
    idx: usize,
    generation: u64,
}

impl Deadline {
    /// A deadline `after` from now, on this thread's wheel.
    pub fn after(after: Duration) -> Deadline {
        let (idx, generation, start) =
            WHEEL.with(|w| w.borrow_mut().register(Instant::now(), after));
        if start {
            glommio::spawn_local(ticker()).detach();
        }
        Deadline { idx, generation }
    }
}

async fn ticker() {
    loop {
        glommio::timer::sleep(TICK).await;
        let now = Instant::now();
        if !WHEEL.with(|w| w.borrow_mut().tick(now)) {
            return;
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        WHEEL.with(|w| {
            let mut w = w.borrow_mut();
            match w.slots.get_mut(self.idx) {
                Some(slot) if slot.generation == self.generation => match &mut slot.state {
                    State::Fired | State::Free => Poll::Ready(()),
                    State::Waiting(waker) => {
                        if waker.as_ref().is_none_or(|old| !old.will_wake(cx.waker())) {
                            *waker = Some(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                },
                _ => Poll::Ready(()),
            }
        })
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // `try_with`: a deadline dropped while the thread's locals are torn down has nothing
        // left to release.
        let _ = WHEEL.try_with(|w| {
            if let Ok(mut w) = w.try_borrow_mut() {
                w.release(self.idx, self.generation);
            }
        });
    }
}

/// Runs `fut` for at most `after` (coarsely, see the module): `Some` of its output, or `None`
/// when the deadline passed first.
pub async fn within<T>(after: Duration, fut: impl Future<Output = T>) -> Option<T> {
    let deadline = Deadline::after(after);
    futures_lite::future::or(async { Some(fut.await) }, async {
        deadline.await;
        None
    })
    .await
}

/// Queued entries and live slots on this thread (tests).
#[cfg(test)]
fn occupancy() -> (usize, usize) {
    WHEEL.with(|w| {
        let w = w.borrow();
        (w.queue.len(), w.live())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("executor")
            .run(f)
    }

    #[test]
    fn a_deadline_fires_after_its_wait_and_not_before() {
        let waited = run(async {
            let t = Instant::now();
            let never = std::future::pending::<()>();
            let r = within(Duration::from_millis(30), never).await;
            let elapsed = t.elapsed();
            // A wait past the clock's range never fires and does not panic.
            assert_eq!(within(Duration::MAX, async { 7 }).await, Some(7));
            (r, elapsed, occupancy())
        });
        assert_eq!(waited.0, None);
        assert!(waited.1 >= Duration::from_millis(30), "{:?}", waited.1);
        assert!(waited.1 < Duration::from_secs(2), "{:?}", waited.1);
        assert_eq!(waited.2, (0, 0), "nothing left queued or held");
    }

    #[test]
    fn answered_waits_free_their_slots_and_the_queue_stays_bounded() {
        let (shorter, occupancy_after, fired_in_order) = run(async {
            for i in 0..20_000u32 {
                let r = within(Duration::from_secs(60), async { i }).await;
                assert_eq!(r, Some(i));
            }
            let after = occupancy();
            // A shorter wait registered behind a longer one still fires first.
            let long = glommio::spawn_local(within(
                Duration::from_millis(400),
                std::future::pending::<()>(),
            ));
            let t = Instant::now();
            let short = within(Duration::from_millis(20), std::future::pending::<()>()).await;
            let shorter = t.elapsed();
            let long = long.await;
            (shorter, after, short.is_none() && long.is_none())
        });
        assert!(shorter < Duration::from_millis(300), "{shorter:?}");
        assert!(fired_in_order);
        assert_eq!(occupancy_after.1, 0, "no live slot left");
        assert!(
            occupancy_after.0 <= QUEUE_SLACK + 1,
            "stale entries swept: {occupancy_after:?}"
        );
    }
}
