//! Object storage for recordings and chat files: a local directory by default, S3 (or any S3-compatible
//! service) in production, both through `object_store`.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::WriteMultipart;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::io::AsyncReadExt;

use crate::config::{StorageConfig, StorageKind};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("storage is misconfigured: {0}")]
    Config(String),
    #[error("cannot reach object storage {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("object {0} does not exist")]
    NotFound(String),
    #[error("bad object key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
}

/// Where to put things. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// For messages: `file:///var/lib/sluice/objects` or `s3://bucket (endpoint)`.
    target: String,
    part_size_bytes: usize,
    upload_concurrency: usize,
}

impl Blobs {
    /// Builds the store the configuration names. Does not touch the network: call [`Blobs::wait_reachable`].
    pub fn open(config: &StorageConfig, data_dir: &FsPath) -> Result<Blobs, BlobError> {
        if config.part_size_bytes < 5 << 20 && config.kind == StorageKind::S3 {
            return Err(BlobError::Config(format!(
                "storage.part_size_bytes is {}, but S3 needs parts of at least 5 MiB (5242880)",
                config.part_size_bytes
            )));
        }
        let (store, target): (Arc<dyn ObjectStore>, String) = match config.kind {
            StorageKind::Local => {
                let dir = data_dir.join(&config.path);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    BlobError::Config(format!("cannot create storage directory {}: {e}", dir.display()))
                })?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| BlobError::Config(format!("storage directory {}: {e}", dir.display())))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), format!("file://{}", dir.display()))
            }
            StorageKind::S3 => {
                if config.bucket.is_empty() {
                    return Err(BlobError::Config("storage.kind is \"s3\" but storage.bucket is empty".into()));
                }
                let timeout = Duration::from_secs(config.request_timeout_secs.max(1));
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&config.bucket)
                    .with_region(&config.region)
                    .with_client_options(
                        ClientOptions::new().with_timeout(timeout).with_connect_timeout(Duration::from_secs(5)),
                    )
                    .with_retry(RetryConfig { max_retries: 3, retry_timeout: timeout, ..Default::default() });
                if !config.access_key_id.is_empty() {
                    builder = builder
                        .with_access_key_id(&config.access_key_id)
                        .with_secret_access_key(&config.secret_access_key);
                }
                let mut target = format!("s3://{}", config.bucket);
                if !config.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&config.endpoint)
                        .with_allow_http(config.endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                    target = format!("{target} at {}", config.endpoint);
                }
                let s3 = builder.build().map_err(|e| BlobError::Config(e.to_string()))?;
                (Arc::new(s3), target)
            }
        };
        Ok(Blobs {
            store,
            target,
            part_size_bytes: config.part_size_bytes.max(1),
            upload_concurrency: config.upload_concurrency.max(1),
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// One round trip: a `HEAD` of a key nobody writes. "Not found" means the bucket answered.
    pub async fn check(&self) -> Result<(), BlobError> {
        match self.store.head(&Path::from(".sluice-probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BlobError::Unreachable { target: self.target.clone(), reason: crate::innermost_cause(&e) }),
        }
    }

    /// [`Blobs::check`] up to `attempts` times with doubling waits, for start-up.
    pub async fn wait_reachable(&self, attempts: u32, mut backoff: Duration) -> Result<(), BlobError> {
        let attempts = attempts.max(1);
        for attempt in 1..=attempts {
            match self.check().await {
                Ok(()) => return Ok(()),
                Err(e) if attempt == attempts => return Err(e),
                Err(e) => {
                    tracing::warn!(attempt, attempts, error = %e, "object storage not reachable yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    pub async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError> {
        self.store.put(&parse_key(key)?, PutPayload::from(data)).await?;
        Ok(())
    }

    /// Uploads a file. Files of at least one part go up as a multipart upload (see [`Blobs::put_file_multipart`]).
    /// Returns the size in bytes.
    pub async fn put_file(&self, key: &str, file: &FsPath) -> Result<u64, BlobError> {
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|source| BlobError::Io { path: file.display().to_string(), source })?
            .len();
        if size >= self.part_size_bytes as u64 {
            return self.put_file_multipart(key, file).await;
        }
        let data =
            tokio::fs::read(file).await.map_err(|source| BlobError::Io { path: file.display().to_string(), source })?;
        self.store.put(&parse_key(key)?, PutPayload::from(data)).await?;
        Ok(size)
    }

    /// Uploads a file as a multipart upload, whatever its size, with up to `upload_concurrency` parts in flight
    /// (recordings: a part that fails is retried on its own, not the whole file). A failed upload is aborted so
    /// no parts are left behind. Returns the size in bytes.
    pub async fn put_file_multipart(&self, key: &str, file: &FsPath) -> Result<u64, BlobError> {
        let path = parse_key(key)?;
        let io_err = |source| BlobError::Io { path: file.display().to_string(), source };
        let mut reader = tokio::fs::File::open(file).await.map_err(io_err)?;
        let size = reader.metadata().await.map_err(io_err)?.len();
        let upload = self.store.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size_bytes);
        let mut chunk = vec![0u8; self.part_size_bytes.min(size.max(1) as usize)];
        let outcome: Result<(), BlobError> = async {
            loop {
                let n = read_full(&mut reader, &mut chunk).await.map_err(io_err)?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(self.upload_concurrency).await?;
                writer.write(&chunk[..n]);
            }
        }
        .await;
        match outcome {
            Ok(()) => {
                writer.finish().await?;
                metrics::counter!("sluice_storage_multipart_uploads_total").increment(1);
                Ok(size)
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    /// Starts a multipart upload written chunk by chunk (a streamed request body): at most
    /// `upload_concurrency` parts in memory, whatever the object's size. Nothing is visible under `key` until
    /// [`Upload::finish`]; [`Upload::abort`] leaves nothing behind.
    pub async fn upload(&self, key: &str) -> Result<Upload, BlobError> {
        let upload = self.store.put_multipart(&parse_key(key)?).await?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(upload, self.part_size_bytes),
            concurrency: self.upload_concurrency,
            written: 0,
        })
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let result = self.store.get(&parse_key(key)?).await.map_err(|e| not_found(key, e))?;
        Ok(result.bytes().await?)
    }

    /// `range` of an object as a stream of chunks, for downloads: a response never holds a whole recording in
    /// memory, however large it is or however many people fetch it at once. With `e_tag` (from `head`), an
    /// object replaced since is an error rather than bytes that no longer match the length already announced.
    pub async fn stream_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        e_tag: Option<String>,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let mut options = object_store::GetOptions::default().with_range(Some(range));
        options.if_match = e_tag;
        let result = self.store.get_opts(&parse_key(key)?, options).await.map_err(|e| not_found(key, e))?;
        Ok(result.into_stream().map_err(BlobError::from).boxed())
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        match self.store.head(&parse_key(key)?).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under a prefix, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BlobError> {
        let prefix = if prefix.is_empty() { None } else { Some(parse_key(prefix)?) };
        let mut all: Vec<ObjectMeta> = self.store.list(prefix.as_ref()).try_collect().await?;
        all.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(all)
    }

    /// Deleting a key that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&parse_key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A multipart upload in progress (see [`Blobs::upload`]).
pub struct Upload {
    writer: WriteMultipart,
    concurrency: usize,
    written: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("written", &self.written).finish_non_exhaustive()
    }
}

impl Upload {
    /// Appends bytes, waiting while `upload_concurrency` parts are in flight.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.writer.wait_for_capacity(self.concurrency).await?;
        self.writer.write(data);
        self.written += data.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn finish(self) -> Result<u64, BlobError> {
        self.writer.finish().await?;
        Ok(self.written)
    }

    /// Drops what was uploaded; a failure to abort is logged (the store's own lifecycle rules clean up then).
    pub async fn abort(self) {
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, "could not abort an upload");
        }
    }
}

/// Keys are `/`-separated relative paths without empty, `.` or `..` segments.
fn parse_key(key: &str) -> Result<Path, BlobError> {
    let bad = |reason: &str| BlobError::BadKey { key: key.to_string(), reason: reason.to_string() };
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
        return Err(bad("must be a relative path like meetings/ID/file.mp4"));
    }
    Path::parse(key).map_err(|e| bad(&e.to_string()))
}

fn not_found(key: &str, e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound(key.to_string()),
        e => e.into(),
    }
}

/// Fills `buf` unless the file ends first; returns how much was read.
async fn read_full(reader: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_relative_paths() {
        assert!(parse_key("meetings/abc/rec.mp4").is_ok());
        for bad in ["", "/abs", "dir/", "a/../b", "a//b"] {
            assert!(parse_key(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
