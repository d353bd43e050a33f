//! The CQL store behind a connection that is retried on use: the api serves `/readyz` (503,
//! with the cause) while the cluster is down or refuses it, and becomes ready once it answers.

use bytes::Bytes;
use futures::future::BoxFuture;
use service::CqlArgs;
use tokio::sync::OnceCell;

use super::cql::CqlStore;
use super::{CollectionData, CollectionRevision, ContentKey, Generation, Store, StoreError};

/// Connects on first use, and again on each use after a failed attempt (the refresher's poll
/// paces the attempts); once connected, the driver keeps the session's connections up itself.
pub struct Connecting {
    config: CqlArgs,
    store: OnceCell<CqlStore>,
}

impl Connecting {
    /// Checks what can be checked without the cluster (password, CA, certificate and key
    /// files), so that a settings mistake still stops the api at start.
    pub fn new(config: CqlArgs) -> Result<Connecting, StoreError> {
        config
            .session_builder(config.read_consistency)
            .map_err(|e| StoreError::new("CQL settings", e))?;
        Ok(Connecting {
            config,
            store: OnceCell::new(),
        })
    }

    async fn store(&self) -> Result<&CqlStore, StoreError> {
        self.store
            .get_or_try_init(|| CqlStore::connect(&self.config))
            .await
    }
}

impl Store for Connecting {
    fn active_generation(&self) -> BoxFuture<'_, Result<Generation, StoreError>> {
        Box::pin(async move { self.store().await?.active_generation().await })
    }

    fn list_collections<'a>(
        &'a self,
        generation: &'a Generation,
    ) -> BoxFuture<'a, Result<Vec<CollectionRevision>, StoreError>> {
        Box::pin(async move { self.store().await?.list_collections(generation).await })
    }

    fn load_index<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CollectionData>, StoreError>> {
        Box::pin(async move {
            self.store()
                .await?
                .load_index(generation, collection_id)
                .await
        })
    }

    fn fetch_objects<'a>(
        &'a self,
        generation: &'a Generation,
        collection_id: &'a str,
        versions: &'a [ContentKey<'a>],
    ) -> BoxFuture<'a, Result<Vec<Bytes>, StoreError>> {
        Box::pin(async move {
            self.store()
                .await?
                .fetch_objects(generation, collection_id, versions)
                .await
        })
    }
}
