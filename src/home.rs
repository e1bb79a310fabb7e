//! Where shared connections live.
//!
//! actix-web serves each HTTP worker on a single-threaded runtime of its own, which ends when
//! that worker stops (at shutdown, once its own requests are done). A client shared by every
//! worker (the Redis connection, an upstream provider's connection pool) spawns its
//! connection tasks and registers its sockets in whatever runtime polls it when it connects:
//! left to chance, one worker's. When that worker stops first, every other worker's request
//! on the shared connection is cut off (a graceful shutdown that fails the requests it waits
//! for), and meanwhile all of that connection's I/O waits its turn on one worker's thread.
//!
//! [`Home`] is the runtime Tether was built on, which lives as long as the process; shared
//! clients run their calls through [`Home::run`], so what they spawn lands there.
//!
//! Handing every request and reply to the home runtime and back costs a thread wake-up each
//! way, so an HTTP worker that calls out often keeps a connection of its own instead
//! ([`PerWorker`]: its own connection to a standalone Redis, its own pool toward upstream
//! providers), which runs on that worker and ends with it; background tasks on the home
//! runtime use the shared one.

use std::future::Future;

use tokio::runtime::Handle;

#[derive(Debug, Clone, Default)]
pub struct Home(Option<Handle>);

impl Home {
    /// The runtime this is called from (none outside one: calls then run where polled).
    pub fn here() -> Self {
        Self(Handle::try_current().ok())
    }

    /// Runs `task` on the home runtime in the background (where polled, outside one).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.0 {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Polls `call` inside the home runtime's context: tasks it spawns and sockets it opens
    /// belong to that runtime, while the caller's task awaits the result where it is.
    pub async fn run<F: Future>(&self, call: F) -> F::Output {
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(|cx| {
            let _inside = self.0.as_ref().map(Handle::enter);
            call.as_mut().poll(cx)
        })
        .await
    }
}

/// One value per HTTP worker: made on first use on a single-threaded runtime's thread, kept
/// for that runtime's life, so what it spawns and the sockets it opens stay on the worker
/// (no hand-off to another thread per call). Outside a single-threaded runtime (Tether's
/// main runtime, its background tasks) there is none and callers use their shared value.
///
/// A value is let go when its runtime shuts down (a new runtime on the same thread gets a new
/// one), when the `PerWorker` that made it is dropped, and when it was made under an older
/// `generation` than the caller's (how a failed connection retires every worker's).
pub struct PerWorker<T> {
    /// Alive while this is: values of a dropped `PerWorker` are let go.
    owner: std::sync::Arc<()>,
    _values: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for PerWorker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerWorker").finish_non_exhaustive()
    }
}

impl<T> Default for PerWorker<T> {
    fn default() -> Self {
        Self { owner: std::sync::Arc::new(()), _values: std::marker::PhantomData }
    }
}

struct Slot {
    owner: std::sync::Weak<()>,
    generation: u64,
    /// Cleared when the runtime the value runs on shuts down.
    runtime_alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
    value: Box<dyn std::any::Any>,
}

impl Slot {
    fn usable(&self) -> bool {
        self.owner.strong_count() > 0 && self.runtime_alive.load(std::sync::atomic::Ordering::Acquire)
    }
}

thread_local! {
    static SLOTS: std::cell::RefCell<Vec<Slot>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Clears its flag when dropped: spawned as a task that never ends, it is dropped with the
/// runtime that holds it.
struct RuntimeAlive(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for RuntimeAlive {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl<T: Clone + 'static> PerWorker<T> {
    /// This worker's value, made by `make` the first time (or after the value was let go);
    /// `None` outside a single-threaded runtime or when `make` gives none.
    pub fn get(&self, generation: u64, make: impl FnOnce() -> Option<T>) -> Option<T> {
        let handle = Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let owner = std::sync::Arc::as_ptr(&self.owner);
        SLOTS.with_borrow_mut(|slots| {
            // Pointer comparisons: no reference count is touched on the hot path.
            let found = slots.iter().find(|s| s.owner.as_ptr() == owner && s.generation == generation && s.usable());
            if let Some(value) = found.and_then(|s| s.value.downcast_ref::<T>()) {
                return Some(value.clone());
            }
            slots.retain(|s| s.usable() && !(s.owner.as_ptr() == owner && s.generation != generation));
            let value = make()?;
            let owner = std::sync::Arc::downgrade(&self.owner);
            let runtime_alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
            let guard = RuntimeAlive(runtime_alive.clone());
            drop(handle.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }));
            slots.push(Slot { owner, generation, runtime_alive, value: Box::new(value.clone()) });
            Some(value)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::PerWorker;

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_worker_keeps_its_value_for_its_runtime_and_generation() {
        let made = AtomicUsize::new(0);
        let make = || Some(made.fetch_add(1, Ordering::SeqCst));
        let workers = PerWorker::<usize>::default();
        let runtime = current_thread();
        runtime.block_on(async {
            assert_eq!(workers.get(0, make), Some(0));
            assert_eq!(workers.get(0, make), Some(0), "kept");
            assert_eq!(workers.get(1, make), Some(1), "a newer generation retires it");
            assert_eq!(workers.get(1, make), Some(1));
        });
        // Another thread's runtime has its own.
        std::thread::scope(|s| {
            s.spawn(|| current_thread().block_on(async { assert_eq!(workers.get(1, make), Some(2)) }));
        });
        drop(runtime);
        current_thread().block_on(async {
            assert_eq!(workers.get(1, make), Some(3), "a new runtime on this thread gets a new one");
        });
    }

    #[test]
    fn there_is_none_outside_a_single_threaded_runtime_or_for_another_owner() {
        let workers = PerWorker::<u8>::default();
        assert_eq!(workers.get(0, || Some(1)), None, "outside any runtime");
        let shared = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        shared.block_on(async { assert_eq!(workers.get(0, || Some(1)), None, "on a shared runtime") });
        current_thread().block_on(async {
            assert_eq!(workers.get(0, || Some(1)), Some(1));
            let other = PerWorker::<u8>::default();
            assert_eq!(other.get(0, || Some(2)), Some(2), "each owner has its own");
            assert_eq!(workers.get(0, || None), Some(1));
            assert_eq!(PerWorker::<u8>::default().get(0, || None), None, "make gave none");
        });
    }
}
