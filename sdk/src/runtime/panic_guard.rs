//! [`CatchPanic`]: runs a future and turns a panic while polling it into an error, so that a
//! device task can restart its device in place instead of needing a second supervising task.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The payload of a caught panic.
pub(crate) type Panic = Box<dyn Any + Send>;

/// A boxed future whose panics are caught (see [`catch_panic`]).
pub(crate) struct CatchPanic<F>(Pin<Box<F>>);

/// Polls `future` (boxed, so that a waiting caller holds a pointer, not the future) and
/// completes with `Err` if a poll panicked. The future is not polled again after a panic; it is
/// dropped with the `CatchPanic`, as tokio drops a task that panicked.
pub(crate) fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic(Box::pin(future))
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.0.as_mut();
        // Nothing observes the future's state after a panic but its drop.
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_completed_future_gives_its_output() {
        let output = catch_panic(async {
            tokio::task::yield_now().await;
            7
        })
        .await;
        assert_eq!(output.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_panic_after_an_await_becomes_an_error_with_its_message() {
        let fail = std::hint::black_box(true);
        let output = catch_panic(async move {
            tokio::task::yield_now().await;
            if fail {
                panic!("driver bug");
            }
            7
        })
        .await;
        let panic = output.expect_err("the future panicked");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"driver bug"));
    }
}
