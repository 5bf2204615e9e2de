use std::future::Future;
use std::pin::Pin;

use redis_memo::cached;

// What `#[async_trait]` turns `async fn f(&self, id: u64) -> u64` into.
struct S;

impl S {
    #[cached(ttl = 60)]
    fn f<'life0, 'async_trait>(
        &'life0 self,
        id: u64,
    ) -> Pin<Box<dyn Future<Output = u64> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { id })
    }
}

fn main() {}
