//! `cargo run --example axum_service` (in memory), or with
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run --example axum_service`.
//!
//! A small axum service whose handlers call cached functions over a slow fake
//! database (200 ms a query):
//!
//! ```text
//! curl -i localhost:3000/users/7              # miss: ~200 ms, x-db-queries: 1
//! curl -i localhost:3000/users/7              # hit: fast, x-db-queries still 1
//! curl -i 'localhost:3000/users/7?fresh=true' # skips the cache: queries the db
//! curl -i localhost:3000/users/999            # 404, not cached
//! curl -i -X POST localhost:3000/invalidate/users   # {"deleted":1}
//! curl -i localhost:3000/health               # ping and cache stats
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis_memo::{Cache, cached};
use serde::{Deserialize, Serialize};

/// A slow data source that counts its queries.
#[derive(Default)]
pub struct Db {
    pub queries: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

#[derive(Debug)]
pub struct NotFound;

impl Db {
    async fn load_user(&self, id: u64) -> Result<User, NotFound> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if id >= 900 {
            return Err(NotFound);
        }
        Ok(User {
            id,
            name: format!("user {id}"),
        })
    }
}

/// Cached for 5 minutes under `users:`; a missing user (`Err`) is not cached,
/// and `fresh = true` bypasses the cache.
#[cached(ttl = 300, key_prefix = "users:", cache = cache, ignore(db), skip_cache = fresh)]
pub async fn user(cache: &Cache, db: &Db, id: u64, fresh: bool) -> Result<User, NotFound> {
    db.load_user(id).await
}

#[derive(Clone)]
pub struct AppState {
    pub cache: Cache,
    pub db: Arc<Db>,
}

#[derive(Deserialize)]
struct Fresh {
    #[serde(default)]
    fresh: bool,
}

async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Query(Fresh { fresh }): Query<Fresh>,
) -> Response {
    let start = Instant::now();
    let result = user(&state.cache, &state.db, id, fresh).await;
    let headers = [
        ("x-elapsed-ms", start.elapsed().as_millis().to_string()),
        (
            "x-db-queries",
            state.db.queries.load(Ordering::SeqCst).to_string(),
        ),
    ];
    match result {
        Ok(user) => (headers, Json(user)).into_response(),
        Err(NotFound) => (StatusCode::NOT_FOUND, headers, "no such user").into_response(),
    }
}

async fn invalidate_users(State(state): State<AppState>) -> Response {
    match state.cache.invalidate_prefix("users:").await {
        Ok(deleted) => Json(serde_json::json!({ "deleted": deleted })).into_response(),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
    }
}

async fn health(State(state): State<AppState>) -> Response {
    let stats = state.cache.stats();
    let body = serde_json::json!({
        "backend": state.cache.backend_kind(),
        "ping_ms": state.cache.ping().await.ok().map(|d| d.as_secs_f64() * 1e3),
        "hits": stats.hits,
        "misses": stats.misses,
        "errors": stats.errors,
        "breaker_open": stats.breaker_open,
    });
    let status = if body["ping_ms"].is_null() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// The service's routes, over any cache and database.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user))
        .route("/invalidate/users", post(invalidate_users))
        .route("/health", get(health))
        .with_state(state)
}

#[allow(dead_code)] // unused when the test includes this file
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cache = Cache::from_env().await?;
    let state = AppState {
        cache,
        db: Arc::new(Db::default()),
    };
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(state)).await?;
    Ok(())
}
