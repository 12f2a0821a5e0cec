//! The ABCI socket server: CometBFT's four connections (consensus, mempool,
//! query, snapshot), each a stream of length-delimited protobuf requests
//! answered in order.
//!
//! CometBFT does not wait for an answer before it sends the next request on
//! a connection (the mempool sends every CheckTx of a burst, then a Flush),
//! so a connection here reads every complete request already received,
//! verifies the signatures of the CheckTx among them in one batch, answers
//! them all in order, and writes the answers with one write before it waits
//! for more. A connection is one thread; the state machine's lock is held
//! per request, as before.
//!
//! Frames are decoded in place (a frame is copied once, into its message),
//! and one longer than [`MAX_FRAME_BYTES`] closes the connection: only the
//! local CometBFT speaks here, and a frame that long is a broken peer.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};

use prost::Message;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{request, response, Request, Response, ResponseException};

use crate::abci::AbciApp;
use crate::store::Store;

/// The longest request frame accepted: above CometBFT's largest block
/// (`max_bytes` is at most 100 MiB) with its header.
pub const MAX_FRAME_BYTES: usize = 128 << 20;

/// Requests decoded from one read at most, before they are answered.
const MAX_BATCH: usize = 4096;

/// Why a connection closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// A frame's length prefix is not a varint, or the frame is too long.
    #[error("bad frame: {0}")]
    Frame(String),
    /// A frame is not a `Request`.
    #[error("undecodable request: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// A bound ABCI server.
pub struct Server<S: Store> {
    listener: TcpListener,
    app: AbciApp<S>,
    read_bytes: usize,
}

impl<S: Store> Server<S> {
    /// Listens on `addr` for CometBFT's connections to `app`, reading at
    /// most `read_bytes` from a connection at a time.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(addr: impl ToSocketAddrs, app: AbciApp<S>, read_bytes: usize) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr)?,
            app,
            read_bytes: read_bytes.max(1),
        })
    }

    /// The address it listens on.
    ///
    /// # Errors
    /// When the socket cannot say.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves every connection on its own thread, until accepting fails.
    ///
    /// # Errors
    /// When the listener fails.
    pub fn listen(self) -> io::Result<()> {
        loop {
            let (stream, peer) = self.listener.accept()?;
            let app = self.app.clone();
            let read_bytes = self.read_bytes;
            let spawned = std::thread::Builder::new()
                .name(format!("abci-{peer}"))
                .spawn(move || {
                    tracing::info!(%peer, "ABCI connection opened");
                    match serve(stream, &app, read_bytes) {
                        Ok(()) => tracing::info!(%peer, "ABCI connection closed"),
                        Err(e) => tracing::error!(%peer, "ABCI connection dropped: {e}"),
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(%peer, "cannot start a thread for an ABCI connection: {e}");
            }
        }
    }
}

/// Answers one connection until its peer closes it.
fn serve<S: Store>(
    mut stream: TcpStream,
    app: &AbciApp<S>,
    read_bytes: usize,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let mut input = Frames::default();
    let mut window = vec![0u8; read_bytes];
    let mut output = Vec::new();
    loop {
        let requests = input.decode(MAX_BATCH)?;
        if requests.is_empty() {
            let read = match stream.read(&mut window) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if read == 0 {
                return Ok(());
            }
            input.extend(&window[..read]);
            continue;
        }
        answer(app, requests, &mut output);
        stream.write_all(&output)?;
        output.clear();
    }
}

/// Answers `requests` in order into `output` (length-delimited), after
/// verifying the signatures of the CheckTx among them as one batch.
pub fn answer<S: Store>(app: &AbciApp<S>, requests: Vec<Request>, output: &mut Vec<u8>) {
    let txs: Vec<&[u8]> = requests
        .iter()
        .filter_map(|r| match &r.value {
            Some(request::Value::CheckTx(c)) => Some(c.tx.as_ref()),
            _ => None,
        })
        .collect();
    if txs.len() > 1 {
        app.verify_signatures(&txs);
    }
    for request in requests {
        let value = match request.value {
            Some(value) => dispatch(app, value),
            None => response::Value::Exception(ResponseException {
                error: "a request without a method".to_owned(),
            }),
        };
        let response = Response { value: Some(value) };
        response
            .encode_length_delimited(output)
            .unwrap_or_else(|_| unreachable!("a Vec grows to fit any response"));
    }
}

/// The application's answer to one request.
fn dispatch<A: Application>(app: &A, value: request::Value) -> response::Value {
    use request::Value as Q;
    use response::Value as R;
    match value {
        Q::Echo(r) => R::Echo(app.echo(r)),
        Q::Flush(_) => R::Flush(app.flush()),
        Q::Info(r) => R::Info(app.info(r)),
        Q::InitChain(r) => R::InitChain(app.init_chain(r)),
        Q::Query(r) => R::Query(app.query(r)),
        Q::CheckTx(r) => R::CheckTx(app.check_tx(r)),
        Q::Commit(_) => R::Commit(app.commit()),
        Q::ListSnapshots(_) => R::ListSnapshots(app.list_snapshots()),
        Q::OfferSnapshot(r) => R::OfferSnapshot(app.offer_snapshot(r)),
        Q::LoadSnapshotChunk(r) => R::LoadSnapshotChunk(app.load_snapshot_chunk(r)),
        Q::ApplySnapshotChunk(r) => R::ApplySnapshotChunk(app.apply_snapshot_chunk(r)),
        Q::PrepareProposal(r) => R::PrepareProposal(app.prepare_proposal(r)),
        Q::ProcessProposal(r) => R::ProcessProposal(app.process_proposal(r)),
        Q::ExtendVote(r) => R::ExtendVote(app.extend_vote(r)),
        Q::VerifyVoteExtension(r) => R::VerifyVoteExtension(app.verify_vote_extension(r)),
        Q::FinalizeBlock(r) => R::FinalizeBlock(app.finalize_block(r)),
    }
}

/// Received bytes not yet decoded: `buf[start..]`.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
    start: usize,
}

impl Frames {
    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Drops the decoded bytes from the front of the buffer.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Every complete request in the buffer, at most `max`.
    ///
    /// # Errors
    /// When a length prefix is malformed or too long, or a frame does not
    /// decode: the connection cannot go on.
    pub fn decode(&mut self, max: usize) -> Result<Vec<Request>, ConnectionError> {
        let mut out = Vec::new();
        while out.len() < max {
            let rest = &self.buf[self.start..];
            let Some((len, prefix)) = frame_len(rest)? else {
                break;
            };
            let end = prefix.saturating_add(len);
            let Some(frame) = rest.get(prefix..end) else {
                break;
            };
            out.push(Request::decode(frame)?);
            self.start = self.start.saturating_add(end);
        }
        Ok(out)
    }
}

/// The length a frame's varint prefix announces and the prefix's size, or
/// `None` while the prefix is incomplete.
fn frame_len(bytes: &[u8]) -> Result<Option<(usize, usize)>, ConnectionError> {
    // A varint ends at the first byte without the continuation bit, within
    // ten bytes.
    let Some(last) = bytes.iter().take(10).position(|b| b & 0x80 == 0) else {
        if bytes.len() >= 10 {
            return Err(ConnectionError::Frame(
                "a length prefix longer than 10 bytes".to_owned(),
            ));
        }
        return Ok(None);
    };
    let prefix = last.saturating_add(1);
    let mut varint = &bytes[..prefix];
    let value = prost::encoding::decode_varint(&mut varint)
        .map_err(|e| ConnectionError::Frame(format!("a bad length prefix: {e}")))?;
    let len = usize::try_from(value).unwrap_or(usize::MAX);
    if len > MAX_FRAME_BYTES {
        return Err(ConnectionError::Frame(format!(
            "a frame of {len} bytes, above the limit of {MAX_FRAME_BYTES}"
        )));
    }
    Ok(Some((len, prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tendermint_proto::v0_38::abci::{RequestEcho, RequestFlush};

    fn framed(requests: &[Request]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in requests {
            r.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    fn echo(message: &str) -> Request {
        Request {
            value: Some(request::Value::Echo(RequestEcho {
                message: message.to_owned(),
            })),
        }
    }

    #[test]
    fn frames_decode_whatever_way_the_bytes_arrive() {
        let requests = vec![
            echo("a"),
            Request {
                value: Some(request::Value::Flush(RequestFlush {})),
            },
            echo(&"x".repeat(300)),
        ];
        let bytes = framed(&requests);
        // All at once, byte by byte, and in two uneven halves.
        for cut in [
            vec![bytes.len()],
            vec![1; bytes.len()],
            vec![3, bytes.len() - 3],
        ] {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            let mut at = 0;
            for n in cut {
                frames.extend(&bytes[at..at + n]);
                at += n;
                got.extend(frames.decode(2).unwrap());
                got.extend(frames.decode(usize::MAX).unwrap());
            }
            assert_eq!(got, requests);
            assert!(frames.decode(usize::MAX).unwrap().is_empty());
        }
    }

    #[test]
    fn malformed_frames_close_the_connection_without_a_panic() {
        let mut too_long = Vec::new();
        prost::encoding::encode_varint(u64::try_from(MAX_FRAME_BYTES).unwrap() + 1, &mut too_long);
        let mut frames = Frames::default();
        frames.extend(&too_long);
        assert!(matches!(frames.decode(1), Err(ConnectionError::Frame(_))));

        let mut frames = Frames::default();
        frames.extend(&[0xff; 11]);
        assert!(matches!(frames.decode(1), Err(ConnectionError::Frame(_))));

        // A complete frame that is not a Request.
        let mut frames = Frames::default();
        frames.extend(&[3, 0xff, 0xff, 0xff]);
        assert!(matches!(frames.decode(1), Err(ConnectionError::Decode(_))));

        // An incomplete one waits for more.
        let mut frames = Frames::default();
        frames.extend(&[5, 1, 2]);
        assert!(frames.decode(1).unwrap().is_empty());
    }
}
