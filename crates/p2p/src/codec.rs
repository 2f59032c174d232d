//! The block-sync protocol's framing: one length-prefixed borsh message each way, bounded.
//!
//! A frame is a 4-byte little-endian length followed by that many bytes. The length is checked
//! against the message type's limit before a byte of the body is read, so a peer cannot make
//! this node allocate more than the limit.

use std::io;

use branchledger_types::wire::{
    SyncRequest, SyncResponse, SYNC_REQUEST_BYTES_MAX, SYNC_RESPONSE_BYTES_MAX,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// The block-sync protocol, versioned.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/branchledger/sync/1");

/// Reads one frame of at most `limit` bytes.
pub async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let length = u32::from_le_bytes(prefix) as usize;
    if length > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes exceeds the limit of {limit}"),
        ));
    }
    let mut body = vec![0u8; length];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes one frame.
pub async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let length = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    io.write_all(&length.to_le_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

fn invalid(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// The codec of [`SYNC_PROTOCOL`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncCodec;

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, SYNC_REQUEST_BYTES_MAX).await?;
        SyncRequest::from_bytes(&body).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, SYNC_RESPONSE_BYTES_MAX).await?;
        SyncResponse::from_bytes(&body).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.to_bytes()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = response.to_bytes();
        // Only the bytes are held while a slow asker reads them.
        drop(response);
        write_frame(io, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[tokio::test]
    async fn frames_round_trip_and_lengths_over_the_limit_are_refused_unread() {
        let request = SyncRequest { from: 7, count: 3 };
        let mut buffer = Cursor::new(Vec::new());
        SyncCodec
            .write_request(&SYNC_PROTOCOL, &mut buffer, request)
            .await
            .expect("write");
        let mut reader = Cursor::new(buffer.into_inner());
        let read = SyncCodec
            .read_request(&SYNC_PROTOCOL, &mut reader)
            .await
            .expect("read");
        assert_eq!(read, request);

        // A prefix claiming 4 GiB: refused from the prefix alone.
        let mut reader = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        let error = SyncCodec
            .read_response(&SYNC_PROTOCOL, &mut reader)
            .await
            .expect_err("too long");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("exceeds the limit"), "{error}");

        // Truncated body.
        let mut bytes = 10u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        let mut reader = Cursor::new(bytes);
        assert!(SyncCodec
            .read_request(&SYNC_PROTOCOL, &mut reader)
            .await
            .is_err());

        // Garbage of an allowed length.
        let mut bytes = 12u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 12]);
        let mut reader = Cursor::new(bytes);
        let error = SyncCodec
            .read_request(&SYNC_PROTOCOL, &mut reader)
            .await
            .expect_err("garbage");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
