//! The data plane's wire rules, on the client side: how an upload is signed
//! and cut into `PutBlob` chunks, and how a `GetBlob` stream is read with a
//! size bound and a hash check.
//!
//! Every upload carries, on its first chunk, an `UploadHeader` signed by the
//! uploader's account key ([`compute_proto::upload`], docs/PROTOCOL.md,
//! "Signing an upload"): the blob's hash, its exact size and an expiry
//! [`UPLOAD_HEADER_TTL_SECS`] from now.
//!
//! A gateway is not trusted: it may stream bytes for ever, or other bytes
//! than those asked for. [`read_bounded`] stops reading as soon as more than
//! the caller's bound has arrived (so a hostile gateway cannot exhaust
//! memory) and refuses bytes that do not hash to the blob id
//! (`BlobId::of`, the one implementation in `compute_proto`).

use std::time::{SystemTime, UNIX_EPOCH};

use compute_proto::upload::{sign_upload, UPLOAD_HEADER_TTL_SECS};
use compute_proto::{pb, BlobId, SigningKey};
use tokio_stream::{Stream, StreamExt};

use crate::error::ClientError;

/// Bytes per `PutBlob` chunk.
pub const UPLOAD_CHUNK_BYTES: usize = 1 << 20;
/// The largest `GetBlob` chunk accepted. Gateways send 1 MiB chunks
/// (docs/GATEWAY.md); the margin admits other implementations, and the
/// limit bounds what one message can make the client buffer before the
/// size bound is checked.
pub const DOWNLOAD_CHUNK_BYTES_MAX: usize = 4 << 20;
/// A bound for blobs when the caller has no better one: the sandbox's
/// default input and output limit, and the gateway's default largest blob.
pub const BLOB_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// A blob transfer gets this long, plus one second per
/// [`TRANSFER_BYTES_PER_SECOND_MIN`] bytes of its size (or bound).
pub const TRANSFER_TIMEOUT_BASE_MS: u64 = 60_000;
/// The slowest transfer rate tolerated.
pub const TRANSFER_BYTES_PER_SECOND_MIN: u64 = 256 * 1024;

/// The chunks of an upload of `bytes`: at most `chunk_bytes` each, at least
/// one (an empty blob is one empty chunk), and the first naming `named`
/// when given. Clients name the true hash, `BlobId::of(bytes)`, so that the
/// gateway refuses the upload if a byte changed on the way.
///
/// These chunks carry no `UploadHeader`, which a gateway requires: clients
/// send [`signed_chunks`]; this is the layout under it, for callers that
/// set the header themselves.
#[must_use]
pub fn chunks(bytes: &[u8], named: Option<BlobId>, chunk_bytes: usize) -> Vec<pb::BlobChunk> {
    let mut chunks: Vec<pb::BlobChunk> = bytes
        .chunks(chunk_bytes.max(1))
        .map(|data| pb::BlobChunk {
            hash: Vec::new(),
            data: data.to_vec(),
            upload: None,
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::BlobChunk::default());
    }
    if let (Some(id), Some(first)) = (named, chunks.first_mut()) {
        first.hash = id.0.to_vec();
    }
    chunks
}

/// The chunks of a signed upload of `bytes`: as [`chunks`], the first
/// naming `header.hash` and carrying `header`. The gateway stores nothing
/// without a header that verifies.
#[must_use]
pub fn signed_chunks(
    bytes: &[u8],
    header: pb::UploadHeader,
    chunk_bytes: usize,
) -> Vec<pb::BlobChunk> {
    let mut chunks = chunks(bytes, None, chunk_bytes);
    if let Some(first) = chunks.first_mut() {
        first.hash.clone_from(&header.hash);
        first.upload = Some(header);
    }
    chunks
}

/// The header with which `key`'s account uploads the blob `id` of exactly
/// `size` bytes, valid until `now` (unix seconds) plus
/// [`UPLOAD_HEADER_TTL_SECS`].
#[must_use]
pub fn upload_header(key: &SigningKey, id: &BlobId, size: u64, now: u64) -> pb::UploadHeader {
    sign_upload(key, id, size, now.saturating_add(UPLOAD_HEADER_TTL_SECS))
}

/// This machine's clock in unix seconds (0 before 1970). A gateway refuses
/// a header whose expiry is past by its own clock, or more than an hour
/// ahead, so the clocks of clients and gateways should be kept in sync (NTP).
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads the chunks of blob `id` from `stream`, stopping with
/// [`ClientError::BlobTooLarge`] as soon as more than `max_bytes` have
/// arrived, and refusing bytes that do not hash to `id`.
///
/// # Errors
/// [`ClientError::Rpc`] when the stream breaks, [`ClientError::BlobTooLarge`]
/// and [`ClientError::BlobMismatch`].
pub async fn read_bounded<S>(id: &BlobId, max_bytes: u64, stream: S) -> Result<Vec<u8>, ClientError>
where
    S: Stream<Item = Result<pb::BlobChunk, tonic::Status>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|s| ClientError::rpc("GetBlob", &s))?;
        let total = u64::try_from(bytes.len().saturating_add(chunk.data.len())).unwrap_or(u64::MAX);
        if total > max_bytes {
            return Err(ClientError::BlobTooLarge { id: *id, max_bytes });
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let actual = BlobId::of(&bytes);
    if actual != *id {
        return Err(ClientError::BlobMismatch {
            expected: *id,
            actual,
        });
    }
    debug_assert!(u64::try_from(bytes.len()).is_ok_and(|n| n <= max_bytes));
    Ok(bytes)
}

/// How long a transfer of up to `bytes` may take.
#[must_use]
pub fn transfer_timeout_ms(bytes: u64) -> u64 {
    TRANSFER_TIMEOUT_BASE_MS
        .saturating_add(bytes.saturating_mul(1_000) / TRANSFER_BYTES_PER_SECOND_MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &[u8]) -> Result<pb::BlobChunk, tonic::Status> {
        Ok(pb::BlobChunk {
            hash: Vec::new(),
            data: data.to_vec(),
            upload: None,
        })
    }

    #[test]
    fn uploads_are_cut_into_chunks_the_first_naming_the_hash() {
        let bytes: Vec<u8> = (0..25u8).collect();
        let id = BlobId::of(&bytes);
        let cut = chunks(&bytes, Some(id), 10);
        let sizes: Vec<usize> = cut.iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(cut[0].hash, id.0.to_vec());
        assert!(cut[1..].iter().all(|c| c.hash.is_empty()));
        assert_eq!(cut.concat_data(), bytes);

        let empty = chunks(b"", Some(BlobId::of(b"")), 10);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].data.is_empty());
        assert_eq!(empty[0].hash, BlobId::of(b"").0.to_vec());
        assert!(chunks(b"abc", None, 0).iter().all(|c| c.hash.is_empty()));
    }

    #[test]
    fn a_signed_upload_carries_its_header_on_the_first_chunk_only() {
        use compute_proto::VerifiedUpload;

        let key = SigningKey::from_seed([3; 32]);
        let bytes: Vec<u8> = (0..25u8).collect();
        let id = BlobId::of(&bytes);
        let header = upload_header(&key, &id, 25, 1_000);
        let cut = signed_chunks(&bytes, header.clone(), 10);
        let sizes: Vec<usize> = cut.iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(cut[0].upload.as_ref(), Some(&header));
        assert_eq!(
            cut[0].hash,
            id.0.to_vec(),
            "the first chunk names the hash too"
        );
        assert!(cut[1..]
            .iter()
            .all(|c| c.upload.is_none() && c.hash.is_empty()));
        assert_eq!(cut.concat_data(), bytes);

        let verified = VerifiedUpload::verify(&header).unwrap();
        assert_eq!(verified.uploader, key.account());
        assert_eq!((verified.hash, verified.size), (id, 25));
        assert_eq!(verified.expires, 1_000 + UPLOAD_HEADER_TTL_SECS);
        // A gateway whose clock agrees accepts it.
        assert!(verified.check_time(1_000).is_ok());
        assert_eq!(upload_header(&key, &id, 25, u64::MAX).expires, u64::MAX);

        // An empty blob is one empty chunk, signed for size 0.
        let empty_id = BlobId::of(b"");
        let empty = signed_chunks(b"", upload_header(&key, &empty_id, 0, 1_000), 10);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].data.is_empty());
        assert_eq!(empty[0].hash, empty_id.0.to_vec());
        assert_eq!(empty[0].upload.as_ref().map(|h| h.size), Some(0));
    }

    #[test]
    fn the_clock_is_read_in_unix_seconds() {
        // 2020-09-13, and well before the year 2200.
        let now = unix_now();
        assert!((1_600_000_000..7_258_118_400).contains(&now), "{now}");
    }

    trait ConcatData {
        fn concat_data(&self) -> Vec<u8>;
    }

    impl ConcatData for Vec<pb::BlobChunk> {
        fn concat_data(&self) -> Vec<u8> {
            self.iter().flat_map(|c| c.data.iter().copied()).collect()
        }
    }

    #[tokio::test]
    async fn a_download_within_its_bound_and_hash_is_returned() {
        let id = BlobId::of(b"hello world");
        let stream = tokio_stream::iter([chunk(b"hello "), chunk(b"world")]);
        assert_eq!(read_bounded(&id, 11, stream).await.unwrap(), b"hello world");
        let empty = tokio_stream::iter([chunk(b"")]);
        assert_eq!(read_bounded(&BlobId::of(b""), 0, empty).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn a_download_stops_at_the_first_chunk_past_its_bound() {
        let id = BlobId::of(b"hello world");
        // An endless stream: only the bound ends it.
        let mut served = 0u32;
        let endless = tokio_stream::iter(std::iter::from_fn(|| {
            served = served.saturating_add(1);
            Some(chunk(&[7u8; 1000]))
        }));
        let error = read_bounded(&id, 4_500, endless).await.unwrap_err();
        assert!(
            matches!(
                error,
                ClientError::BlobTooLarge {
                    max_bytes: 4_500,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            served, 5,
            "reading stopped at the first chunk past the bound"
        );
        // One byte over is refused too.
        let over = tokio_stream::iter([chunk(b"hello "), chunk(b"world")]);
        assert!(matches!(
            read_bounded(&id, 10, over).await,
            Err(ClientError::BlobTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn other_bytes_than_those_asked_for_are_refused() {
        let id = BlobId::of(b"the true bytes");
        let stream = tokio_stream::iter([chunk(b"the true bytez")]);
        match read_bounded(&id, 1_000, stream).await {
            Err(ClientError::BlobMismatch { expected, actual }) => {
                assert_eq!(expected, id);
                assert_eq!(actual, BlobId::of(b"the true bytez"));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        let broken = tokio_stream::iter([chunk(b"the "), Err(tonic::Status::data_loss("disk"))]);
        let error = read_bounded(&id, 1_000, broken).await.unwrap_err();
        assert_eq!(error.grpc_code(), Some(tonic::Code::DataLoss));
    }

    #[test]
    fn transfers_get_more_time_for_more_bytes() {
        assert_eq!(transfer_timeout_ms(0), TRANSFER_TIMEOUT_BASE_MS);
        assert_eq!(
            transfer_timeout_ms(TRANSFER_BYTES_PER_SECOND_MIN * 10),
            TRANSFER_TIMEOUT_BASE_MS + 10_000
        );
        assert!(transfer_timeout_ms(u64::MAX) > TRANSFER_TIMEOUT_BASE_MS);
    }
}
