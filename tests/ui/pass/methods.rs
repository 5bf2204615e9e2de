//! Methods: `&self`, `&mut self`, `self.cache`, associated functions, generic
//! impls; helpers next to methods of an inherent impl when asked for.
use redis_memo::{Cache, cached};
use serde::Serialize;
use serde::de::DeserializeOwned;

struct Service {
    cache: Cache,
    calls: u32,
}

impl Service {
    #[cached(cache = self.cache, helpers)]
    async fn get(&self, id: u64) -> String {
        format!("{id}")
    }

    #[cached(cache = self.cache.clone(), helpers = true)]
    async fn bump(&mut self, by: u32) -> u32 {
        self.calls += by;
        self.calls
    }

    #[cached(cache = cache, name = "service::load")]
    async fn load(cache: &Cache, id: u64) -> u64 {
        id
    }
}

struct Repo<T> {
    cache: Cache,
    _t: std::marker::PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned + Send + Sync> Repo<T> {
    #[cached(cache = self.cache, helpers)]
    async fn find(&self, id: u64) -> Option<T> {
        let _ = id;
        None
    }
}

#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() {
    let cache = Cache::in_memory();
    let mut service = Service {
        cache: cache.clone(),
        calls: 0,
    };
    service.get(1).await;
    service.bump(1).await;
    Service::load(&cache, 1).await;
    Service::get_key(&cache, 1).await.unwrap();
    Service::bump_invalidate(&cache, 1).await.unwrap();
    let repo: Repo<String> = Repo {
        cache: cache.clone(),
        _t: Default::default(),
    };
    repo.find(1).await;
    Repo::<String>::find_prime(&cache, 1, &Some("x".into()))
        .await
        .unwrap();
}
