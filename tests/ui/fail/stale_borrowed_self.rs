use redis_memo::cached;

struct Prices {
    base: u64,
}

impl Prices {
    #[cached(ttl = 60, stale = 30)]
    async fn price(&self, id: u64) -> u64 {
        self.base + id
    }
}

fn main() {}
