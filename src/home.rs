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
//! clients run their calls through [`Home::run`], so what they spawn lands there. (A
//! connection that belongs to one worker alone, such as its own connection to a standalone
//! Redis, runs on that worker instead and ends with it: see `store::redis_conn`.)

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
