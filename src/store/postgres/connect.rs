//! Opening the PostgreSQL ledger: the pool, the schema brought up to date once whichever
//! replica starts first, the connection that listens for work other replicas release, and the
//! probe `check-config` makes.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::writer::Writer;
use super::{describe, queries, schema, tls, Ledger, OpenError, Options, PgError, PgErrorMessage, RELEASED};
use crate::store::group::Group;

impl Ledger {
    /// Connects, brings the schema up to date (once, whichever replica gets there first), and
    /// starts listening for work other replicas release. Failure stops start-up.
    pub async fn connect(url: &str, options: Options) -> Result<Self, OpenError> {
        let (mut config, tls, host) = configure(url)?;
        config.application_name("promo-gateway");
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .expect("a pool with a runtime is always built");
        let host_name: Arc<str> = host.clone().into();
        let ledger = Self {
            writer: Group::new(Writer {
                pool: pool.clone(),
                host: host_name.clone(),
            }),
            pool,
            config: Arc::new(config),
            tls,
            host: host_name,
            owner: options.owner.into(),
            lease: options.lease,
            clock_error: chrono::Duration::zero(),
            released: Arc::new(tokio::sync::Notify::new()),
        };
        let message = |e: PgError| PgErrorMessage(e.to_string());
        let client = ledger.pool.get().await.map_err(|e| OpenError::Connect {
            host: host.clone(),
            source: PgErrorMessage(match &e {
                // The driver's own words, with their cause (a TLS handshake's reason).
                deadpool_postgres::PoolError::Backend(e) => describe(e),
                other => other.to_string(),
            }),
        })?;
        migrate(&client).await.map_err(|e| OpenError::Migrate {
            host: host.clone(),
            source: message(e),
        })?;
        drop(client);
        ledger.listen();
        Ok(ledger)
    }

    /// Whether the database a URL names answers, without touching its schema (for
    /// `check-config`): the host it answered from.
    pub async fn probe(url: &str) -> Result<String, OpenError> {
        let (config, tls, host) = configure(url)?;
        let fail = |e: tokio_postgres::Error| OpenError::Connect {
            host: host.clone(),
            source: PgErrorMessage(describe(&e)),
        };
        let (client, connection) = config.connect(tls).await.map_err(fail)?;
        let driver = tokio::spawn(connection);
        let answered = client.simple_query("SELECT 1").await.map_err(fail);
        drop(client);
        let _ = driver.await;
        answered.map(|_| host)
    }

    /// Keeps a connection listening on [`RELEASED`] for the life of the process, reconnecting
    /// when it drops, and wakes [`Store::work_released`] on every notification.
    fn listen(&self) {
        let (config, tls, released) = (self.config.clone(), self.tls.clone(), self.released.clone());
        tokio::spawn(async move {
            loop {
                if let Ok((client, mut connection)) = config.connect(tls.clone()).await {
                    let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    let waker = released.clone();
                    let pump = tokio::spawn(async move {
                        use futures::StreamExt;
                        let mut messages = std::pin::pin!(messages);
                        while let Some(Ok(message)) = messages.next().await {
                            if let tokio_postgres::AsyncMessage::Notification(_) = message {
                                waker.notify_one();
                            }
                        }
                    });
                    if client.batch_execute(&format!("LISTEN {RELEASED}")).await.is_ok() {
                        // Work released while this connection was down is found by the next
                        // periodic adoption; wake one now in case it was.
                        released.notify_one();
                    }
                    let _ = pump.await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// A ledger URL read: the driver's config (with its connect timeout), the TLS connector its
/// libpq parameters ask for (see [`super::tls`]), and `host:port` for messages.
fn configure(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect, String), OpenError> {
    let (rest, settings) = tls::split(url).map_err(|e| OpenError::TlsSettings(e.to_string()))?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|_| OpenError::Url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.ssl_mode(settings.driver_mode());
    let host = host_of(&config);
    let connector = settings.connector().map_err(|e| OpenError::Tls {
        host: host.clone(),
        source: PgErrorMessage(e.to_string()),
    })?;
    Ok((config, connector, host))
}

/// `host:port` of the first host a config names (a socket directory shows as its path).
fn host_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// Applies the migrations not yet applied, under a session advisory lock so that replicas
/// starting together wait for the first instead of applying a migration twice.
async fn migrate(client: &deadpool_postgres::Client) -> Result<(), PgError> {
    let lock = queries::lock_id("migrations", "promo-gateway");
    client.execute("SELECT pg_advisory_lock($1)", &[&lock]).await?;
    let applied = async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS ledger_migrations (
                    version    INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
            )
            .await?;
        let row = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM ledger_migrations", &[])
            .await?;
        let version = row.get::<_, i32>(0) as usize;
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version) {
            // Each migration with its record, in one transaction.
            client
                .batch_execute(&format!(
                    "BEGIN; {sql}; INSERT INTO ledger_migrations (version) VALUES ({}); COMMIT;",
                    i + 1
                ))
                .await?;
        }
        Ok::<_, PgError>(())
    }
    .await;
    if applied.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    client.execute("SELECT pg_advisory_unlock($1)", &[&lock]).await?;
    applied
}
